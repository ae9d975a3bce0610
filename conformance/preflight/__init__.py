"""Preflight: is this bank ready to run the integration test, and can it reach KFR now?

Each check is a small function returning :class:`CheckLine`\\ s: the onboarding step it
belongs to, a status (``ok`` / ``advarsel`` / ``feil``), a Norwegian message and, when the
line is not green, what to do. Steps (Bits' onboarding, phases A–C):

    A-3      the enterprise certificate (readable, password, key, orgnr, issuer, validity,
             key usage for authentication and for signing the pack)
    A-7      network: DNS, TCP and TLS to Maskinporten and KFR through the proxy actually in
             use, with the CA bundle in use; clock skew against each server's ``Date``
    B-1/A-4  Maskinporten: a token for ``bits:kundeforhold.write`` (and the alternative
             scope), its decoded scope, ``consumer`` and lifetime; MP codes explained
    C-1      KFR's test environment answers an own-bank lookup with the bank's token
    C-2      the sheet: readable, every row bound (or listed), version and SHA-256

``run_doctor`` runs them all (``kfr-conformance doctor``). ``start_up_check`` is the
runner's fail-fast start: one token request and one KFR request, and the first problem
that would spoil every row (unreachable host or proxy, DNS, TLS, a clock outside
Maskinporten's window, a refused write-scope token) becomes one usage error naming the
host and the proxy used. Problems that concern one row (the alternative scope) or may pass
(5xx, a dropped connection after it was opened) do not stop the run: the rows report them.

Decisions:

- Clock skew: up to 5 s is ok, over 5 s a warning, 10 s or more against Maskinporten red
  (its window for ``iat``); see ``conformance.preflight.network``.
- Nothing is written to KFR: the only KFR request is an own-bank lookup of a fresh
  synthetic fødselsnummer, and a probe GET of the base URL.
- No secret appears in a line: tokens are decoded for their claims only; proxy passwords
  are masked.
- Lines that depend on a failed one (TCP after DNS failed, a token without a certificate)
  are left out; the failed line says what was not tried.

Modules: ``lines`` (what a check returns), ``certificate`` (A-3), ``network`` and ``probe``
(A-7), ``maskinporten`` (B-1/A-4), ``kfr_lookup`` (C-1), ``sheet`` (C-2), ``doctor``
(all of them) and ``start_up`` (the runner's subset).
"""

from conformance.preflight.certificate import (
    check_authentication_usage,
    check_certificate,
    check_certificate_issuer,
    check_certificate_orgnr,
    check_certificate_validity,
    check_signing_usage,
)
from conformance.preflight.doctor import run_doctor
from conformance.preflight.kfr_lookup import check_kfr_lookup
from conformance.preflight.lines import (
    CheckLine,
    PreflightFailed,
    PreflightReport,
    Status,
)
from conformance.preflight.maskinporten import check_alt_scope, check_token
from conformance.preflight.network import (
    Endpoint,
    NetworkProblem,
    check_clock,
    check_dns,
    check_tcp,
    clock_skew_s,
    describe_network_error,
    proxy_for,
)
from conformance.preflight.probe import Probe, check_endpoint, check_tls
from conformance.preflight.sheet import check_sheet
from conformance.preflight.start_up import start_up_check

__all__ = [
    "CheckLine",
    "Endpoint",
    "NetworkProblem",
    "PreflightFailed",
    "PreflightReport",
    "Probe",
    "Status",
    "check_alt_scope",
    "check_authentication_usage",
    "check_certificate",
    "check_certificate_issuer",
    "check_certificate_orgnr",
    "check_certificate_validity",
    "check_clock",
    "check_dns",
    "check_endpoint",
    "check_kfr_lookup",
    "check_sheet",
    "check_signing_usage",
    "check_tcp",
    "check_tls",
    "check_token",
    "clock_skew_s",
    "describe_network_error",
    "proxy_for",
    "run_doctor",
    "start_up_check",
]
