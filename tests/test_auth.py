"""Credentials and the Maskinporten client.

Loading certificates needs no server; the token flow runs against the sandbox's
Maskinporten over loopback HTTP (real JWT validation), see the second half.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conformance.auth import AccessToken, Credentials, MaskinportenClient, orgnr_from_certificate
from conformance.errors import CredentialError, ProductionTargetError

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
