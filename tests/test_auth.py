"""Credentials and the Maskinporten client.

Loading certificates needs no server; the token flow runs against the sandbox's
Maskinporten over loopback HTTP (real JWT validation), see the second half.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conformance.auth import (
    AccessToken,
    Credentials,
    MaskinportenAuth,
    MaskinportenClient,
    orgnr_from_certificate,
)
from conformance.errors import (
    AuthError,
    CredentialError,
    ProductionTargetError,
    TargetEnvironmentError,
)
from conformance.evidence import EvidenceRecorder, Journal, RecordingTransport
from conformance.ids import synthetic_fodselsnummer, synthetic_orgnr
from conformance.kfr import KfrClient, make_http_client
from conformance.sandbox import Faults, TestCA

ORGNR = "910000004"
PASSWORD = "Test-Passord-123"


def _certificate(key, attrs: list[x509.NameAttribute]) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(attrs)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def seid2_cert(rsa_key) -> x509.Certificate:
    return _certificate(
        rsa_key,
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Testbank AS"),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{ORGNR}"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Testbank AS autentisering"),
        ],
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key, password: str | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


# ---------------------------------------------------------------- loading


def test_loads_pkcs12_with_password(tmp_path: Path, rsa_key, seid2_cert) -> None:
    p12 = tmp_path / "bank.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"bank",
            rsa_key,
            seid2_cert,
            None,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    creds = Credentials.load(p12, password=PASSWORD)
    assert creds.certificate == seid2_cert
    assert creds.orgnr == ORGNR
    assert creds.subject_name == "Testbank AS"
    with pytest.raises(CredentialError, match="feil passord"):
        Credentials.load(p12, password="wrong")
    with pytest.raises(CredentialError, match="passord"):
        Credentials.load(p12)


def test_loads_pem_with_key_in_same_file_or_separate(tmp_path: Path, rsa_key, seid2_cert) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(_pem_cert(seid2_cert) + _pem_key(rsa_key))
    assert Credentials.load(combined).orgnr == ORGNR

    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(_pem_cert(seid2_cert))
    key_file.write_bytes(_pem_key(rsa_key, PASSWORD))
    creds = Credentials.load(cert_file, key_path=key_file, password=PASSWORD)
    assert creds.certificate == seid2_cert
    with pytest.raises(CredentialError, match="passordbeskyttet"):
        Credentials.load(cert_file, key_path=key_file)
    with pytest.raises(CredentialError, match="feil passord"):
        Credentials.load(cert_file, key_path=key_file, password="wrong")
    with pytest.raises(CredentialError, match="ingen privat nøkkel"):
        Credentials.load(cert_file)


def test_chain_certificates_are_kept_apart_from_the_leaf(
    tmp_path: Path, rsa_key, seid2_cert
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate(other_key, [x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    pem = tmp_path / "chain.pem"
    pem.write_bytes(_pem_cert(ca) + _pem_cert(seid2_cert) + _pem_key(rsa_key))
    creds = Credentials.load(pem)
    assert creds.certificate == seid2_cert
    assert creds.chain == (ca,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a certificate at all", "verken en PKCS#12-fil"),
        (b"\x30\x82\x01\x00garbage-der", "feil passord, eller filen er skadet"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "kan ikke leses"),
    ],
)
def test_garbage_gives_a_plain_message(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "cert.p12"
    path.write_bytes(content)
    with pytest.raises(CredentialError, match=message):
        Credentials.load(path, password="x")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="finnes ikke"):
        Credentials.load(tmp_path / "nope.p12")
    with pytest.raises(CredentialError, match="mappe"):
        Credentials.load(tmp_path)


def test_pkcs12_without_key_is_refused(tmp_path: Path, seid2_cert) -> None:
    p12 = tmp_path / "nokey.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"x", None, seid2_cert, None, serialization.NoEncryption()
        )
    )
    with pytest.raises(CredentialError, match="privat"):
        Credentials.load(p12)


def test_key_not_matching_the_certificate_is_refused(tmp_path: Path, seid2_cert) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "mismatch.pem"
    pem.write_bytes(_pem_cert(seid2_cert) + _pem_key(stranger))
    with pytest.raises(CredentialError, match="hører ikke til sertifikatet"):
        Credentials.load(pem)


def test_ec_key_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(key, [x509.NameAttribute(NameOID.COMMON_NAME, "EC bank")])
    pem = tmp_path / "ec.pem"
    pem.write_bytes(_pem_cert(cert) + _pem_key(key))
    with pytest.raises(CredentialError, match="RSA"):
        Credentials.load(pem)


@pytest.mark.parametrize(
    ("attrs", "orgnr"),
    [
        ([x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, "NTRNO-910000004")], "910000004"),
        ([x509.NameAttribute(NameOID.SERIAL_NUMBER, "910000004")], "910000004"),
        ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Testbank AS-910000004")], "910000004"),
        # SEID 2 wins over an older serialNumber when both are present.
        (
            [
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "999999999"),
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, "NTRNO-910000004"),
            ],
            "910000004",
        ),
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, "VATNO-910000004"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Somebody"),
            ],
            None,
        ),
    ],
)
def test_orgnr_from_certificate(rsa_key, attrs, orgnr) -> None:
    assert orgnr_from_certificate(_certificate(rsa_key, attrs)) == orgnr


def test_repr_never_shows_key_material(rsa_key, seid2_cert) -> None:
    creds = Credentials(certificate=seid2_cert, private_key=rsa_key)
    text = repr(creds) + str(creds)
    assert "Testbank AS" in text and ORGNR in text
    key_b64 = _pem_key(rsa_key).decode().splitlines()[1]
    assert key_b64 not in text and "private_numbers" not in text
    token = AccessToken(value="eyJsecret.token.value", expires_at=1.0, scope="s")
    assert "eyJsecret" not in repr(token) and "eyJsecret" not in str(token)


# ---------------------------------------------------------------- the assertion


def _client(creds: Credentials, **kwargs) -> MaskinportenClient:
    kwargs.setdefault("issuer", "https://test.maskinporten.no")
    return MaskinportenClient(
        client_id="my-client", credentials=creds, http=httpx.Client(), **kwargs
    )


def test_assertion_has_exactly_the_documented_header_and_claims(rsa_key, seid2_cert) -> None:
    creds = Credentials(certificate=seid2_cert, private_key=rsa_key)
    client = _client(creds, clock=lambda: 1_700_000_000.0)
    assertion = client.build_assertion(["bits:kundeforhold.write", "extra:scope"])
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": "RS256", "x5c": [header["x5c"][0]]}  # no typ, no kid
    assert base64.b64decode(header["x5c"][0]) == seid2_cert.public_bytes(serialization.Encoding.DER)
    claims = jwt.decode(
        assertion,
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience="https://test.maskinporten.no/",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert set(claims) == {"aud", "iss", "scope", "iat", "exp", "jti"}
    assert claims["aud"] == "https://test.maskinporten.no/"  # trailing slash added
    assert claims["iss"] == "my-client"
    assert claims["scope"] == "bits:kundeforhold.write extra:scope"
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_060)
    assert (
        claims["jti"]
        != jwt.decode(client.build_assertion(["s"]), options={"verify_signature": False})["jti"]
    )


def test_assertion_with_kid_has_no_x5c(rsa_key, seid2_cert) -> None:
    client = _client(Credentials(certificate=seid2_cert, private_key=rsa_key), kid="bank-key-1")
    assert jwt.get_unverified_header(client.build_assertion(["s"])) == {
        "alg": "RS256",
        "kid": "bank-key-1",
    }


@pytest.mark.parametrize(
    "issuer",
    ["https://maskinporten.no/", "https://MASKINPORTEN.NO./", "https://ver2.maskinporten.no/"],
)
def test_production_maskinporten_is_refused(rsa_key, seid2_cert, issuer) -> None:
    with pytest.raises(ProductionTargetError):
        _client(Credentials(certificate=seid2_cert, private_key=rsa_key), issuer=issuer)


# ---------------------------------------------------------------- against the sandbox

WRITE = "bits:kundeforhold.write"


@pytest.fixture
def recorder(tmp_path: Path):
    journal = Journal(tmp_path / "journal.jsonl")
    yield EvidenceRecorder(journal)
    journal.close()


@pytest.fixture
def http(recorder):
    with make_http_client(timeout_s=10, wrap=lambda t: RecordingTransport(t, recorder)) as client:
        yield client


def _bank_creds(bank) -> Credentials:
    return Credentials.load(Path(bank.p12), password=bank.password)


def _mp(sandbox, bank, http, **kwargs) -> MaskinportenClient:
    kwargs.setdefault("client_id", bank.client_id)
    kwargs.setdefault("credentials", _bank_creds(bank))
    kwargs.setdefault("issuer", sandbox.maskinporten_issuer)
    return MaskinportenClient(http=http, **kwargs)


def _operations(recorder, case=None) -> list[tuple[str, int | None]]:
    return [
        (e["operation"], e["response"]["status"] if e["response"] else None)
        for e in recorder.exchanges(case)
    ]


@pytest.mark.parametrize("use_kid", [False, True], ids=["x5c", "kid"])
def test_token_flow_against_the_sandbox(sandbox, bank, http, use_kid) -> None:
    client = _mp(sandbox, bank, http, kid=bank.kid if use_kid else None)
    before = time.time()
    token = client.fetch_token([WRITE])
    assert token.scope.split() == [WRITE]
    assert before + 60 < token.expires_at <= time.time() + 120
    claims = jwt.decode(token.value, options={"verify_signature": False})
    assert claims["consumer"]["ID"] == f"0192:{bank.orgnr}"
    assert claims["client_id"] == bank.client_id


def _refusal(client: MaskinportenClient, scopes=(WRITE,)) -> AuthError:
    with pytest.raises(AuthError) as info:
        client.fetch_token(list(scopes))
    return info.value


def test_wrong_aud_is_mp_110_with_advice(sandbox, bank, http) -> None:
    # A common mistake: the token endpoint as issuer/audience.
    error = _refusal(
        _mp(
            sandbox,
            bank,
            http,
            issuer=sandbox.token_endpoint,
            token_endpoint=sandbox.token_endpoint,
        )
    )
    assert error.mp_code == "MP-110" and error.error == "invalid_grant"
    assert "avsluttende skråstrek" in error.diagnostics()


def test_certificate_of_another_organisation_is_mp_122(sandbox, bank, other_bank, http) -> None:
    error = _refusal(_mp(sandbox, bank, http, credentials=_bank_creds(other_bank)))
    assert error.mp_code == "MP-122"
    assert "Organisasjonsnummeret i sertifikatet" in error.diagnostics()


def test_scope_not_granted_is_mp_200(sandbox, bank, http) -> None:
    error = _refusal(_mp(sandbox, bank, http), scopes=["bits:kundeforhold"])
    assert (error.mp_code, error.error) == ("MP-200", "invalid_scope")
    assert "scopet" in error.diagnostics()


def test_clock_off_is_mp_130_and_names_the_skew(sandbox, bank, http) -> None:
    # The Date header has whole seconds and uvicorn refreshes it once a second: allow ±2 s.
    error = _refusal(_mp(sandbox, bank, http, clock=lambda: time.time() - 60))
    assert error.mp_code == "MP-130"
    assert re.search(r"klokke går (5[7-9]|6[0-2]) s bak", error.diagnostics()), error.diagnostics()


def test_unknown_client_is_mp_100(sandbox, bank, http) -> None:
    error = _refusal(_mp(sandbox, bank, http, client_id="no-such-client"))
    assert error.mp_code == "MP-100" and "klient-ID" in error.diagnostics()


def test_certificate_from_another_ca_is_mp_120(sandbox, bank, http, tmp_path) -> None:
    foreign = TestCA(tmp_path / "foreign-ca").issue(bank.orgnr, "Testbank AS")
    creds = Credentials(certificate=foreign.cert, private_key=foreign.key)
    error = _refusal(_mp(sandbox, bank, http, credentials=creds))
    assert error.mp_code == "MP-120" and "testsertifikat" in error.diagnostics()


def test_expired_certificate_is_mp_121(sandbox, bank, http) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = sandbox.ca.issue(
        bank.orgnr,
        "Testbank AS",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    creds = Credentials(certificate=expired.cert, private_key=expired.key)
    error = _refusal(_mp(sandbox, bank, http, credentials=creds))
    assert error.mp_code == "MP-121" and "utløpt" in error.diagnostics()


def test_signature_by_another_key_is_mp_124(sandbox, bank, other_bank, http) -> None:
    # kid names the bank's registered certificate, but another key signs.
    error = _refusal(_mp(sandbox, bank, http, kid=bank.kid, credentials=_bank_creds(other_bank)))
    assert error.mp_code == "MP-124"


def test_replayed_assertion_is_mp_012(sandbox, bank, http) -> None:
    client = _mp(sandbox, bank, http)
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": client.build_assertion([WRITE]),
    }
    assert http.post(client.token_endpoint, data=form).status_code == 200
    error = client.error_from_response(http.post(client.token_endpoint, data=form))
    assert error.mp_code == "MP-012" and "jti" in error.diagnostics()


def test_unreachable_maskinporten_is_an_environment_error_after_retries(bank, http) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = MaskinportenClient(
        issuer=f"http://127.0.0.1:{port}/maskinporten/",
        client_id=bank.client_id,
        credentials=_bank_creds(bank),
        http=http,
        backoff_s=0.01,
    )
    with pytest.raises(TargetEnvironmentError, match="4 forsøk"):
        client.fetch_token([WRITE])


def test_token_is_cached_per_scope_set_and_invalidated(sandbox, bank, http, recorder) -> None:
    client = _mp(sandbox, bank, http)
    first = client.token([WRITE])
    assert client.token([WRITE]) is first
    both = client.token([WRITE, bank.alt_scope])
    assert client.token([bank.alt_scope, WRITE]) is both  # order does not matter
    assert both.value != first.value
    client.invalidate([WRITE])
    assert client.token([WRITE]).value != first.value
    assert client.token([WRITE, bank.alt_scope]) is both
    assert [op for op, _ in _operations(recorder)] == ["token"] * 3


def _sleep_past_expiry(token: str) -> None:
    """Wait until the sandbox considers the token expired (its exp claim), and no longer."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)


def test_short_lived_token_is_renewed_before_it_expires(sandbox, bank, http, recorder) -> None:
    # The sandbox's exp is whole seconds: a 2 s token is valid for 1-2 s, so renew 1.1 s early.
    sandbox.set_faults(Faults(token_lifetime_s=2))
    client = _mp(sandbox, bank, http, renew_margin_s=1.1)
    kfr = KfrClient(
        sandbox.kfr_base_url, bank.orgnr, http=http, auth=MaskinportenAuth(client, [WRITE])
    )
    assert kfr.add(synthetic_fodselsnummer()).status == 201
    _sleep_past_expiry(client.token([WRITE]).value)
    assert kfr.add(synthetic_fodselsnummer()).status == 201
    # A new token before the second add: no 401 on the way.
    assert _operations(recorder) == [("token", 200), ("add", 201), ("token", 200), ("add", 201)]


def test_token_expired_mid_run_is_renewed_after_a_401(sandbox, bank, http, recorder) -> None:
    sandbox.set_faults(Faults(token_lifetime_s=2))
    # A negative margin keeps using the token past its expiry, as a skewed clock would.
    client = _mp(sandbox, bank, http, renew_margin_s=-60)
    kfr = KfrClient(
        sandbox.kfr_base_url, bank.orgnr, http=http, auth=MaskinportenAuth(client, [WRITE])
    )
    assert kfr.add(synthetic_fodselsnummer()).status == 201
    _sleep_past_expiry(client.token([WRITE]).value)
    customer = synthetic_fodselsnummer()
    assert kfr.add(customer).status == 201
    assert _operations(recorder) == [
        ("token", 200),
        ("add", 201),
        ("add", 401),
        ("token", 200),
        ("add", 201),
    ]
    assert kfr.lookup(customer).status == 200


def test_no_token_assertion_key_or_password_in_the_evidence(sandbox, tmp_path) -> None:
    bank = sandbox.register_bank(
        synthetic_orgnr(), out_dir=tmp_path / "b", password="Hemmelig-P12-passord"
    )
    journal_path = tmp_path / "run" / "journal.jsonl"
    journal = Journal(journal_path)
    recorder = EvidenceRecorder(journal, secrets=[bank.password])
    with make_http_client(wrap=lambda t: RecordingTransport(t, recorder)) as http:
        client = _mp(sandbox, bank, http)
        kfr = KfrClient(
            sandbox.kfr_base_url, bank.orgnr, http=http, auth=MaskinportenAuth(client, [WRITE])
        )
        with recorder.case("KFR-02"):
            customer = synthetic_fodselsnummer()
            assert kfr.add(customer).status == 201
            assert kfr.lookup(customer).status == 200
        token = client.token([WRITE]).value
    journal.close()
    recorder.write_case_file("KFR-02", tmp_path / "run" / "evidence" / "KFR-02.json")
    key_lines = [
        line for line in Path(bank.key_pem).read_text().splitlines() if "-----" not in line
    ]
    for path in (journal_path, tmp_path / "run" / "evidence" / "KFR-02.json"):
        text = path.read_text()
        assert token not in text
        assert "eyJ" not in text  # no JWT at all: neither the token nor the assertion
        assert bank.password not in text
        assert not any(line in text for line in key_lines)
        assert "[REDACTED]" in text
    ops = [e["operation"] for e in Journal.read(journal_path)]
    assert ops == ["token", "add", "lookup"]


class _BrokenMaskinporten(BaseHTTPRequestHandler):
    """Answers 503 on /fail/token and a 200 without a token on /garbled/token."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        status, body = (503, b"busy") if self.path.startswith("/fail") else (200, b"<html>")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def broken_maskinporten():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenMaskinporten)
    server.paths = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_maskinporten_5xx_is_retried_then_an_environment_error(
    broken_maskinporten, rsa_key, seid2_cert
) -> None:
    base = f"http://127.0.0.1:{broken_maskinporten.server_address[1]}"
    creds = Credentials(certificate=seid2_cert, private_key=rsa_key)
    with httpx.Client() as http:
        client = MaskinportenClient(
            issuer=f"{base}/fail/",
            client_id="c",
            credentials=creds,
            http=http,
            retries=2,
            backoff_s=0.01,
        )
        with pytest.raises(TargetEnvironmentError, match="3 forsøk: HTTP 503"):
            client.fetch_token([WRITE])
        assert broken_maskinporten.paths == ["/fail/token"] * 3
        garbled = MaskinportenClient(
            issuer=f"{base}/garbled/", client_id="c", credentials=creds, http=http
        )
        with pytest.raises(TargetEnvironmentError, match="uten gyldig token"):
            garbled.fetch_token([WRITE])
