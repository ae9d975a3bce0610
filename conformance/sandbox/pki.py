"""The sandbox's test certificate authority and its enterprise test certificates.

The certificates are shaped like Norwegian virksomhetssertifikater (SEID 2): the orgnr is in
``organizationIdentifier=NTRNO-<orgnr>`` and, as in SEID 1, in ``serialNumber=<orgnr>``;
key usage covers authentication (digitalSignature) and signing (nonRepudiation). The CA
lives in the sandbox's data folder (``ca.pem``: certificate and key; ``ca-cert.pem``: the
certificate alone, for verifiers) and is created on first use, race-safe across processes.

The CA also runs what a real issuer runs beside it (served over HTTP by ``pki_http``): a
time-stamping authority (``tsa.pem``: a certificate with the critical ``timeStamping``
EKU, issued by this CA), a CRL and an OCSP responder (signed by the CA itself). Revocations
live in ``revoked/<serial>.json``, one file each, created race-free, so ``sandbox revoke``
works without a server and a running sandbox sees it on the next request; ``crl.der`` in
the data folder is the current CRL, for verifiers offline.

Where certificates point for revocation: a sandbox's port changes between runs, and a
bank's certificate is reused across runs, so no URL in a certificate stays right for long.
A certificate issued by a *running* sandbox (``RunningSandbox.register_bank``) names that
sandbox's OCSP responder, CRL and CA certificate (AIA/CDP), which hold while it runs at that
address (``sandbox serve --port N`` gives a stable one). A certificate issued without a
server (``sandbox issue-cert``, the runner's own credentials) names none. Either way a
verifier can point at any sandbox with ``--ocsp-url`` / ``--crl`` (URL, or the ``crl.der``
file): those override the certificate's URLs.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from conformance.errors import SandboxError
from conformance.ids import require_orgnr
from conformance.sandbox.files import create_once, ensure_dir, write_atomic

CA_BUNDLE_FILE = "ca.pem"
CA_CERT_FILE = "ca-cert.pem"
CERT_VALIDITY = dt.timedelta(days=730)  # about 2 years, like Buypass/Commfides
CA_VALIDITY = dt.timedelta(days=3650)
TSA_BUNDLE_FILE = "tsa.pem"
TSA_VALIDITY = dt.timedelta(days=3 * 365)
REVOKED_DIR = "revoked"
CRL_FILE = "crl.der"
CRL_VALIDITY = dt.timedelta(days=7)  # nextUpdate: a week, like many issuing CAs
PKI_PREFIX = "/_pki"
REVOCATION_REASONS = {reason.name: reason for reason in x509.ReasonFlags}
_ORGNR_IN_O = re.compile(r"-(\d{9})$")


@dataclass(frozen=True)
class PkiUrls:
    """Where a sandbox at ``base_url`` serves its TSA, OCSP responder, CRL and CA certificate."""

    tsa: str
    ocsp: str
    crl: str
    ca: str

    @classmethod
    def for_base(cls, base_url: str) -> PkiUrls:
        root = base_url.rstrip("/") + PKI_PREFIX
        return cls(tsa=root + "/tsa", ocsp=root + "/ocsp", crl=root + "/crl", ca=root + "/ca.crt")


def sandbox_base_url(url: str) -> str:
    """The sandbox's base URL from any of its URLs (the KFR base URL a run records)."""
    base = url.strip().rstrip("/")
    for marker in ("/kar-ws/", "/maskinporten/", PKI_PREFIX + "/"):
        base = (base + "/").split(marker)[0].rstrip("/")
    return base


def bank_certificate(data_dir: Path, orgnr: str) -> x509.Certificate:
    """The certificate in ``<data_dir>/banks/<orgnr>/<orgnr>-cert.pem``, where the runner,
    ``sandbox issue-cert`` without ``--out`` elsewhere and ``sandbox token`` keep it."""
    orgnr = require_orgnr(orgnr)
    path = Path(data_dir) / "banks" / orgnr / f"{orgnr}-cert.pem"
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise SandboxError(
            f"Sandkassen har ikke utstedt noe sertifikat for {orgnr} ({path} finnes ikke).",
            hint="Oppgi sertifikatfilen med --cert, eller utsted et med «sandbox issue-cert».",
        ) from exc
    except (OSError, ValueError) as exc:
        raise SandboxError(f"Kan ikke lese sertifikatet {path}.") from exc


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate, as ``revoked/<serial>.json`` holds it."""

    serial_number: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags
    subject: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "serial_number": format(self.serial_number, "x"),
                "revoked_at": self.revoked_at.isoformat(),
                "reason": self.reason.name,
                "subject": self.subject,
            },
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Revocation:
        data = json.loads(raw)
        revoked_at = dt.datetime.fromisoformat(data["revoked_at"])
        return cls(
            serial_number=int(data["serial_number"], 16),
            revoked_at=revoked_at if revoked_at.tzinfo else revoked_at.replace(tzinfo=dt.UTC),
            reason=REVOCATION_REASONS[data.get("reason", "unspecified")],
            subject=str(data.get("subject", "")),
        )


# Signing and non-repudiation, nothing else: what a bank's virksomhetssertifikat for
# signing and the sandbox TSA's certificate both carry.
SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


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
            # The sandbox made this key itself and keeps it private: OpenSSL's RSA key check
            # (~50 ms per load, several loads per run) protects against keys from elsewhere.
            key = serialization.load_pem_private_key(
                bundle, password=None, unsafe_skip_rsa_key_validation=True
            )
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
        # The PKI URLs of the sandbox serving this CA, when one runs (``RunningSandbox`` sets
        # it): certificates issued meanwhile name its OCSP responder and CRL.
        self.urls: PkiUrls | None = None

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
        builder = (
            self._leaf_builder(x509.Name(attrs), key, start, end)
            .add_extension(SIGNING_KEY_USAGE, critical=True)
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
        )
        cert = self._with_revocation_urls(builder).sign(self.key, hashes.SHA256())
        return IssuedCertificate(cert=cert, key=key, ca_cert=self.cert)

    def _leaf_builder(
        self, subject: x509.Name, key: rsa.RSAPrivateKey, start: dt.datetime, end: dt.datetime
    ) -> x509.CertificateBuilder:
        """An end-entity certificate issued by this CA: what every leaf it issues shares."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )

    def _with_revocation_urls(self, builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        if self.urls is None:
            return builder
        return builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(self.urls.ocsp),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(self.urls.ca),
                    ),
                ]
            ),
            critical=False,
        ).add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(self.urls.crl)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )

    # ------------------------------------------------------------------ time stamping

    @functools.cached_property
    def tsa(self) -> IssuedCertificate:
        """The sandbox TSA's certificate and key (``tsa.pem``), issued by this CA on first
        use; issued again when the CA was replaced or the certificate nears its end."""
        path = self.data_dir / TSA_BUNDLE_FILE
        bundle = create_once(path, self._make_tsa_bundle, private=True)
        issued = self._load_tsa(bundle)
        if issued is None:
            bundle = self._make_tsa_bundle()
            write_atomic(path, bundle, private=True)
            issued = self._load_tsa(bundle)
        if issued is None:  # pragma: no cover - a bundle we just made always loads
            raise SandboxError(f"Sandkassens tidsstempeltjeneste i {path} kan ikke lages.")
        return issued

    def _load_tsa(self, bundle: bytes) -> IssuedCertificate | None:
        try:
            cert = x509.load_pem_x509_certificate(bundle)
            key = serialization.load_pem_private_key(  # our own key: see TestCA.__init__
                bundle, password=None, unsafe_skip_rsa_key_validation=True
            )
        except ValueError:
            return None
        fresh = cert.not_valid_after_utc - _now() > dt.timedelta(days=30)
        if not isinstance(key, rsa.RSAPrivateKey) or not self.issued_by_me(cert) or not fresh:
            return None
        return IssuedCertificate(cert=cert, key=key, ca_cert=self.cert)

    def _make_tsa_bundle(self) -> bytes:
        key = _new_key(2048)
        now = _now()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                x509.NameAttribute(
                    NameOID.ORGANIZATION_NAME, "kfr-conformance sandkasse (ikke ekte)"
                ),
                x509.NameAttribute(NameOID.COMMON_NAME, "KFR sandbox TSA"),
            ]
        )
        cert = (
            self._leaf_builder(
                name, key, now - dt.timedelta(minutes=5),
                min(now + TSA_VALIDITY, self.cert.not_valid_after_utc),
            )
            .add_extension(SIGNING_KEY_USAGE, critical=True)
            # RFC 3161 §2.3: the TSA's certificate has exactly this one purpose, critical.
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
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
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM) + key_pem

    # ------------------------------------------------------------------ revocation

    def revoke(
        self,
        cert: x509.Certificate,
        *,
        at: dt.datetime | None = None,
        reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
    ) -> Revocation:
        """Revoke ``cert`` (issued by this CA). ``at`` defaults to now; a time in the past
        says the key was compromised since then. Revoking twice keeps the first entry."""
        if not self.issued_by_me(cert):
            raise SandboxError(
                f"Sertifikatet «{cert.subject.rfc4514_string()}» er ikke utstedt av denne "
                "sandkassens CA, så det kan ikke tilbakekalles her."
            )
        moment = (at or _now()).astimezone(dt.UTC).replace(microsecond=0)
        subject = cert.subject.rfc4514_string(
            {
                NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
                NameOID.SERIAL_NUMBER: "serialNumber",
            }
        )
        entry = Revocation(cert.serial_number, moment, reason, subject)
        folder = ensure_dir(self.data_dir / REVOKED_DIR)
        raw = create_once(folder / f"{cert.serial_number:x}.json", entry.to_json)
        self.write_crl()
        return Revocation.from_json(raw)

    def revocations(self) -> dict[int, Revocation]:
        folder = self.data_dir / REVOKED_DIR
        found: dict[int, Revocation] = {}
        try:
            paths = sorted(folder.glob("*.json"))
        except OSError:
            return found
        for path in paths:
            try:
                entry = Revocation.from_json(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged entry cannot be served; the others still are
            found[entry.serial_number] = entry
        return found

    def revocation_of(self, cert: x509.Certificate) -> Revocation | None:
        if not self.issued_by_me(cert):
            return None
        return self.revocations().get(cert.serial_number)

    def crl(self, now: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """The current CRL, signed by the CA, listing every revocation."""
        now = (now or _now()).replace(microsecond=0)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now)
            .next_update(now + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(int(time.time() * 1000)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        for entry in self.revocations().values():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial_number)
                .revocation_date(entry.revoked_at)
                .add_extension(x509.CRLReason(entry.reason), critical=False)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def write_crl(self) -> Path:
        """Publish the current CRL as ``crl.der`` in the data folder (for offline verifiers)."""
        path = self.data_dir / CRL_FILE
        write_atomic(path, self.crl().public_bytes(serialization.Encoding.DER))
        return path

    def issued_by_me(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` carries this CA's signature (name and signature both match)."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True
