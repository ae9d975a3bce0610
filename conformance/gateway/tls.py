"""A TLS server certificate for the gateway's listening side, issued by the sandbox CA.

Some core systems refuse a plain-http KFR base URL. With ``--tls`` the gateway serves https
with a short-lived certificate for the hosts it listens on (``localhost`` and the loopback
addresses always included); the core system trusts the sandbox CA (``sandbox ca``) for it.
The sandbox's own certificates are enterprise client certificates; this one is a server
certificate (serverAuth, subjectAltName), so it is built here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.sandbox.files import ensure_dir, write_atomic
from conformance.sandbox.pki import TestCA

__all__ = ["issue_server_certificate"]

VALIDITY = dt.timedelta(days=30)


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1"]):
        host = host.strip("[]")
        if not host or host in ("0.0.0.0", "::"):
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_server_certificate(ca: TestCA, hosts: list[str], out_dir: Path) -> tuple[Path, Path]:
    """Write ``gateway-cert.pem`` and ``gateway-key.pem`` (0600) to ``out_dir``; returns
    their paths. A fresh key every start: nothing outlives the gateway that used it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kfr-conformance opptaksgateway (ikke ekte)"),
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost"),
        ]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    out_dir = ensure_dir(Path(out_dir))
    cert_path, key_path = out_dir / "gateway-cert.pem", out_dir / "gateway-key.pem"
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    return cert_path, key_path
