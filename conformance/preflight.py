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

- Clock skew is the local clock minus the server's ``Date`` (whole seconds, so +0.5 s),
  taken at the midpoint of the exchange. Up to 5 s is ok; over 5 s a warning (it works, but
  the ``Date`` header's resolution and network delay leave little margin); 10 s or more is
  red against Maskinporten, which refuses assertions whose ``iat`` is more than about 10 s
  off its clock (MP-130). Against KFR a skew is only a warning: KFR does not check ``iat``.
- Nothing is written to KFR: the only KFR request is an own-bank lookup of a fresh
  synthetic fødselsnummer, and a probe GET of the base URL.
- No secret appears in a line: tokens are decoded for their claims only; proxy passwords
  are masked.
- Lines that depend on a failed one (TCP after DNS failed, a token without a certificate)
  are left out; the failed line says what was not tried.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import email.utils
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from conformance import contract
from conformance.auth import CLOCK_TOLERANCE_S, Credentials, MaskinportenClient
from conformance.errors import AuthError, ConformanceError, TargetEnvironmentError, UsageError
from conformance.profile import BankEnvironment

__all__ = [
    "CheckLine",
    "Endpoint",
    "PreflightFailed",
    "PreflightReport",
    "Status",
    "check_certificate",
    "check_clock",
    "check_sheet",
    "clock_skew_s",
    "proxy_for",
    "run_doctor",
    "start_up_check",
]

WRITE_SCOPE = "bits:kundeforhold.write"

STEP_CERTIFICATE = "A-3"
STEP_NETWORK = "A-7"
STEP_MASKINPORTEN = "B-1/A-4"
STEP_KFR = "C-1"
STEP_SHEET = "C-2"

CLOCK_WARN_S = 5.0
CLOCK_FAIL_S = CLOCK_TOLERANCE_S  # Maskinporten's window for iat (±10 s)
EXPIRY_WARN_DAYS = 30
DOCTOR_TIMEOUT_S = 5.0   # per HTTP request in doctor
SOCKET_TIMEOUT_S = 3.0   # DNS and TCP probes
# The runner's start: two requests, each allowed this long to connect, so that an
# unreachable host is reported well within 5 s of starting.
START_UP_CONNECT_S = 2.0
START_UP_READ_S = 4.0

_NTP_ADVICE = (
    "Still maskinens klokke automatisk (NTP): på Linux «timedatectl set-ntp true», på "
    "Windows «w32tm /resync»; i en container følger klokken vertsmaskinen."
)


class Status(StrEnum):
    OK = "ok"
    WARN = "advarsel"
    FAIL = "feil"


@dataclass(frozen=True)
class CheckLine:
    """One checked thing: ``check`` is a stable id (``certificate.password``), ``message``
    what was found, ``advice`` what to do (for warnings and failures)."""

    step: str
    check: str
    status: Status
    message: str
    advice: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def text(self) -> str:
        """The line as one sentence or two, advice included (for a usage error or a log)."""
        if self.advice and self.status is not Status.OK:
            return f"{self.message} {self.advice}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "check": self.check, "status": str(self.status),
            "message": self.message, "advice": self.advice, "details": dict(self.details),
        }


def _line(step: str, check: str, status: Status, message: str, advice: str | None = None,
          /, **details: Any) -> CheckLine:
    return CheckLine(step, check, status, message, advice, details)


@dataclass
class PreflightReport:
    bank: str
    environment: str
    kfr_base_url: str
    maskinporten_issuer: str
    lines: list[CheckLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no line is red (warnings are fine)."""
        return bool(self.lines) and not any(line.failed for line in self.lines)

    def counts(self) -> dict[str, int]:
        return {str(s): sum(1 for line in self.lines if line.status is s) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank, "environment": self.environment,
            "kfr_base_url": self.kfr_base_url, "maskinporten_issuer": self.maskinporten_issuer,
            "ok": self.ok, "counts": self.counts(),
            "checks": [line.to_dict() for line in self.lines],
        }


class PreflightFailed(UsageError):
    """The runner's start found a problem every row would run into."""


# ---------------------------------------------------------------- A-3 the certificate


def _looks_like_pkcs12(data: bytes) -> bool:
    """A PFX structure (SEQUENCE { INTEGER 3, ContentInfo, … }): when such a file will not
    open, the password is what is wrong, not the file."""
    from conformance.pack._der import (
        INTEGER,
        SEQUENCE,
        DerError,
        decode_integer,
        read_all,
        read_one,
    )

    try:
        outer, _ = read_one(data)
        if outer.tag != SEQUENCE:
            return False
        parts = read_all(outer.value)
    except DerError:
        return False
    return (len(parts) >= 2 and parts[0].tag == INTEGER and decode_integer(parts[0]) == 3
            and parts[1].tag == SEQUENCE)


def _pkcs12_refuses_password(data: bytes, password: str | None) -> bool:
    """True when ``data`` is a PKCS#12 file that this password does not open."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not _looks_like_pkcs12(data):
        return False
    try:
        pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except (ValueError, TypeError):
        return True
    return False


def _certificate_failure(env: BankEnvironment, exc: ConformanceError) -> CheckLine:
    """A certificate that will not load, on the line of what is wrong: the file, the
    password or the key."""
    path = Path(env.cert_path)
    text, advice = exc.message, exc.hint
    password_advice = (
        "Sett passordet i miljøvariabelen som --cert-password-env (eller cert_password_env i "
        "profilen) peker på; verktøyet leser det bare derfra."
    )
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        data = b""
    if data:
        if b"-----BEGIN " in data[:4096]:
            if "passord" in text.lower():
                return _line(STEP_CERTIFICATE, "certificate.password", Status.FAIL, text,
                             password_advice, file=str(path))
        elif _pkcs12_refuses_password(data, env.cert_password):
            message = (
                f"{path.name} er passordbeskyttet, men passord mangler." if not env.cert_password
                else f"Passordet åpner ikke {path.name}: feil passord."
            )
            return _line(STEP_CERTIFICATE, "certificate.password", Status.FAIL, message,
                         password_advice, file=str(path))
        if "hører ikke til sertifikatet" in text:
            return _line(STEP_CERTIFICATE, "certificate.key_match", Status.FAIL, text, advice,
                         file=str(path))
    return _line(STEP_CERTIFICATE, "certificate.readable", Status.FAIL, text,
                 advice or "Oppgi bankens virksomhetssertifikat med --cert (PKCS#12 eller PEM).",
                 file=str(path))


def _name_label(name: x509.Name) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = name.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    return name.rfc4514_string()


def _load_signing(path: Path | None, password: str | None) -> Credentials | None:
    return Credentials.load(path, password=password) if path else None


def check_certificate(
    env: BankEnvironment,
    *,
    signing_cert: Path | None = None,
    signing_password: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[CheckLine], Credentials | None]:
    """A-3: the certificate's lines, and the loaded credentials (None when unusable)."""
    try:
        credentials = Credentials.load(
            Path(env.cert_path), password=env.cert_password, key_path=env.key_path
        )
    except ConformanceError as exc:
        return [_certificate_failure(env, exc)], None
    cert = credentials.certificate
    name = Path(env.cert_path).name
    lines = [
        _line(STEP_CERTIFICATE, "certificate.readable", Status.OK,
              f"Sertifikatet {name} kan leses: «{_name_label(cert.subject)}».", file=str(env.cert_path)),
        _line(STEP_CERTIFICATE, "certificate.password", Status.OK,
              "Passordet åpner sertifikatet." if env.cert_password
              else "Sertifikatet trenger ikke passord."),
        _line(STEP_CERTIFICATE, "certificate.key_match", Status.OK,
              "Den private nøkkelen hører til sertifikatet."),
        check_certificate_orgnr(credentials, env.orgnr),
        check_certificate_issuer(cert, env),
        check_certificate_validity(cert, now=now),
        check_authentication_usage(cert),
    ]
    try:
        signing = _load_signing(signing_cert, signing_password)
    except ConformanceError as exc:
        lines.append(_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                           f"Signeringssertifikatet (--signing-cert) kan ikke brukes: {exc.message}",
                           exc.hint))
    else:
        lines.append(check_signing_usage(credentials, signing, env.orgnr))
    return lines, credentials


def check_certificate_orgnr(credentials: Credentials, orgnr: str) -> CheckLine:
    found = credentials.orgnr
    if found == orgnr:
        return _line(STEP_CERTIFICATE, "certificate.orgnr", Status.OK,
                     f"Sertifikatet tilhører banken ({orgnr}).", orgnr=found)
    if found is None:
        return _line(STEP_CERTIFICATE, "certificate.orgnr", Status.FAIL,
                     "Sertifikatet oppgir ikke noe organisasjonsnummer (organizationIdentifier "
                     "NTRNO-…, serialNumber eller O=…-<orgnr>).",
                     "Bruk bankens virksomhetssertifikat fra Buypass eller Commfides.")
    return _line(STEP_CERTIFICATE, "certificate.orgnr", Status.FAIL,
                 f"Sertifikatet tilhører organisasjonsnummer {found}, ikke banken {orgnr}; "
                 "Maskinporten ville avvist det (MP-122).",
                 f"Bruk bankens eget virksomhetssertifikat, eller kjør med --bank {found} hvis "
                 "det er den banken som skal testes.", orgnr=found)


def _sandbox_ca(env: BankEnvironment) -> x509.Certificate | None:
    from conformance.sandbox.pki import CA_CERT_FILE

    if env.sandbox_data_dir is None:
        return None
    try:  # read only: creating a CA here would be a side effect of a check
        return x509.load_pem_x509_certificate((Path(env.sandbox_data_dir) / CA_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def check_certificate_issuer(cert: x509.Certificate, env: BankEnvironment) -> CheckLine:
    issuer = _name_label(cert.issuer)
    if env.is_sandbox:
        ca = _sandbox_ca(env)
        if ca is None:
            return _line(STEP_CERTIFICATE, "certificate.issuer", Status.WARN,
                         f"Utstedt av «{issuer}»; sandkassens CA finnes ikke i "
                         f"{env.sandbox_data_dir}, så utstederen kan ikke kontrolleres.",
                         "Oppgi sandkassens datamappe med --sandbox-data-dir.", issuer=issuer)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return _line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                         f"Sertifikatet er utstedt av «{issuer}», ikke av sandkassens test-CA; "
                         "sandkassens Maskinporten avviser det (MP-120).",
                         "Utelat --cert i sandkassen (verktøyet utsteder et selv), eller lag et "
                         "med «kfr-conformance sandbox issue-cert».", issuer=issuer)
        return _line(STEP_CERTIFICATE, "certificate.issuer", Status.OK,
                     f"Utstedt av sandkassens test-CA («{issuer}»).", issuer=issuer)
    text = " ".join(str(a.value) for a in cert.issuer).lower()
    vendor = next((v for v in ("Buypass", "Commfides") if v.lower() in text), None)
    if vendor and "test" in text:
        return _line(STEP_CERTIFICATE, "certificate.issuer", Status.OK,
                     f"Testsertifikat fra {vendor} («{issuer}»), som testmiljøet krever.",
                     issuer=issuer)
    if vendor:
        return _line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                     f"Sertifikatet er et produksjonssertifikat fra {vendor} («{issuer}»); "
                     "Maskinportens testmiljø godtar bare testsertifikater.",
                     f"Bestill et testsertifikat fra {vendor} (A-3), f.eks. utstedt under "
                     "«Buypass Class 3 Test4 CA G2 ST Business» eller «Commfides Legal Person - G3 - TEST».",
                     issuer=issuer)
    return _line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                 f"Sertifikatet er utstedt av «{issuer}», ikke av en test-CA fra Buypass eller "
                 "Commfides; Maskinportens testmiljø avviser det (MP-120).",
                 "Bruk bankens testsertifikat fra Buypass eller Commfides (A-3).", issuer=issuer)


def check_certificate_validity(cert: x509.Certificate, *, now: dt.datetime | None = None) -> CheckLine:
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    details = {"not_before": start.isoformat(), "not_after": end.isoformat()}
    if now < start:
        return _line(STEP_CERTIFICATE, "certificate.validity", Status.FAIL,
                     f"Sertifikatet er ikke gyldig før {start:%Y-%m-%d %H:%M} UTC.",
                     "Vent til gyldighetsperioden starter, eller kontroller maskinens klokke.",
                     **details)
    if end < now:
        return _line(STEP_CERTIFICATE, "certificate.validity", Status.FAIL,
                     f"Sertifikatet utløp {end:%Y-%m-%d} ({(now - end).days} dager siden); "
                     "Maskinporten avviser det (MP-121).",
                     "Bestill et nytt testsertifikat fra Buypass eller Commfides (A-3).", **details)
    left = (end - now).days
    if left < EXPIRY_WARN_DAYS:
        return _line(STEP_CERTIFICATE, "certificate.validity", Status.WARN,
                     f"Sertifikatet utløper {end:%Y-%m-%d}, om {left} dager.",
                     "Bestill et nytt testsertifikat nå, så testen og pakken ikke stopper.",
                     **details)
    return _line(STEP_CERTIFICATE, "certificate.validity", Status.OK,
                 f"Sertifikatet er gyldig til {end:%Y-%m-%d} ({left} dager).", **details)


def _key_usage(cert: x509.Certificate) -> list[str] | None:
    from conformance.pack.certinfo import key_usage_names

    return key_usage_names(cert)


def check_authentication_usage(cert: x509.Certificate) -> CheckLine:
    usage = _key_usage(cert)
    if usage is None or "digital_signature" in usage:
        shown = ", ".join(usage) if usage else "ingen begrensning"
        return _line(STEP_CERTIFICATE, "certificate.auth_usage", Status.OK,
                     f"Nøkkelbruken passer for autentisering mot Maskinporten ({shown}).",
                     key_usage=usage)
    return _line(STEP_CERTIFICATE, "certificate.auth_usage", Status.FAIL,
                 f"Sertifikatet er ikke et autentiseringssertifikat (nøkkelbruk: "
                 f"{', '.join(usage) or 'ingen'}); Maskinporten krever digitalSignature.",
                 "Bruk autentiseringssertifikatet i sertifikatsettet fra Buypass/Commfides "
                 "med --cert.", key_usage=usage)


def check_signing_usage(auth: Credentials, signing: Credentials | None, orgnr: str) -> CheckLine:
    """Which certificate signs the pack, and whether it may: nonRepudiation is the signing
    certificate's own usage; digitalSignature alone is accepted by ``verify`` too."""
    which = "signeringssertifikatet (--signing-cert)" if signing else "autentiseringssertifikatet (--cert)"
    cert = (signing or auth).certificate
    usage = _key_usage(cert)
    if signing is not None and signing.orgnr != orgnr:
        return _line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                     f"Signeringssertifikatet tilhører {signing.orgnr or 'ingen virksomhet'}, ikke "
                     f"banken {orgnr}; verify ville avvist pakken.",
                     "Bruk bankens eget signeringssertifikat.", key_usage=usage)
    if usage is None or "non_repudiation" in usage:
        return _line(STEP_CERTIFICATE, "certificate.signing_usage", Status.OK,
                     f"Resultatpakken signeres med {which}, som er ment for signering "
                     f"({'nonRepudiation' if usage else 'ingen begrensning'}).", key_usage=usage)
    if "digital_signature" in usage:
        return _line(STEP_CERTIFICATE, "certificate.signing_usage", Status.WARN,
                     f"Resultatpakken signeres med {which} (digitalSignature). verify godtar "
                     "det, men signeringssertifikatet (nonRepudiation) er det som er ment for å "
                     "signere.",
                     "Oppgi signeringssertifikatet fra samme sertifikatsett med --signing-cert "
                     "(og --signing-cert-password-env).", key_usage=usage)
    return _line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                 f"{which[0].upper()}{which[1:]} kan ikke signere resultatpakken (nøkkelbruk: "
                 f"{', '.join(usage) or 'ingen'}); verify ville avvist signaturen.",
                 "Oppgi signeringssertifikatet (nonRepudiation) med --signing-cert.", key_usage=usage)


# ---------------------------------------------------------------- A-7 the network


class _ProxyMarker(httpx.BaseTransport):
    """Stands in for a transport so the HTTP client's own mount rules say which proxy a URL
    gets (the choice ``make_http_client`` makes for real requests)."""

    def __init__(self, proxy: str | None) -> None:
        self.proxy = proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:  # pragma: no cover
        raise RuntimeError("a marker, not a transport")


def _mask_proxy(proxy: str) -> str:
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return proxy
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}").geturl()


def proxy_for(url: str) -> str | None:
    """The proxy (from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY) that the tool's HTTP
    client uses for ``url``, its password masked; None when it connects directly."""
    from conformance.kfr import _proxy_mounts  # the rules make_http_client mounts

    mounts = _proxy_mounts(_ProxyMarker)
    if not mounts:
        return None
    with httpx.Client(transport=_ProxyMarker(None), mounts=mounts, trust_env=False) as chooser:
        chosen = chooser._transport_for_url(httpx.URL(url))
    proxy = chosen.proxy if isinstance(chosen, _ProxyMarker) else None
    return _mask_proxy(proxy) if proxy else None


@dataclass(frozen=True)
class Endpoint:
    """A server the run talks to, and the route to it."""

    role: str          # "Maskinporten" | "KFR"
    base: str          # every request to this server starts with it
    url: str           # the harmless GET the network probe sends
    host: str
    port: int
    tls: bool
    proxy: str | None

    @classmethod
    def for_url(cls, role: str, base: str, probe_url: str) -> Endpoint:
        parts = urlsplit(base)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(role, base, probe_url, parts.hostname or "", port, tls, proxy_for(base))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def route(self) -> str:
        return f"via proxy {self.proxy}" if self.proxy else "direkte, uten proxy"

    @property
    def proxy_address(self) -> tuple[str, int] | None:
        if not self.proxy:
            return None
        parts = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def endpoints(env: BankEnvironment) -> list[Endpoint]:
    issuer = env.maskinporten_issuer if env.maskinporten_issuer.endswith("/") else env.maskinporten_issuer + "/"
    kfr = env.kfr_base_url.rstrip("/") + "/"
    return [
        Endpoint.for_url("Maskinporten", issuer, issuer + ".well-known/oauth-authorization-server"),
        Endpoint.for_url("KFR", kfr, kfr),
    ]


@dataclass(frozen=True)
class NetworkProblem:
    """What went wrong on the way to a server. ``reached``: a connection was opened (the
    server or proxy then dropped it or stayed silent), so the host is not unreachable."""

    layer: str       # dns | tcp | timeout | tls | proxy | answer
    text: str
    advice: str
    reached: bool = False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_network_error(exc: BaseException, ep: Endpoint, ca: str) -> NetworkProblem:
    """Name the layer that failed, from the exception and its causes (httpx wraps the
    socket and ssl errors it meets)."""
    chain = list(_causes(exc))
    text = " ".join(str(e) for e in chain)
    proxy_target = f"proxyen {ep.proxy}" if ep.proxy else ep.address
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = next((str(e.verify_message) for e in chain if isinstance(e, ssl.SSLCertVerificationError)), "")
        return NetworkProblem(
            "tls", f"TLS-sertifikatet til {ep.host} kunne ikke verifiseres med {ca}"
            + (f" ({reason})" if reason else ""),
            "Står maskinen bak en TLS-inspiserende proxy, oppgi proxyens CA med --ca-bundle FIL.")
    ssl_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if ssl_error is not None:
        return NetworkProblem(
            "tls", f"TLS-forhandlingen med {ep.host} feilet ({ssl_error.reason or ssl_error})",
            "Kontroller at URL-en er https-adressen til tjenesten, og at proxyen slipper TLS gjennom.")
    if isinstance(exc, httpx.ProxyError):
        return NetworkProblem(
            "proxy", f"proxyen {ep.proxy} avviste forbindelsen til {ep.address} ({exc})",
            f"Be nettverksansvarlig åpne {ep.address} i proxyen, eller legg {ep.host} i NO_PROXY "
            "hvis den skal nås direkte.")
    gai = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if gai is not None:
        name = ep.proxy_address[0] if ep.proxy_address else ep.host
        return NetworkProblem(
            "dns", f"navnet {name}{' (proxyen)' if ep.proxy else ''} kan ikke slås opp i DNS "
            f"({gai.strerror or gai})",
            "Kontroller HTTPS_PROXY." if ep.proxy else
            "Kontroller vertsnavnet i URL-en og maskinens DNS; krever nettet en proxy, sett HTTPS_PROXY.")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return NetworkProblem(
            "tcp", f"{proxy_target} tar ikke imot forbindelser (connection refused)",
            "Kontroller HTTPS_PROXY og NO_PROXY, og at proxyen kjører." if ep.proxy else
            "Ingen tjeneste lytter der: kontroller URL og port, og brannmuråpningen (A-7).")
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return NetworkProblem(
            "timeout", f"ingen svar fra {proxy_target} ved oppkobling (tidsavbrudd)",
            "Typisk en brannmur som mangler åpning mot verten (A-7), eller feil proxy.")
    if isinstance(exc, httpx.ConnectError):
        cause = next((e for e in chain if isinstance(e, OSError)), exc)
        return NetworkProblem(
            "tcp", f"kan ikke koble til {proxy_target} ({getattr(cause, 'strerror', None) or cause})",
            "Kontroller nettverket, brannmuråpningen (A-7) og HTTPS_PROXY/NO_PROXY.")
    return NetworkProblem(
        "answer", f"forbindelsen til {ep.host} ble åpnet, men ga ikke et fullstendig svar "
        f"({type(exc).__name__})",
        "Prøv igjen; skjer det hver gang, kontroller proxyen og brannmuren.", reached=True)


@dataclass
class _Exchange:
    url: httpx.URL
    sent_at: float
    received_at: float = 0.0
    status: int | None = None
    date: str | None = None
    content_type: str = ""
    body: bytes = b""
    error: BaseException | None = None


def _as_httpx_error(exc: BaseException) -> BaseException:
    """httpcore's exception as httpx's. httpx maps them through a table of httpcore's
    classes built on first use; if httpcore was imported again since (pytest's in-process
    test runs drop the modules they imported), the table misses and httpcore's own
    exception escapes the clients, which only know httpx's. Same names, so map by name."""
    if isinstance(exc, httpx.HTTPError) or not type(exc).__module__.startswith("httpcore"):
        return exc
    mapped = getattr(httpx, type(exc).__name__, None)
    if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
        return mapped(str(exc))
    return exc


class _ObservingTransport(httpx.BaseTransport):
    """Wraps each transport of the preflight's HTTP client (direct and proxied): the clients
    turn network errors into prose and do not expose Date headers, the preflight needs both."""

    def __init__(self, inner: httpx.BaseTransport, log: list[_Exchange]) -> None:
        self.inner = inner
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(request.url, time.time())
        self.log.append(exchange)
        try:
            response = self.inner.handle_request(request)
            response.read()  # small answers only here; the clients read it again from memory
        except BaseException as exc:
            mapped = _as_httpx_error(exc)
            exchange.received_at, exchange.error = time.time(), mapped
            if mapped is exc:
                raise
            raise mapped from exc
        exchange.received_at = time.time()
        exchange.status = response.status_code
        exchange.date = response.headers.get("date")
        exchange.content_type = response.headers.get("content-type", "")
        exchange.body = response.content[:65536]
        return response

    def close(self) -> None:
        self.inner.close()


def clock_skew_s(date_header: str | None, sent_at: float, received_at: float) -> float | None:
    """Local clock minus the server's, from its ``Date`` header: seconds, None if absent."""
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    # Date is truncated to whole seconds: the server's time was somewhere in [Date, Date+1).
    return (sent_at + received_at) / 2 - (server + 0.5)


def check_clock(ep: Endpoint, skew: float | None) -> CheckLine:
    check = f"clock.{ep.role.lower()}"
    if skew is None:
        return _line(STEP_NETWORK, check, Status.WARN,
                     f"Svaret fra {ep.role} ({ep.host}) hadde ingen Date-header; klokkeavviket "
                     "kan ikke måles.", _NTP_ADVICE)
    direction = "foran" if skew > 0 else "bak"
    seconds = f"{abs(skew):.1f}".replace(".", ",")
    measured = f"Klokken her går {seconds} s {direction} {ep.role} ({ep.host}, Date-headeren)"
    details = {"skew_s": round(skew, 2), "host": ep.host}
    if abs(skew) <= CLOCK_WARN_S:
        return _line(STEP_NETWORK, check, Status.OK, f"{measured}.", **details)
    if ep.role == "Maskinporten" and abs(skew) >= CLOCK_FAIL_S:
        return _line(STEP_NETWORK, check, Status.FAIL,
                     f"{measured}; Maskinporten godtar bare ±{CLOCK_FAIL_S:.0f} s, så hver "
                     "tokenforespørsel avvises (MP-130).", _NTP_ADVICE, **details)
    return _line(STEP_NETWORK, check, Status.WARN,
                 f"{measured}; over {CLOCK_WARN_S:.0f} s gir lite margin mot Maskinportens "
                 f"grense på ±{CLOCK_FAIL_S:.0f} s.", _NTP_ADVICE, **details)


def _resolve(host: str, port: int, timeout_s: float) -> list[str]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=timeout_s)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung resolver must not hang us
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_dns(ep: Endpoint) -> tuple[CheckLine, list[str]]:
    """The name this machine itself must resolve: the proxy's when one is used (the proxy
    resolves the target), else the target's."""
    host, port = ep.proxy_address or (ep.host, ep.port)
    who = f"proxyen {host}" if ep.proxy else host
    check = f"network.dns.{ep.role.lower()}"
    if _is_ip(host):
        return _line(STEP_NETWORK, check, Status.OK,
                     f"{ep.role}: {who} er en IP-adresse (ikke noe DNS-oppslag); {ep.route}.",
                     host=host, proxy=ep.proxy), [host.strip("[]")]
    try:
        addresses = _resolve(host, port, SOCKET_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        return _line(STEP_NETWORK, check, Status.FAIL,
                     f"{ep.role}: DNS svarte ikke på {SOCKET_TIMEOUT_S:.0f} s for {who}; TCP og "
                     "TLS ble ikke prøvd.",
                     "Kontroller maskinens DNS-oppsett (resolv.conf / nettverkskortet).",
                     host=host, proxy=ep.proxy), []
    except (socket.gaierror, UnicodeError, OSError) as exc:
        return _line(STEP_NETWORK, check, Status.FAIL,
                     f"{ep.role}: navnet {who} kan ikke slås opp i DNS "
                     f"({getattr(exc, 'strerror', None) or exc}); TCP og TLS ble ikke prøvd.",
                     "Kontroller HTTPS_PROXY." if ep.proxy else
                     "Kontroller vertsnavnet i URL-en og maskinens DNS; krever nettet en proxy, "
                     "sett HTTPS_PROXY.", host=host, proxy=ep.proxy), []
    extra = f" (navnet {ep.host} slås opp av proxyen)" if ep.proxy else ""
    return _line(STEP_NETWORK, check, Status.OK,
                 f"{ep.role}: {who} slås opp til {', '.join(addresses[:3])}{extra}.",
                 host=host, addresses=addresses, proxy=ep.proxy), addresses


def check_tcp(ep: Endpoint, addresses: list[str]) -> CheckLine:
    host, port = ep.proxy_address or (ep.host, ep.port)
    who = f"proxyen {ep.proxy}" if ep.proxy else f"{host}:{port}"
    check = f"network.tcp.{ep.role.lower()}"
    last: OSError | None = None
    for address in addresses[:4]:
        try:
            with socket.create_connection((address, port), timeout=SOCKET_TIMEOUT_S):
                return _line(STEP_NETWORK, check, Status.OK,
                             f"{ep.role}: TCP-forbindelse til {who} ({address}) åpnet.",
                             host=host, port=port, proxy=ep.proxy)
        except OSError as exc:
            last = exc
    refused = isinstance(last, ConnectionRefusedError)
    timed_out = isinstance(last, TimeoutError)
    reason = ("connection refused" if refused else
              f"tidsavbrudd etter {SOCKET_TIMEOUT_S:.0f} s" if timed_out else
              (getattr(last, "strerror", None) or str(last)))
    advice = (
        "Kontroller HTTPS_PROXY/NO_PROXY og at proxyen kjører." if ep.proxy else
        "Ingen tjeneste lytter der: kontroller URL og port." if refused else
        f"Bestill brannmuråpning mot {ep.address} (A-7), eller sett HTTPS_PROXY hvis nettet krever proxy."
    )
    return _line(STEP_NETWORK, check, Status.FAIL,
                 f"{ep.role}: TCP-forbindelse til {who} feilet ({reason}); TLS ble ikke prøvd.",
                 advice, host=host, port=port, proxy=ep.proxy)


# ---------------------------------------------------------------- the probe: clients with eyes


def _bearer(token: str) -> Any:
    def auth(request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    return auth


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A JWT's header and claims, unverified (the signature is never shown or needed)."""
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None


class Probe:
    """The preflight's HTTP client, Maskinporten client and KFR client for one bank, with
    every exchange observed (sent/received time, Date, status, or the network error)."""

    def __init__(self, env: BankEnvironment, credentials: Credentials | None, *,
                 timeout: httpx.Timeout) -> None:
        from conformance.kfr import KfrClient, make_http_client

        self.env = env
        self.credentials = credentials
        self.log: list[_Exchange] = []
        self.http = make_http_client(
            ca_bundle=env.ca_bundle, wrap=lambda t: _ObservingTransport(t, self.log)
        )
        self.http.timeout = timeout
        self.maskinporten_ep, self.kfr_ep = endpoints(env)
        self.ca = f"CA-bundelen {env.ca_bundle}" if env.ca_bundle else "standard rotsertifikater"
        self.mp = (
            MaskinportenClient(issuer=env.maskinporten_issuer, client_id=env.client_id,
                               credentials=credentials, http=self.http, retries=0)
            if credentials is not None else None
        )
        self.kfr = KfrClient(env.kfr_base_url, env.orgnr, http=self.http, auth=None, retries=0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last(self, ep: Endpoint) -> _Exchange | None:
        for exchange in reversed(self.log):
            if str(exchange.url).startswith(ep.base):
                return exchange
        return None

    def skew(self, ep: Endpoint) -> float | None:
        exchange = self.last(ep)
        if exchange is None or exchange.status is None:
            return None
        return clock_skew_s(exchange.date, exchange.sent_at, exchange.received_at)

    def problem(self, ep: Endpoint) -> NetworkProblem | None:
        exchange = self.last(ep)
        if exchange is None or exchange.error is None:
            return None
        return describe_network_error(exchange.error, ep, self.ca)

    def get(self, ep: Endpoint) -> NetworkProblem | None:
        try:
            self.http.get(ep.url, headers={"Accept": "application/json"})
        except httpx.TransportError:
            return self.problem(ep)
        return None

    def lookup(self, token: str | None) -> Any:
        from conformance.ids import synthetic_fodselsnummer

        # A fresh synthetic person: reading it changes nothing in KFR.
        return self.kfr.lookup(synthetic_fodselsnummer(), auth=_bearer(token) if token else None)


def check_tls(probe: Probe, ep: Endpoint) -> CheckLine:
    check = f"network.tls.{ep.role.lower()}"
    problem = probe.get(ep)
    exchange = probe.last(ep)
    if problem is None and exchange is not None and exchange.status is not None:
        what = (f"TLS verifisert med {probe.ca}" if ep.tls else "HTTP uten TLS (sandkasse)")
        return _line(STEP_NETWORK, check, Status.OK,
                     f"{ep.role}: {what}; {ep.host} svarte HTTP {exchange.status} ({ep.route}).",
                     host=ep.host, proxy=ep.proxy, status=exchange.status)
    problem = problem or NetworkProblem("answer", "ingen svar", "Prøv igjen.")
    return _line(STEP_NETWORK, check, Status.FAIL,
                 f"{ep.role}: {problem.text} ({ep.route}).", problem.advice,
                 host=ep.host, proxy=ep.proxy, layer=problem.layer)


def check_endpoint(probe: Probe, ep: Endpoint) -> list[CheckLine]:
    """A-7 for one server: DNS, TCP, TLS (an HTTP answer through the real client) and the
    clock against its Date header. Each layer only when the one below worked."""
    dns, addresses = check_dns(ep)
    lines = [dns]
    if dns.failed:
        return lines
    tcp = check_tcp(ep, addresses)
    lines.append(tcp)
    if tcp.failed:
        return lines
    tls = check_tls(probe, ep)
    lines.append(tls)
    if not tls.failed:
        lines.append(check_clock(ep, probe.skew(ep)))
    return lines


# ---------------------------------------------------------------- B-1/A-4 Maskinporten


_ALT_SCOPE_ADVICE = (
    "Velg et scope klienten allerede har i Samarbeidsportalen (ikke bits:kundeforhold.write) "
    "og oppgi det med --alt-scope eller alt_scope i profilen; det trengs bare for raden "
    "«token uten skrivescope» (KFR-002)."
)


def _token_failure(probe: Probe, exc: ConformanceError, check: str, what: str,
                   advice: str | None = None) -> CheckLine:
    ep = probe.maskinporten_ep
    if isinstance(exc, AuthError):
        return _line(STEP_MASKINPORTEN, check, Status.FAIL, f"{what}: {exc.message}.",
                     advice or exc.hint, mp_code=exc.mp_code, error=exc.error)
    problem = probe.problem(ep)
    if problem is not None:
        return _line(STEP_MASKINPORTEN, check, Status.FAIL,
                     f"{what}: Maskinporten kan ikke nås – {problem.text} ({ep.route}).",
                     problem.advice, layer=problem.layer)
    return _line(STEP_MASKINPORTEN, check, Status.FAIL, f"{what}: {exc.message}", exc.hint)


def check_token(probe: Probe) -> tuple[list[CheckLine], str | None]:
    """A token for the write scope and what it says: scope, consumer, lifetime."""
    assert probe.mp is not None
    what = f"Token for {WRITE_SCOPE}"
    try:
        token = probe.mp.fetch_token([WRITE_SCOPE])
    except (AuthError, TargetEnvironmentError) as exc:
        return [_token_failure(probe, exc, "maskinporten.token", what)], None
    left = max(0, round(token.expires_at - time.time()))
    lines = [_line(STEP_MASKINPORTEN, "maskinporten.token", Status.OK,
                   f"Maskinporten utstedte token for {WRITE_SCOPE} (klient {probe.env.client_id}).",
                   expires_in_s=left)]
    decoded = _decode(token.value)
    if decoded is None:
        lines.append(_line(STEP_MASKINPORTEN, "maskinporten.claims", Status.WARN,
                           "Tokenet er ikke en JWT, så scope, consumer og levetid kan ikke leses.",
                           "Maskinporten utsteder JWT-er; kontroller --maskinporten-url."))
        return lines, token.value
    _, claims = decoded
    scope = contract.token_has_scope(claims, WRITE_SCOPE)
    lines.append(_line(
        STEP_MASKINPORTEN, "maskinporten.scope", Status.OK if scope.ok else Status.FAIL,
        f"Tokenets scope: «{claims.get('scope', '')}»." if scope.ok
        else f"Tokenet mangler {WRITE_SCOPE}: {scope.reason}.",
        None if scope.ok else "Klienten får ikke skrivescopet: be Bits om tilgang til "
        f"{WRITE_SCOPE} og legg det til klienten i Samarbeidsportalen (B-1).",
        scope=claims.get("scope"), rule=scope.rule.id))
    consumer = contract.token_consumer_is_bank(claims, probe.env.orgnr)
    lines.append(_line(
        STEP_MASKINPORTEN, "maskinporten.consumer", Status.OK if consumer.ok else Status.FAIL,
        f"Tokenets consumer er {consumer.reason} (banken)." if consumer.ok
        else f"Tokenet gjelder feil virksomhet: {consumer.reason}.",
        None if consumer.ok else "Klient-ID-en tilhører en annen virksomhet: bruk klienten "
        "banken selv har i Samarbeidsportalen (--client-id).",
        consumer=claims.get("consumer"), rule=consumer.rule.id))
    iat, exp = claims.get("iat"), claims.get("exp")
    if isinstance(iat, int | float) and isinstance(exp, int | float):
        lines.append(_line(STEP_MASKINPORTEN, "maskinporten.lifetime", Status.OK,
                           f"Tokenet varer {exp - iat:.0f} s (utløper "
                           f"{dt.datetime.fromtimestamp(exp, dt.UTC):%H:%M:%S} UTC); verktøyet "
                           "fornyer det selv.", lifetime_s=exp - iat))
    else:
        lines.append(_line(STEP_MASKINPORTEN, "maskinporten.lifetime", Status.WARN,
                           "Tokenet oppgir ikke iat/exp, så levetiden er ukjent.", None))
    return lines, token.value


def check_alt_scope(probe: Probe) -> CheckLine:
    """The alternative scope (a scope the client has that is not the write scope), for the
    row that shows KFR refuses a token without the write scope."""
    assert probe.mp is not None
    alt = probe.env.alt_scope
    if not alt:
        return _line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.WARN,
                     "Ingen alternativ scope er satt, så raden «token uten skrivescope» (KFR-002) "
                     "kan ikke kjøres automatisk.", _ALT_SCOPE_ADVICE)
    if WRITE_SCOPE in alt.split():
        return _line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                     f"Den alternative scopen «{alt}» inneholder skrivescopet; raden trenger et "
                     "token uten det.", _ALT_SCOPE_ADVICE, scope=alt)
    what = f"Token for den alternative scopen {alt}"
    try:
        token = probe.mp.fetch_token(alt.split())
    except (AuthError, TargetEnvironmentError) as exc:
        scope_refused = isinstance(exc, AuthError) and (
            exc.mp_code == "MP-200" or exc.error == "invalid_scope")
        # MP-200 here means: pick another scope the client has (not: ask Bits for one).
        return _token_failure(probe, exc, "maskinporten.alt_scope", what,
                              _ALT_SCOPE_ADVICE if scope_refused else None)
    decoded = _decode(token.value)
    claims = decoded[1] if decoded else {}
    if claims and contract.token_has_scope(claims, WRITE_SCOPE).ok:
        return _line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                     f"Tokenet for «{alt}» har likevel {WRITE_SCOPE}; raden trenger et token uten det.",
                     _ALT_SCOPE_ADVICE, scope=claims.get("scope"))
    return _line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.OK,
                 f"Maskinporten utstedte token for den alternative scopen «{alt}» (uten skrivescopet).",
                 scope=claims.get("scope", token.scope))


# ---------------------------------------------------------------- C-1 KFR answers


def _kfr_shaped(body: bytes) -> str | None:
    """What kind of KFR answer a body is: 'kfr' (banks or errorCode), 'gateway' (the
    published statusCode/message shape), or None (not from KFR: a proxy or firewall page)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("banks"), list) or re.fullmatch(r"(KFR|ERR)-\d{3}", str(data.get("errorCode", ""))):
        return "kfr"
    if "statusCode" in data and "message" in data:
        return "gateway"
    return None


def check_kfr_lookup(probe: Probe, token: str | None) -> CheckLine:
    """C-1: KFR's test environment answers an own-bank lookup of a fresh synthetic id."""
    ep = probe.kfr_ep
    try:
        response = probe.lookup(token)
    except TargetEnvironmentError as exc:
        problem = probe.problem(ep)
        exchange = probe.last(ep)
        if problem is None and exchange is not None and exchange.status is not None:
            kind = _kfr_shaped(exchange.body)
            return _line(STEP_KFR, "kfr.lookup", Status.WARN if kind else Status.FAIL,
                         f"KFR ({ep.host}) svarte HTTP {exchange.status} på oppslag for egen bank"
                         + ("; tjenesten nås, men hadde en feil." if kind else
                            ", og svaret kom ikke fra KFR (en proxy eller brannmur?)."),
                         "Prøv igjen om litt; vedvarer det, kontakt Bits (DSOP@bits.no)." if kind
                         else "Kontroller proxy og brannmur mot KFR-verten (A-7).",
                         status=exchange.status)
        return _line(STEP_KFR, "kfr.lookup", Status.FAIL,
                     f"KFR kan ikke nås – {problem.text if problem else exc.message} ({ep.route}).",
                     problem.advice if problem else exc.hint)
    kind = _kfr_shaped(response.body)
    status = response.status
    details = {"status": status, "error_code": response.error_code,
               "correlation_id": response.correlation_id}
    if kind is None:
        return _line(STEP_KFR, "kfr.lookup", Status.FAIL,
                     f"{ep.host} svarte HTTP {status}, men ikke som KFR (verken «banks» eller "
                     "errorCode); svaret kommer trolig fra en proxy eller brannmur.",
                     "Kontroller KFR-URL-en (--kfr-base-url) og proxyen (A-7).", **details)
    if status == 200:
        return _line(STEP_KFR, "kfr.lookup", Status.OK,
                     f"KFR svarte 200 på oppslag for egen bank (CorrelationID "
                     f"{response.correlation_id}); ingenting ble skrevet.", **details)
    if token is None:
        return _line(STEP_KFR, "kfr.lookup", Status.WARN,
                     f"KFR nås (svarte HTTP {status} uten token), men oppslaget kunne ikke "
                     "prøves med token.", "Rett Maskinporten-linjene over først.", **details)
    if status in (401, 403):
        who = "API-gatewayen" if kind == "gateway" else "KFR"
        return _line(STEP_KFR, "kfr.lookup", Status.FAIL,
                     f"{who} avviste oppslaget med bankens token (HTTP {status}"
                     f"{' ' + response.error_code if response.error_code else ''}).",
                     "Bits gir tilgang i testmiljøet når registreringsskjemaet er godkjent (B-2, "
                     "C-1); kontroller også scope og consumer i linjene over.", **details)
    if status >= 500:
        return _line(STEP_KFR, "kfr.lookup", Status.WARN,
                     f"KFR nås, men svarte HTTP {status} på oppslaget.",
                     "Prøv igjen om litt; vedvarer det, kontakt Bits (DSOP@bits.no).", **details)
    return _line(STEP_KFR, "kfr.lookup", Status.WARN,
                 f"KFR nås, men svarte HTTP {status}"
                 f"{' ' + response.error_code if response.error_code else ''} på oppslaget.",
                 "Se svaret i KFR-dokumentasjonen; oppslag for egen bank skal gi 200.", **details)


# ---------------------------------------------------------------- C-2 the sheet


def check_sheet(sheet: Path | None, suite_dir: Path | None = None, bindings: Path | None = None,
                *, cwd: Path | None = None) -> list[CheckLine]:
    """C-2: the sheet the run will read (``--sheet``, else the suite's bundled one), its
    version and SHA-256, and whether every row binds to a step."""
    from conformance.binding import bind_cases, load_bindings_file
    from conformance.sheet import read_sheet
    from conformance.suite import default_suite_dir, load_suite

    suite_dir = suite_dir or default_suite_dir(cwd)
    try:
        suite = load_suite(suite_dir)
    except ConformanceError as exc:
        return [_line(STEP_SHEET, "sheet.read", Status.FAIL, f"Testtrinnene kan ikke lastes: {exc.message}",
                      exc.hint)]
    sheet = sheet or suite.sheet
    try:
        info, specs = read_sheet(sheet)
    except ConformanceError as exc:
        return [_line(STEP_SHEET, "sheet.read", Status.FAIL, f"Testarket kan ikke leses: {exc.message}",
                      exc.hint or "Bruk arket Bits sendte (--sheet).", file=str(sheet))]
    lines = [_line(STEP_SHEET, "sheet.read", Status.OK,
                   f"Testark {info.file_name}, versjon {info.version or 'ukjent'}, "
                   f"SHA-256 {info.sha256}, {len(specs)} rader.",
                   file=str(sheet), version=info.version, sha256=info.sha256, rows=len(specs))]
    try:
        overrides = load_bindings_file(bindings) if bindings else None
        cases = bind_cases(specs, suite.registry, overrides)
    except ConformanceError as exc:
        lines.append(_line(STEP_SHEET, "sheet.binding", Status.FAIL,
                           f"Radene kan ikke bindes: {exc.message}", exc.hint))
        return lines
    unbound = [c for c in cases if not c.binding and not c.manual]
    manual = [c.case_id for c in cases if c.manual]
    automated = len(cases) - len(unbound) - len(manual)
    summary = f"{automated} automatisert, {len(manual)} manuelle"
    if not unbound:
        lines.append(_line(STEP_SHEET, "sheet.binding", Status.OK,
                           f"Alle rader er bundet: {summary}.", manual=manual))
    else:
        listed = ", ".join(f"{c.case_id} (rad {c.row})" for c in unbound)
        lines.append(_line(STEP_SHEET, "sheet.binding", Status.WARN,
                           f"{len(unbound)} rader blir «Ikke automatisert» og hindrer C-3: "
                           f"{listed}; {summary}.",
                           "Bind dem med --bindings FIL ({bindings = {\"<id>\" = \"<steg>\"}}); "
                           "«kfr-conformance sheet ARK» viser stegene.",
                           unbound=[c.case_id for c in unbound], manual=manual))
    return lines


# ---------------------------------------------------------------- the whole doctor


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


# ---------------------------------------------------------------- the runner's start


def _unreachable(probe: Probe, ep: Endpoint) -> str | None:
    problem = probe.problem(ep)
    if problem is None or problem.reached:
        return None
    return f"{ep.role} ({ep.address}) kan ikke nås {ep.route}: {problem.text}. {problem.advice}"


def _clock_problem(probe: Probe) -> str | None:
    ep = probe.maskinporten_ep
    line = check_clock(ep, probe.skew(ep))
    if not line.failed:
        return None
    return f"{line.message} {ep.role} nås {ep.route}. {line.advice}"


def start_up_check(env: BankEnvironment, *, connect_s: float = START_UP_CONNECT_S,
                   read_s: float = START_UP_READ_S) -> None:
    """The runner's fail-fast start: one token request, one KFR lookup. Raises
    :class:`PreflightFailed` (one line) when every row would fail for the same reason:
    Maskinporten or KFR unreachable (DNS, TCP, proxy, TLS), a clock outside Maskinporten's
    window, or the write-scope token refused. A certificate that does not load or belongs
    to another bank is left to the runner's own certificate check."""
    try:
        credentials = Credentials.load(Path(env.cert_path), password=env.cert_password,
                                       key_path=env.key_path)
    except ConformanceError:
        return
    if credentials.orgnr and credentials.orgnr != env.orgnr:
        return
    timeout = httpx.Timeout(read_s, connect=connect_s, pool=connect_s)
    with Probe(env, credentials, timeout=timeout) as probe:
        assert probe.mp is not None
        token: str | None = None
        try:
            token = probe.mp.fetch_token([WRITE_SCOPE]).value
        except AuthError as exc:
            problem = _clock_problem(probe) or (
                f"{exc.message} ({probe.maskinporten_ep.host}, {probe.maskinporten_ep.route}). "
                f"Hver rad trenger et token for {WRITE_SCOPE}, så kjøringen stopper her. "
                f"{exc.hint or ''}".strip()
            )
            raise PreflightFailed(problem) from exc
        except TargetEnvironmentError as exc:
            problem = _unreachable(probe, probe.maskinporten_ep)
            if problem:
                raise PreflightFailed(problem) from exc
            # 5xx or a dropped connection: the environment is flaky, not unreachable.
        clock = _clock_problem(probe)
        if clock:
            raise PreflightFailed(clock)
        try:
            probe.lookup(token)
        except TargetEnvironmentError as exc:
            problem = _unreachable(probe, probe.kfr_ep)
            if problem:
                raise PreflightFailed(problem) from exc
