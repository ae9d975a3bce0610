"""Every check, in onboarding order: what ``kfr-conformance doctor`` prints."""

from __future__ import annotations

from pathlib import Path

import httpx

from conformance.preflight.certificate import check_certificate
from conformance.preflight.kfr_lookup import check_kfr_lookup
from conformance.preflight.lines import PreflightReport
from conformance.preflight.maskinporten import check_alt_scope, check_token
from conformance.preflight.network import SOCKET_TIMEOUT_S
from conformance.preflight.probe import Probe, check_endpoint
from conformance.preflight.sheet import check_sheet
from conformance.profile import BankEnvironment

DOCTOR_TIMEOUT_S = 5.0  # per HTTP request


def run_doctor(
    env: BankEnvironment,
    *,
    sheet: Path | None = None,
    suite_dir: Path | None = None,
    bindings: Path | None = None,
    signing_cert: Path | None = None,
    signing_password: str | None = None,
    cwd: Path | None = None,
) -> PreflightReport:
    """Every check, in onboarding order. Writes nothing to KFR."""
    report = PreflightReport(env.orgnr, env.env_name, env.kfr_base_url, env.maskinporten_issuer)
    lines, credentials = check_certificate(env, signing_cert=signing_cert,
                                           signing_password=signing_password)
    report.lines += lines
    timeout = httpx.Timeout(DOCTOR_TIMEOUT_S, connect=SOCKET_TIMEOUT_S)
    with Probe(env, credentials, timeout=timeout) as probe:
        for ep in (probe.maskinporten_ep, probe.kfr_ep):
            report.lines += check_endpoint(probe, ep)
        token = None
        if probe.mp is not None:
            token_lines, token = check_token(probe)
            report.lines += token_lines
            report.lines.append(check_alt_scope(probe))
        report.lines.append(check_kfr_lookup(probe, token))
    report.lines += check_sheet(sheet, suite_dir, bindings, cwd=cwd)
    return report
