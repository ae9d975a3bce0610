"""The sandbox's test certificate authority and its enterprise test certificates.

The certificates are shaped like Norwegian virksomhetssertifikater (SEID 2): the orgnr is in
``organizationIdentifier=NTRNO-<orgnr>`` and, as in SEID 1, in ``serialNumber=<orgnr>``;
key usage covers authentication (digitalSignature) and signing (nonRepudiation). The CA
lives in the sandbox's data folder (``ca.pem``: certificate and key; ``ca-cert.pem``: the
certificate alone, for verifiers) and is created on first use, race-safe across processes.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.errors import SandboxError
from conformance.ids import require_orgnr
from conformance.sandbox.files import create_once, write_atomic

CA_BUNDLE_FILE = "ca.pem"
CA_CERT_FILE = "ca-cert.pem"
CERT_VALIDITY = dt.timedelta(days=730)  # about 2 years, like Buypass/Commfides
CA_VALIDITY = dt.timedelta(days=3650)
_ORGNR_IN_O = re.compile(r"-(\d{9})$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _make_ca_bundle() -> bytes:
    key = _new_key(2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kfr-conformance sandkasse (ikke ekte)"),
            # A random suffix tells two sandbox CAs apart in a verifier's messages.
            x509.NameAttribute(NameOID.COMMON_NAME, f"KFR sandbox test CA {secrets.token_hex(4)}"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem


def orgnr_from_certificate(cert: x509.Certificate) -> str | None:
    """The organisation number an enterprise certificate names, as validators read it:
    ``organizationIdentifier=NTRNO-<orgnr>`` (SEID 2), ``serialNumber=<orgnr>`` (SEID 1),
    or ``O=<name>-<orgnr>``."""
    subject = cert.subject
    for attr in subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attr.value)
        if value.startswith("NTRNO-") and value[6:].isdigit() and len(value) == 15:
            return value[6:]
    for attr in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attr.value)
        if len(value) == 9 and value.isdigit():
            return value
    for attr in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        match = _ORGNR_IN_O.search(str(attr.value))
        if match:
            return match.group(1)
    return None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, as issued by the test CA."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: str | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def pkcs12(
        self, password: str | None = None, *, friendly_name: str = "virksomhetssertifikat"
    ) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            friendly_name.encode(), self.key, self.cert, [self.ca_cert], encryption
        )


class TestCA:
    """The sandbox CA in ``data_dir``: created on first use, shared by every process using it."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        bundle = create_once(self.data_dir / CA_BUNDLE_FILE, _make_ca_bundle, private=True)
        try:
            self.cert = x509.load_pem_x509_certificate(bundle)
            key = serialization.load_pem_private_key(bundle, password=None)
        except ValueError as exc:
            raise SandboxError(
                f"Sandkassens CA i {self.data_dir / CA_BUNDLE_FILE} er ødelagt.",
                hint="Slett filen (og bankenes sertifikater) for å lage en ny CA.",
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SandboxError(
                f"Sandkassens CA-nøkkel i {self.data_dir / CA_BUNDLE_FILE} er ikke RSA."
            )
        self.key = key
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        cert_file = self.data_dir / CA_CERT_FILE
        try:
            current = cert_file.read_bytes()
        except OSError:
            current = b""
        if current != self.cert_pem:
            write_atomic(cert_file, self.cert_pem)

    @property
    def cert_path(self) -> Path:
        return self.data_dir / CA_CERT_FILE

    def issue(
        self,
        orgnr: str,
        name: str,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_size: int = 2048,
        include_orgnr: bool = True,
    ) -> IssuedCertificate:
        """An enterprise test certificate for ``orgnr``. Tests may make variants: expired
        (``not_after`` in the past), without the orgnr, or with a weaker key."""
        orgnr = require_orgnr(orgnr)
        if not name or not name.strip():
            raise SandboxError("Sertifikatet trenger et virksomhetsnavn.")
        now = _now()
        start = not_before or now - dt.timedelta(minutes=5)
        end = not_after or start + CERT_VALIDITY
        if end <= start:
            raise SandboxError("Sertifikatets sluttdato må være etter startdatoen.")
        key = _new_key(key_size)
        attrs = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name.strip()),
            x509.NameAttribute(NameOID.COMMON_NAME, name.strip()[:64]),
        ]
        if include_orgnr:
            attrs += [
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{orgnr}"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr),
            ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(cert=cert, key=key, ca_cert=self.cert)

    def issued_by_me(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` carries this CA's signature (name and signature both match)."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True
