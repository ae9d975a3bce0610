"""Issuing a bank's (or an agency's) sandbox credentials: certificate + Maskinporten client.

``issue_bank_credentials`` works without a running server: it opens the data folder's CA
and database directly. A running sandbox reads clients from the same database on every
token request, so a client registered here is usable at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.errors import SandboxError
from conformance.ids import require_orgnr
from conformance.sandbox.files import ensure_dir, write_atomic
from conformance.sandbox.pki import IssuedCertificate, TestCA, orgnr_from_certificate
from conformance.sandbox.store import Store, open_store

WRITE_SCOPE = "bits:kundeforhold.write"
AGENCY_SCOPE = "bits:kundeforhold"
ACCOUNT_SCOPE = "bits:kundeforhold.konto"
# A second scope every sandbox bank client has, so that "token without the write scope"
# (KFR-002) can be tested: real banks name such a scope with --alt-scope.
BANK_ALT_SCOPE = "bits:sandkasse.annet"
BANK_SCOPES = (WRITE_SCOPE, BANK_ALT_SCOPE)
REUSE_MARGIN = dt.timedelta(days=30)  # reuse a certificate only while it has this much left


@dataclass(frozen=True)
class BankCredentials:
    """Where a registered client's certificate, key and CA are, and its client id."""

    orgnr: str
    name: str
    client_id: str
    p12: Path
    cert_pem: Path
    key_pem: Path
    ca_pem: Path
    password: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = BANK_SCOPES
    alt_scope: str | None = BANK_ALT_SCOPE
    kid: str | None = None  # the key id registered for the client (kid-based assertions)

    def to_json(self) -> dict[str, str]:
        """What ``sandbox issue-cert`` prints (paths, no secrets)."""
        return {
            "orgnr": self.orgnr,
            "client_id": self.client_id,
            "p12": str(self.p12),
            "cert_pem": str(self.cert_pem),
            "key_pem": str(self.key_pem),
            "ca_pem": str(self.ca_pem),
        }


def certificate_kid(cert: x509.Certificate) -> str:
    """A key id for a client certificate: base64url SHA-256 of the DER (like ``x5t#S256``)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _reusable(
    ca: TestCA, cert_path: Path, key_path: Path, orgnr: str, name: str, password: str | None
) -> IssuedCertificate | None:
    """The certificate already in ``out_dir`` if it is ours, for this bank, and valid long enough."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        # Issued by this sandbox; checked below against its certificate, so OpenSSL's
        # ~50 ms RSA key check would add nothing.
        key = serialization.load_pem_private_key(
            key_path.read_bytes(),
            password=password.encode() if password else None,
            unsafe_skip_rsa_key_validation=True,
        )
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey) or not ca.issued_by_me(cert):
        return None
    if ca.revocation_of(cert) is not None:  # revoked (``sandbox revoke``): issue a new one
        return None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return None
    if orgnr_from_certificate(cert) != orgnr:
        return None
    names = [
        str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    ]
    if names != [name]:
        return None
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < REUSE_MARGIN:
        return None
    return IssuedCertificate(cert=cert, key=key, ca_cert=ca.cert)


def issue_credentials(
    ca: TestCA,
    store: Store,
    orgnr: str,
    name: str | None,
    out_dir: Path,
    *,
    kind: str = "bank",
    scopes: Sequence[str] = BANK_SCOPES,
    password: str | None = None,
    alt_scope: str | None = BANK_ALT_SCOPE,
) -> BankCredentials:
    """Issue (or reuse) a certificate in ``out_dir`` and register the client. ``name=None``
    keeps the name of an earlier registration, else names the bank "Testbank <orgnr> AS"."""
    orgnr = require_orgnr(orgnr)
    if name is None:
        existing = store.client_by_orgnr(orgnr, kind)
        name = existing.name if existing else f"Testbank {orgnr} AS"
    name = name.strip()
    if not name:
        raise SandboxError("Virksomheten trenger et navn (--name).")
    scopes = tuple(s for s in scopes if s)
    if not scopes or any(" " in s for s in scopes):
        raise SandboxError("Klienten trenger minst ett scope, uten mellomrom i navnene.")
    out_dir = ensure_dir(Path(out_dir))
    cert_path = out_dir / f"{orgnr}-cert.pem"
    key_path = out_dir / f"{orgnr}-key.pem"
    p12_path = out_dir / f"{orgnr}.p12"
    ca_path = out_dir / "sandbox-ca.pem"
    issued = _reusable(ca, cert_path, key_path, orgnr, name, password) or ca.issue(orgnr, name)
    write_atomic(cert_path, issued.cert_pem())
    write_atomic(key_path, issued.key_pem(password), private=True)
    write_atomic(p12_path, issued.pkcs12(password, friendly_name=name), private=True)
    write_atomic(ca_path, ca.cert_pem)
    client_id = store.ensure_client(orgnr, kind, name, scopes)
    kid = certificate_kid(issued.cert)
    store.add_client_key(client_id, kid, issued.cert_pem().decode())
    return BankCredentials(
        orgnr=orgnr,
        name=name,
        client_id=client_id,
        p12=p12_path,
        cert_pem=cert_path,
        key_pem=key_path,
        ca_pem=ca_path,
        password=password,
        scopes=scopes,
        alt_scope=alt_scope if alt_scope in scopes else None,
        kid=kid,
    )


def issue_bank_credentials(
    data_dir: Path, orgnr: str, name: str | None, out_dir: Path, password: str | None = None
) -> BankCredentials:
    """Issue a bank's test certificate and register its Maskinporten client in ``data_dir``,
    without a running server. Idempotent per orgnr: the client id stays the same."""
    data_dir = ensure_dir(Path(data_dir))
    ca = TestCA(data_dir)
    store = open_store(data_dir)
    try:
        return issue_credentials(ca, store, orgnr, name, out_dir, password=password)
    finally:
        store.close()
