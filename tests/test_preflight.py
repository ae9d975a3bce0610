"""Preflight checks (conformance/preflight.py) against real servers on loopback: the sandbox,
a closed port for a dead proxy or host, a reserved ``.invalid`` name, a TLS server with a
self-signed certificate, and a web server that is not KFR. Also the sandbox's clock fault
and the runner's fail-fast start (pytester, timed: it must stop within 5 s)."""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore  # imported early on purpose: see below
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sheet_layouts import LAYOUTS, build_layout

from conformance.auth import Credentials
from conformance.errors import AuthError, SandboxError
from conformance.ids import synthetic_orgnr
from conformance.preflight import (
    CheckLine,
    Endpoint,
    PreflightFailed,
    Probe,
    Status,
    check_alt_scope,
    check_authentication_usage,
    check_certificate,
    check_certificate_issuer,
    check_clock,
    check_endpoint,
    check_kfr_lookup,
    check_sheet,
    check_signing_usage,
    check_token,
    clock_skew_s,
    proxy_for,
    start_up_check,
)
from conformance.profile import BankEnvironment
from conformance.sandbox import BankCredentials, Faults, RunningSandbox
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import BANK_ALT_SCOPE

# httpx imports httpcore lazily and keeps a map of its exception classes from the first
# request on. pytester's in-process runs drop the modules they imported when they end, so a
# first request inside one would leave that map pointing at a dropped copy of httpcore;
# importing it here keeps one copy for the whole session.

ROOT = Path(__file__).resolve().parent.parent
SHEET = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"
TIMEOUT = httpx.Timeout(5.0, connect=3.0)


# ---------------------------------------------------------------- helpers


def closed_port() -> int:
    """A loopback port nothing listens on (a dead proxy, an unreachable host)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(sb: RunningSandbox, creds: BankCredentials, **changes: Any) -> BankEnvironment:
    fields: dict[str, Any] = {
        "orgnr": creds.orgnr, "bank_name": creds.name, "env_name": "sandbox",
        "kfr_base_url": sb.kfr_base_url, "maskinporten_issuer": sb.maskinporten_issuer,
        "client_id": creds.client_id, "cert_path": creds.p12, "cert_password": creds.password,
        "alt_scope": creds.alt_scope, "sandbox_data_dir": sb.data_dir,
    }
    fields.update(changes)
    return BankEnvironment(**fields)


def by_check(lines: list[CheckLine]) -> dict[str, CheckLine]:
    return {line.check: line for line in lines}


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls-cert.pem", tmp_path / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def web_server(body: bytes, content_type: str, *, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A web server on loopback that answers every GET with ``body`` (optionally over TLS)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _leaf(issuer_cn: str, *, usage: dict[str, bool] | None = None, orgnr: str = "311000004",
          not_after: dt.datetime | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    bits = {"digital_signature": False, "content_commitment": False, "key_encipherment": False,
            "data_encipherment": False, "key_agreement": False, "key_cert_sign": False,
            "crl_sign": False, "encipher_only": False, "decipher_only": False, **(usage or {})}
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Testbank AS"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{orgnr}")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(not_after or now + dt.timedelta(days=400))
        .add_extension(x509.KeyUsage(**bits), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


# ---------------------------------------------------------------- the sandbox's clock fault


def test_sandbox_clock_offset_shifts_date_and_maskinporten_refuses_the_assertion(
    sandbox: RunningSandbox, bank: BankCredentials,
) -> None:
    sandbox.set_faults(Faults(clock_offset_s=300))
    sent = time.time()
    response = httpx.get(sandbox.maskinporten_issuer + ".well-known/oauth-authorization-server")
    server = email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    assert len(response.headers.get_list("date")) == 1
    assert 297 <= server - sent <= 303
    with pytest.raises(AuthError) as refused:
        obtain_token(bank, sandbox.maskinporten_issuer, ["bits:kundeforhold.write"])
    assert refused.value.mp_code == "MP-130"
    sandbox.set_faults(Faults())
    assert obtain_token(bank, sandbox.maskinporten_issuer, ["bits:kundeforhold.write"])


@pytest.mark.parametrize("offset", [float("nan"), 86_401, True, "300"])
def test_sandbox_clock_offset_is_validated(offset: Any) -> None:
    with pytest.raises(SandboxError, match="clock_offset_s"):
        Faults(clock_offset_s=offset)


def test_sandbox_clock_offset_round_trips_through_the_control_endpoint(sandbox: RunningSandbox) -> None:
    response = httpx.put(sandbox.base_url + "/_sandbox/faults", json={"clock_offset_s": -42.5})
    assert response.status_code == 200 and response.json()["clock_offset_s"] == -42.5
    assert sandbox.faults.clock_offset_s == -42.5


# ---------------------------------------------------------------- A-3 the certificate


def test_a_sandbox_banks_certificate_is_green_on_every_line(sandbox: RunningSandbox, bank: BankCredentials) -> None:
    lines, credentials = check_certificate(env_for(sandbox, bank))
    assert credentials is not None and credentials.orgnr == bank.orgnr
    assert {line.check for line in lines} == {
        "certificate.readable", "certificate.password", "certificate.key_match",
        "certificate.orgnr", "certificate.issuer", "certificate.validity",
        "certificate.auth_usage", "certificate.signing_usage",
    }
    assert all(line.status is Status.OK for line in lines), [line.text() for line in lines]


def test_wrong_password_is_its_own_red_line(sandbox: RunningSandbox, tmp_path: Path) -> None:
    creds = sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b", password="riktig-passord")
    lines, credentials = check_certificate(env_for(sandbox, creds, cert_password="feil-passord"))
    assert credentials is None
    [line] = lines
    assert (line.check, line.status) == ("certificate.password", Status.FAIL)
    assert "feil passord" in line.message and "--cert-password-env" in (line.advice or "")
    [missing] = check_certificate(env_for(sandbox, creds, cert_password=None))[0]
    assert missing.check == "certificate.password" and "passord mangler" in missing.message
    good, _ = check_certificate(env_for(sandbox, creds))
    assert by_check(good)["certificate.password"].status is Status.OK


def test_a_damaged_file_is_not_called_a_password_problem(sandbox: RunningSandbox, bank: BankCredentials,
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "broken.p12"
    broken.write_bytes(b"\x30\x82garbage")
    [line] = check_certificate(env_for(sandbox, bank, cert_path=broken))[0]
    assert (line.check, line.status) == ("certificate.readable", Status.FAIL)
    [missing] = check_certificate(env_for(sandbox, bank, cert_path=tmp_path / "none.p12"))[0]
    assert missing.check == "certificate.readable" and "finnes ikke" in missing.message


def test_a_key_from_another_certificate_is_the_key_line(sandbox: RunningSandbox, bank: BankCredentials,
                                                        other_bank: BankCredentials) -> None:
    env = env_for(sandbox, bank, cert_path=bank.cert_pem, key_path=other_bank.key_pem)
    [line] = check_certificate(env)[0]
    assert (line.check, line.status) == ("certificate.key_match", Status.FAIL)


def test_another_banks_certificate_is_red_with_mp_122(sandbox: RunningSandbox, bank: BankCredentials,
                                                     other_bank: BankCredentials) -> None:
    lines, _ = check_certificate(env_for(sandbox, bank, cert_path=other_bank.p12))
    line = by_check(lines)["certificate.orgnr"]
    assert line.status is Status.FAIL
    assert other_bank.orgnr in line.message and "MP-122" in line.message
    assert f"--bank {other_bank.orgnr}" in (line.advice or "")


def _p12(sb: RunningSandbox, orgnr: str, tmp_path: Path, **validity: dt.datetime) -> Path:
    issued = sb.ca.issue(orgnr, "Testbank AS", **validity)
    path = tmp_path / f"{orgnr}-{validity['not_after']:%Y%m%d}.p12"
    path.write_bytes(issued.pkcs12())
    return path


def test_expired_and_soon_expiring_certificates(sandbox: RunningSandbox, bank: BankCredentials,
                                                tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = _p12(sandbox, bank.orgnr, tmp_path, not_before=now - dt.timedelta(days=400),
                   not_after=now - dt.timedelta(days=2))
    line = by_check(check_certificate(env_for(sandbox, bank, cert_path=expired))[0])["certificate.validity"]
    assert line.status is Status.FAIL and "MP-121" in line.message and line.advice
    soon = _p12(sandbox, bank.orgnr, tmp_path, not_before=now - dt.timedelta(days=300),
                not_after=now + dt.timedelta(days=10))
    line = by_check(check_certificate(env_for(sandbox, bank, cert_path=soon))[0])["certificate.validity"]
    assert line.status is Status.WARN
    assert "om 9 dager" in line.message or "om 10 dager" in line.message


def test_the_test_environment_wants_a_buypass_or_commfides_test_certificate(
    sandbox: RunningSandbox, bank: BankCredentials,
) -> None:
    test_env = env_for(sandbox, bank, env_name="test")
    for issuer in ("Buypass Class 3 Test4 CA G2 ST Business", "Commfides Legal Person - G3 - TEST"):
        assert check_certificate_issuer(_leaf(issuer)[0], test_env).status is Status.OK
    production = check_certificate_issuer(_leaf("Buypass Class 3 CA G2 ST Business")[0], test_env)
    assert production.status is Status.FAIL and "produksjonssertifikat" in production.message
    sandbox_cert = Credentials.load(bank.p12).certificate
    foreign = check_certificate_issuer(sandbox_cert, test_env)
    assert foreign.status is Status.FAIL and "MP-120" in foreign.message
    # ... and the sandbox wants its own CA, not Buypass.
    assert check_certificate_issuer(_leaf("Buypass Class 3 Test4 CA G2 ST Business")[0],
                                    env_for(sandbox, bank)).status is Status.FAIL


def test_key_usage_for_authentication_and_for_signing_the_pack(bank: BankCredentials) -> None:
    encipher_only, key = _leaf("x", usage={"key_encipherment": True})
    line = check_authentication_usage(encipher_only)
    assert line.status is Status.FAIL and "digitalSignature" in line.message
    auth_cert, auth_key = _leaf("x", usage={"digital_signature": True})
    auth = Credentials(certificate=auth_cert, private_key=auth_key)
    assert check_authentication_usage(auth_cert).status is Status.OK
    signing = check_signing_usage(auth, None, "311000004")
    assert signing.status is Status.WARN and "--signing-cert" in (signing.advice or "")
    sign_cert, sign_key = _leaf("x", usage={"content_commitment": True})
    own = check_signing_usage(auth, Credentials(certificate=sign_cert, private_key=sign_key), "311000004")
    assert own.status is Status.OK and "signeringssertifikatet" in own.message
    foreign_cert, foreign_key = _leaf("x", usage={"content_commitment": True}, orgnr="311000012")
    other = check_signing_usage(auth, Credentials(certificate=foreign_cert, private_key=foreign_key), "311000004")
    assert other.status is Status.FAIL and "311000012" in other.message
    neither = check_signing_usage(Credentials(certificate=encipher_only, private_key=key), None, "311000004")
    assert neither.status is Status.FAIL


# ---------------------------------------------------------------- A-7 clock and network


def test_clock_skew_is_measured_from_the_date_header() -> None:
    server_now = 1_800_000_000.0
    date = email.utils.formatdate(server_now, usegmt=True)
    skew = clock_skew_s(date, server_now + 299.9, server_now + 300.1)
    assert skew == pytest.approx(299.5)  # Date is whole seconds: the middle of that second
    assert clock_skew_s(None, 0, 0) is None and clock_skew_s("not a date", 0, 0) is None


@pytest.mark.parametrize(("skew", "maskinporten", "kfr"), [
    (0.4, Status.OK, Status.OK),
    (-4.9, Status.OK, Status.OK),
    (7.0, Status.WARN, Status.WARN),
    (-10.0, Status.FAIL, Status.WARN),
    (300.0, Status.FAIL, Status.WARN),
    (None, Status.WARN, Status.WARN),
])
def test_clock_thresholds(skew: float | None, maskinporten: Status, kfr: Status) -> None:
    mp = Endpoint("Maskinporten", "https://test.maskinporten.no/", "x", "test.maskinporten.no", 443, True, None)
    kfr_ep = Endpoint("KFR", "https://preprod.api.bits.no/kar-ws/api/v1/", "x", "preprod.api.bits.no", 443, True, None)
    assert check_clock(mp, skew).status is maskinporten
    assert check_clock(kfr_ep, skew).status is kfr
    if maskinporten is Status.FAIL:
        assert "MP-130" in check_clock(mp, skew).message and "NTP" in (check_clock(mp, skew).advice or "")


def test_proxy_for_follows_https_proxy_and_no_proxy_and_masks_the_password(no_proxy_env: pytest.MonkeyPatch) -> None:
    assert proxy_for("https://test.maskinporten.no/") is None
    no_proxy_env.setenv("HTTPS_PROXY", "http://kari:hemmelig@proxy.bank.example:3128")
    no_proxy_env.setenv("NO_PROXY", ".intern.example")
    assert proxy_for("https://test.maskinporten.no/") == "http://kari:***@proxy.bank.example:3128"
    assert proxy_for("https://kjerne.intern.example/") is None
    assert proxy_for("http://127.0.0.1:8080/kar-ws/api/v1") is None  # the sandbox is never proxied


def _network(env: BankEnvironment, role: str) -> dict[str, CheckLine]:
    with Probe(env, None, timeout=TIMEOUT) as probe:
        ep = probe.maskinporten_ep if role == "Maskinporten" else probe.kfr_ep
        return by_check(check_endpoint(probe, ep))


def test_network_lines_are_green_against_the_sandbox(sandbox: RunningSandbox, bank: BankCredentials,
                                                     no_proxy_env: pytest.MonkeyPatch) -> None:
    lines = _network(env_for(sandbox, bank), "KFR")
    assert set(lines) == {"network.dns.kfr", "network.tcp.kfr", "network.tls.kfr", "clock.kfr"}
    assert all(line.status is Status.OK for line in lines.values())
    assert "uten proxy" in lines["network.dns.kfr"].message


def test_a_dead_proxy_is_the_tcp_line_and_names_the_proxy(sandbox: RunningSandbox, bank: BankCredentials,
                                                          no_proxy_env: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    no_proxy_env.setenv("HTTPS_PROXY", proxy)
    env = env_for(sandbox, bank, env_name="test", maskinporten_issuer="https://mp.example.invalid/",
                  kfr_base_url="https://kfr.example.invalid/kar-ws/api/v1")
    lines = _network(env, "Maskinporten")
    assert lines["network.dns.maskinporten"].status is Status.OK  # the proxy is an IP address
    tcp = lines["network.tcp.maskinporten"]
    assert tcp.status is Status.FAIL and proxy in tcp.message and "connection refused" in tcp.message
    assert "HTTPS_PROXY" in (tcp.advice or "")
    assert "network.tls.maskinporten" not in lines  # not tried over a dead proxy


def test_an_unresolvable_host_is_the_dns_line(sandbox: RunningSandbox, bank: BankCredentials,
                                              no_proxy_env: pytest.MonkeyPatch) -> None:
    env = env_for(sandbox, bank, kfr_base_url="https://kfr.example.invalid/kar-ws/api/v1")
    lines = _network(env, "KFR")
    assert list(lines) == ["network.dns.kfr"]
    assert lines["network.dns.kfr"].status is Status.FAIL
    assert "kfr.example.invalid" in lines["network.dns.kfr"].message


def test_a_closed_port_is_the_tcp_line(sandbox: RunningSandbox, bank: BankCredentials,
                                       no_proxy_env: pytest.MonkeyPatch) -> None:
    port = closed_port()
    env = env_for(sandbox, bank, kfr_base_url=f"http://127.0.0.1:{port}/kar-ws/api/v1")
    tcp = _network(env, "KFR")["network.tcp.kfr"]
    assert tcp.status is Status.FAIL and f"127.0.0.1:{port}" in tcp.message
    assert "connection refused" in tcp.message


def test_tls_is_verified_with_the_ca_bundle_in_use(sandbox: RunningSandbox, bank: BankCredentials,
                                                   tmp_path: Path, no_proxy_env: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    with web_server(b'{"banks": []}', "application/json", tls=(cert, key)) as url:
        env = env_for(sandbox, bank, kfr_base_url=url + "/kar-ws/api/v1")
        untrusted = _network(env, "KFR")["network.tls.kfr"]
        assert untrusted.status is Status.FAIL and "kunne ikke verifiseres" in untrusted.message
        assert "--ca-bundle" in (untrusted.advice or "")
        trusted = _network(env_for(sandbox, bank, kfr_base_url=url + "/kar-ws/api/v1", ca_bundle=cert), "KFR")
        assert trusted["network.tls.kfr"].status is Status.OK
        assert str(cert) in trusted["network.tls.kfr"].message


# ---------------------------------------------------------------- B-1/A-4 Maskinporten and C-1 KFR


def _token_lines(env: BankEnvironment) -> tuple[dict[str, CheckLine], str | None, CheckLine, CheckLine]:
    credentials = Credentials.load(env.cert_path, password=env.cert_password, key_path=env.key_path)
    with Probe(env, credentials, timeout=TIMEOUT) as probe:
        lines, token = check_token(probe)
        alt = check_alt_scope(probe)
        kfr = check_kfr_lookup(probe, token)
    return by_check(lines), token, alt, kfr


def test_token_claims_and_kfr_lookup_are_green_against_the_sandbox(sandbox: RunningSandbox,
                                                                   bank: BankCredentials) -> None:
    lines, token, alt, kfr = _token_lines(env_for(sandbox, bank))
    assert set(lines) == {"maskinporten.token", "maskinporten.scope", "maskinporten.consumer",
                          "maskinporten.lifetime"}
    assert all(line.status is Status.OK for line in lines.values())
    assert f"0192:{bank.orgnr}" in lines["maskinporten.consumer"].message
    # The sandbox rounds a token's exp up, so it lives the 120 s it states, or a second more.
    assert lines["maskinporten.lifetime"].details["lifetime_s"] in (120, 121)
    assert token and all(token not in line.text() for line in lines.values())
    assert alt.status is Status.OK and BANK_ALT_SCOPE in alt.message
    assert kfr.status is Status.OK and kfr.details["status"] == 200
    assert sandbox.relationship_count(bank.orgnr) == 0  # nothing was written


def test_a_token_without_the_write_scope_is_red(sandbox: RunningSandbox, bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(misbehave=frozenset({"token_wrong_scope"})))
    lines, _, _, kfr = _token_lines(env_for(sandbox, bank))
    scope = lines["maskinporten.scope"]
    assert scope.status is Status.FAIL and "bits:kundeforhold.write" in scope.message
    assert "Samarbeidsportalen" in (scope.advice or "")
    assert kfr.status is Status.FAIL and "403" in kfr.message


def test_a_client_without_the_write_scope_gets_mp_200_explained(sandbox: RunningSandbox, tmp_path: Path) -> None:
    creds = sandbox.register_agency(synthetic_orgnr(), "Bank uten skrivescope AS", out_dir=tmp_path / "c",
                                    scopes=(BANK_ALT_SCOPE,))
    lines, token, _, kfr = _token_lines(env_for(sandbox, creds, alt_scope=None))
    line = lines["maskinporten.token"]
    assert token is None and line.status is Status.FAIL
    assert "MP-200" in line.message
    assert "bits:kundeforhold.write" in (line.advice or "") and "Samarbeidsportalen" in (line.advice or "")
    assert kfr.status is Status.WARN and "uten token" in kfr.message  # reachable, not tried with a token


def test_the_alternative_scope_line(sandbox: RunningSandbox, bank: BankCredentials) -> None:
    # Refused or not given, the row falls back to an agency lookup: a warning, not red.
    _, _, missing, _ = _token_lines(env_for(sandbox, bank, alt_scope="bits:finnes.ikke"))
    assert missing.status is Status.WARN and "MP-200" in missing.message
    assert "etatsoppslag" in missing.message
    # The fix for this row is a scope the client already has, not asking Bits (issue 11.6).
    assert "allerede har" in (missing.advice or "") and "Be Bits" not in (missing.advice or "")
    _, _, unset, _ = _token_lines(env_for(sandbox, bank, alt_scope=None))
    assert unset.status is Status.OK and "etatsoppslag" in unset.message
    _, _, write, _ = _token_lines(env_for(sandbox, bank, alt_scope="bits:kundeforhold.write"))
    assert write.status is Status.FAIL and "KFR-18" in write.message


def test_an_answer_that_is_not_kfr_is_red(sandbox: RunningSandbox, bank: BankCredentials) -> None:
    with web_server(b"<html><body>Access denied by proxy</body></html>", "text/html") as url:
        _, _, _, kfr = _token_lines(env_for(sandbox, bank, kfr_base_url=url + "/kar-ws/api/v1"))
    assert kfr.status is Status.FAIL and "ikke som KFR" in kfr.message


def test_a_kfr_5xx_is_a_warning_not_unreachable(sandbox: RunningSandbox, bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(error_rate_500=1.0))
    _, _, _, kfr = _token_lines(env_for(sandbox, bank))
    assert kfr.status is Status.WARN and "500" in kfr.message


# ---------------------------------------------------------------- C-2 the sheet


def test_the_bundled_sheet_is_read_and_fully_bound() -> None:
    lines = by_check(check_sheet(SHEET, ROOT / "testcases"))
    assert lines["sheet.read"].status is Status.OK
    assert lines["sheet.read"].details["sha256"] in lines["sheet.read"].message
    assert lines["sheet.binding"].status is Status.OK


def test_unbound_rows_are_listed(tmp_path: Path) -> None:
    sheet = build_layout(tmp_path / "unknown.xlsx", LAYOUTS["unknown_row"])
    lines = by_check(check_sheet(sheet, ROOT / "testcases"))
    binding = lines["sheet.binding"]
    assert binding.status is Status.WARN and len(binding.details["unbound"]) == 1
    assert binding.details["unbound"][0] in binding.message and "--bindings" in (binding.advice or "")


def test_an_unreadable_sheet_is_red(tmp_path: Path) -> None:
    bad = tmp_path / "ark.xlsx"
    bad.write_bytes(b"not a workbook")
    [line] = check_sheet(bad, ROOT / "testcases")
    assert (line.check, line.status) == ("sheet.read", Status.FAIL)


# ---------------------------------------------------------------- the runner's start


def test_start_up_check_passes_a_healthy_or_merely_flaky_environment(
    sandbox: RunningSandbox, bank: BankCredentials,
) -> None:
    start_up_check(env_for(sandbox, bank))
    # An alternative scope the client lacks concerns one row (KFR-18), not the run.
    start_up_check(env_for(sandbox, bank, alt_scope="bits:finnes.ikke"))
    for faults in (Faults(error_rate_500=1.0), Faults(drop_rate=1.0),
                   Faults(misbehave=frozenset({"token_wrong_scope"}))):
        sandbox.set_faults(faults)
        start_up_check(env_for(sandbox, bank))  # the rows report these; the run must go on


class _RefusingTransport(httpx.BaseTransport):
    """Raises what httpcore raises for a refused connection, unmapped (as after pytester
    re-imported httpcore)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise httpcore.ConnectError(str(exc)) from exc


def test_httpcores_own_exceptions_reach_the_clients_as_httpx_ones() -> None:
    from conformance.preflight.probe import _ObservingTransport

    log: list[Any] = []
    with httpx.Client(transport=_ObservingTransport(_RefusingTransport(), log)) as http, \
            pytest.raises(httpx.ConnectError) as raised:
        http.get("http://127.0.0.1:9/")
    ep = Endpoint.for_url("KFR", "http://127.0.0.1:9/", "http://127.0.0.1:9/")
    from conformance.preflight import describe_network_error

    problem = describe_network_error(log[-1].error, ep, "standard rotsertifikater")
    assert raised.value is log[-1].error
    assert problem.layer == "tcp" and "connection refused" in problem.text and not problem.reached


def test_start_up_check_stops_on_a_refused_token_and_a_wrong_clock(sandbox: RunningSandbox,
                                                                   bank: BankCredentials) -> None:
    with pytest.raises(PreflightFailed, match="MP-100"):
        start_up_check(env_for(sandbox, bank, client_id="no-such-client"))
    sandbox.set_faults(Faults(clock_offset_s=-300))
    with pytest.raises(PreflightFailed) as stopped:
        start_up_check(env_for(sandbox, bank))
    message = stopped.value.diagnostics()
    assert "foran Maskinporten" in message and "127.0.0.1" in message and "uten proxy" in message
    assert "\n" not in message


def test_start_up_check_leaves_certificate_problems_to_the_runner(sandbox: RunningSandbox, bank: BankCredentials,
                                                                  other_bank: BankCredentials,
                                                                  tmp_path: Path) -> None:
    broken = tmp_path / "broken.p12"
    broken.write_bytes(b"garbage")
    start_up_check(env_for(sandbox, bank, cert_path=broken))  # the runner's own check reports it
    start_up_check(env_for(sandbox, bank, cert_path=other_bank.p12))


def _fail_fast_run(pytester: pytest.Pytester, reports: Path, *args: str) -> tuple[Any, float]:
    started = time.perf_counter()
    result = pytester.runpytest_inprocess(
        f"--reports-dir={reports}", f"--sheet={SHEET}", "-p", "no:cacheprovider", *args,
    )
    return result, time.perf_counter() - started


def _assert_one_message_fast(result: Any, elapsed: float, reports: Path, *needles: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    assert not reports.exists(), "no results folder and no pack for a run that never reached KFR"
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_runner_stops_at_once_on_a_dead_proxy(pytester: pytest.Pytester, bank: BankCredentials,
                                              tmp_path: Path, no_proxy_env: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    no_proxy_env.setenv("HTTPS_PROXY", proxy)
    reports = tmp_path / "r"
    result, elapsed = _fail_fast_run(
        pytester, reports, f"--bank={bank.orgnr}", "--kfr-env=test",
        "--kfr-base-url=https://kfr.example.invalid/kar-ws/api/v1",
        "--maskinporten-url=https://mp.example.invalid/", f"--client-id={bank.client_id}",
        f"--cert={bank.p12}",
    )
    _assert_one_message_fast(result, elapsed, reports, "mp.example.invalid", proxy, "kan ikke nås")


@pytest.mark.parametrize("where", ["closed-port", "unresolvable"])
def test_runner_stops_at_once_on_an_unreachable_host(pytester: pytest.Pytester, sandbox: RunningSandbox,
                                                     bank: BankCredentials, tmp_path: Path,
                                                     no_proxy_env: pytest.MonkeyPatch, where: str) -> None:
    kfr = (f"http://127.0.0.1:{closed_port()}/kar-ws/api/v1" if where == "closed-port"
           else "https://kfr.example.invalid/kar-ws/api/v1")
    host = kfr.split("/")[2]
    reports = tmp_path / "r"
    result, elapsed = _fail_fast_run(
        pytester, reports, f"--bank={bank.orgnr}", f"--kfr-base-url={kfr}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--sandbox-data-dir={sandbox.data_dir}",
    )
    _assert_one_message_fast(result, elapsed, reports, "KFR", host, "uten proxy")


def test_runner_stops_at_once_on_a_five_minute_clock_skew(pytester: pytest.Pytester, sandbox: RunningSandbox,
                                                          bank: BankCredentials, tmp_path: Path) -> None:
    sandbox.set_faults(Faults(clock_offset_s=300))
    reports = tmp_path / "r"
    result, elapsed = _fail_fast_run(
        pytester, reports, f"--bank={bank.orgnr}", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--sandbox-data-dir={sandbox.data_dir}",
    )
    _assert_one_message_fast(result, elapsed, reports, "bak Maskinporten", "127.0.0.1", "NTP")


def test_runner_still_runs_when_the_environment_is_reachable(pytester: pytest.Pytester, sandbox: RunningSandbox,
                                                             bank: BankCredentials, tmp_path: Path) -> None:
    reports = tmp_path / "r"
    result, _ = _fail_fast_run(
        pytester, reports, f"--bank={bank.orgnr}", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--sandbox-data-dir={sandbox.data_dir}",
        "-k", "KFR-02",
    )
    result.assert_outcomes(passed=1)
    assert len(list((reports / bank.orgnr).iterdir())) == 1
