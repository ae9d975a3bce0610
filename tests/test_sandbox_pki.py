"""The sandbox's test CA and the enterprise certificates it issues."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.errors import IdentifierError, SandboxError
from conformance.ids import synthetic_orgnr
from conformance.sandbox import TestCA, issue_bank_credentials
from conformance.sandbox.pki import orgnr_from_certificate


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def test_certificate_is_shaped_like_a_virksomhetssertifikat(ca: TestCA) -> None:
    orgnr = synthetic_orgnr()
    issued = ca.issue(orgnr, "Testbank Vest AS")
    cert = issued.cert
    subject = {attr.oid: attr.value for attr in cert.subject}
    assert subject == {
        NameOID.COUNTRY_NAME: "NO",
        NameOID.ORGANIZATION_NAME: "Testbank Vest AS",
        NameOID.COMMON_NAME: "Testbank Vest AS",
        NameOID.ORGANIZATION_IDENTIFIER: f"NTRNO-{orgnr}",
        NameOID.SERIAL_NUMBER: orgnr,
    }
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=700) < lifetime < dt.timedelta(days=740)
    assert ca.issued_by_me(cert) and orgnr_from_certificate(cert) == orgnr


def test_variants_for_tests_expired_and_without_orgnr(ca: TestCA, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = ca.issue(
        synthetic_orgnr(),
        "Gammel Bank AS",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    ).cert
    assert expired.not_valid_after_utc < now
    anonymous = ca.issue(synthetic_orgnr(), "Anonym AS", include_orgnr=False).cert
    assert orgnr_from_certificate(anonymous) is None
    assert not TestCA(tmp_path).issued_by_me(anonymous), "another CA did not issue it"
    with pytest.raises(IdentifierError):
        ca.issue("123456789", "Feil AS")
    with pytest.raises(SandboxError):
        ca.issue(
            synthetic_orgnr(), "Baklengs AS", not_before=now, not_after=now - dt.timedelta(days=1)
        )


def test_orgnr_is_also_read_from_seid1_serial_number_and_o_suffix(ca: TestCA) -> None:
    orgnr = synthetic_orgnr()
    key = ca.issue(orgnr, "X").key
    for attrs in (
        [x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr)],
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Bank AS-{orgnr}")],
    ):
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime.now(dt.UTC))
            .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(1))
            .sign(ca.key, hashes.SHA256())
        )
        assert orgnr_from_certificate(cert) == orgnr


def _make_ca(path: str) -> bytes:
    return TestCA(Path(path)).cert_pem


def test_ca_creation_is_race_safe_across_threads_and_processes(tmp_path: Path) -> None:
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(_make_ca(str(tmp_path / "t"))))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pems = list(pool.map(_make_ca, [str(tmp_path / "p")] * 2))
    assert len(set(pems)) == 1
    assert not [p for p in (tmp_path / "p").iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "p" / "ca-cert.pem").read_bytes() == pems[0]
    assert oct((tmp_path / "p" / "ca.pem").stat().st_mode & 0o777) == "0o600"


def test_a_corrupt_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(SandboxError, match="ødelagt"):
        TestCA(tmp_path)


def test_issue_bank_credentials_writes_pkcs12_and_pem_and_is_idempotent(tmp_path: Path) -> None:
    orgnr = synthetic_orgnr()
    first = issue_bank_credentials(tmp_path / "data", orgnr, "Idempotent Bank AS", tmp_path / "out")
    key, cert, extra = pkcs12.load_key_and_certificates(first.p12.read_bytes(), None)
    assert key is not None and cert is not None and orgnr_from_certificate(cert) == orgnr
    assert extra and extra[0].public_bytes(serialization.Encoding.PEM) == first.ca_pem.read_bytes()
    assert serialization.load_pem_private_key(first.key_pem.read_bytes(), None) is not None
    assert oct(first.key_pem.stat().st_mode & 0o777) == "0o600"
    again = issue_bank_credentials(tmp_path / "data", orgnr, "Idempotent Bank AS", tmp_path / "out")
    assert again.client_id == first.client_id
    assert x509.load_pem_x509_certificate(again.cert_pem.read_bytes()) == cert, (
        "a valid certificate is reused"
    )
    renamed = issue_bank_credentials(tmp_path / "data", orgnr, "Nytt Navn AS", tmp_path / "out")
    assert renamed.client_id == first.client_id
    assert x509.load_pem_x509_certificate(renamed.cert_pem.read_bytes()) != cert
    assert "password=" not in repr(renamed)


def test_password_protects_both_pkcs12_and_key(tmp_path: Path) -> None:
    creds = issue_bank_credentials(
        tmp_path / "data", synthetic_orgnr(), None, tmp_path / "out", password="hemmelig-123"
    )
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(creds.p12.read_bytes(), None)
    assert pkcs12.load_key_and_certificates(creds.p12.read_bytes(), b"hemmelig-123")[0] is not None
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(creds.key_pem.read_bytes(), None)
    assert "hemmelig-123" not in repr(creds)
    assert creds.name == f"Testbank {creds.orgnr} AS"
