"""Signing the manifest: a detached CMS (PKCS#7) signature, SHA-256, certificate included.

``cryptography``'s ``PKCS7SignatureBuilder`` does the work; the signed attributes it adds
(content type, message digest, signing time) are what the verifier needs, and the output
verifies with plain OpenSSL (``openssl cms -verify -binary -inform DER …``). This module
takes cryptography objects, never paths: loading credentials is the caller's job.

``timestamp_signature`` then makes it CAdES-T: a TSA's RFC 3161 token over the signature
value, added as the unsigned attribute ``id-aa-signatureTimeStampToken``. Unsigned
attributes are outside what is signed, so OpenSSL verifies the result exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from conformance.errors import CredentialError, PackError
from conformance.pack import cms
from conformance.pack.timestamp import DEFAULT_TIMEOUT_S, TimestampError, request_token


def sign_manifest(
    manifest_bytes: bytes,
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    chain: Iterable[x509.Certificate] = (),
) -> bytes:
    """DER-encoded detached CMS SignedData over ``manifest_bytes``."""
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialError(
            "Signeringsnøkkelen må være RSA eller EC.",
            hint="Bruk nøkkelen som hører til virksomhetssertifikatet.",
        )
    if _spki(certificate.public_key()) != _spki(private_key.public_key()):
        raise CredentialError(
            "Nøkkelen hører ikke til sertifikatet den skal signere med.",
            hint="Kontroller at PKCS#12-filen eller PEM-filene er for samme sertifikat.",
        )
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(manifest_bytes)
        .add_signer(certificate, private_key, hashes.SHA256())
    )
    for extra in chain:
        if extra != certificate:
            builder = builder.add_certificate(extra)
    try:
        return builder.sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.Binary,
                pkcs7.PKCS7Options.NoCapabilities,
            ],
        )
    except (TypeError, ValueError) as exc:
        raise PackError(f"Kunne ikke signere manifestet: {exc}") from exc


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def timestamp_signature(
    signature_der: bytes, tsa_url: str, *, timeout: float = DEFAULT_TIMEOUT_S
) -> bytes:
    """``signature_der`` with a timestamp from the TSA at ``tsa_url`` over its one
    signature value. Raises ``TimestampError`` (with the reason, in Norwegian) when the TSA
    cannot give one; the caller decides whether an untimestamped pack will do."""
    try:
        (signer,) = cms.parse_signed_data(signature_der).signers
    except (cms.CmsError, ValueError) as exc:
        raise PackError("Signaturen som skal tidsstemples kan ikke leses.") from exc
    token = request_token(tsa_url, signer.signature, timeout=timeout)
    try:
        return cms.add_signature_timestamp(signature_der, token)
    except cms.CmsError as exc:
        raise TimestampError(f"Tidsstempelet kan ikke legges til signaturen: {exc}") from exc
