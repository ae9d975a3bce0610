"""What a Norwegian enterprise certificate says about its holder.

Buypass and Commfides put the organisation number in ``organizationIdentifier``
(``NTRNO-<orgnr>``, SEID 2) or in ``serialNumber`` (SEID 1); some validators also read it
from the end of ``O=<name>-<orgnr>``. Shared by the pack builder (refuse to sign for
another bank) and the verifier (signer = bank).
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

_ORG_SUFFIX = re.compile(r"-(\d{9})$")
_NAMES = {
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


def _values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attr.value).strip() for attr in name.get_attributes_for_oid(oid)]


def orgnr_candidates(cert: x509.Certificate) -> set[str]:
    # Imported here: python-stdnum is not needed before a check looks at the signer.
    from conformance.ids import is_valid_orgnr

    found: set[str] = set()
    for value in _values(cert.subject, NameOID.ORGANIZATION_IDENTIFIER):
        if value.upper().startswith("NTRNO-"):
            found.add(value[6:])
    for value in _values(cert.subject, NameOID.SERIAL_NUMBER):
        if value.isdigit() and len(value) == 9:
            found.add(value)
    if not found:
        for value in _values(cert.subject, NameOID.ORGANIZATION_NAME):
            match = _ORG_SUFFIX.search(value)
            if match:
                found.add(match.group(1))
    return {orgnr for orgnr in found if is_valid_orgnr(orgnr)}


def certificate_orgnr(cert: x509.Certificate) -> str | None:
    """The holder's organisation number, or None when absent or ambiguous."""
    found = orgnr_candidates(cert)
    return found.pop() if len(found) == 1 else None


def key_usage_names(cert: x509.Certificate) -> list[str] | None:
    """Key usage bits that are set, or None when the certificate has no key usage extension."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    names = []
    for attr in ("digital_signature", "content_commitment", "key_encipherment", "key_cert_sign"):
        if getattr(usage, attr):
            names.append("non_repudiation" if attr == "content_commitment" else attr)
    return names


def describe_certificate(cert: x509.Certificate) -> dict[str, object]:
    return {
        "subject": cert.subject.rfc4514_string(_NAMES),
        "issuer": cert.issuer.rfc4514_string(_NAMES),
        "serial_number": format(cert.serial_number, "x"),
        "orgnr": certificate_orgnr(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "key_usage": key_usage_names(cert),
    }
