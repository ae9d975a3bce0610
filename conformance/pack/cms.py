"""Read and check a detached CMS SignedData (RFC 5652) — the ``manifest.json.p7s``.

Parsing is strict DER (``_der``); every cryptographic operation is ``cryptography``'s.
Only what a pack signature needs is accepted: exactly one signer, signed attributes
(content type, message digest, signing time), SHA-256/384/512 with RSA PKCS#1 v1.5 or
ECDSA, and the signer's certificate inside the structure. Anything else is reported as a
``problem`` code rather than guessed at; the caller words it for people.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from conformance.pack import _der

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"

_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
DIGEST_NAMES = {oid: cls.name.upper().replace("SHA", "SHA-") for oid, cls in _DIGESTS.items()}
_RSA = "1.2.840.113549.1.1.1"
_RSA_WITH = {
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
_EC = "1.2.840.10045.2.1"
_ECDSA_WITH = {
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
MAX_CERTIFICATES = 16


class CmsError(ValueError):
    """The bytes are not a CMS SignedData this module can read."""


@dataclass(frozen=True)
class SignerInfo:
    certificate: x509.Certificate | None  # the included certificate that matches the signer id
    digest_oid: str
    signature_oid: str
    signature: bytes
    signed_attributes: bytes | None  # DER of the SET OF Attribute, as signed
    content_type: str | None
    message_digest: bytes | None
    signing_time: dt.datetime | None


@dataclass(frozen=True)
class SignedData:
    certificates: tuple[x509.Certificate, ...]
    signers: tuple[SignerInfo, ...]
    detached: bool


def parse_signed_data(data: bytes) -> SignedData:
    try:
        return _parse(data)
    except (_der.DerError, IndexError, ValueError) as exc:
        raise CmsError(str(exc) or type(exc).__name__) from exc


def _parse(data: bytes) -> SignedData:
    content_info = _der.read_single(data).expect(_der.SEQUENCE).children()
    if len(content_info) != 2 or _der.decode_oid(content_info[0]) != OID_SIGNED_DATA:
        raise CmsError("not a CMS SignedData")
    wrapper = content_info[1].expect(0xA0).children()
    if len(wrapper) != 1:
        raise CmsError("malformed content wrapper")
    fields = wrapper[0].expect(_der.SEQUENCE).children()
    if len(fields) < 4:
        raise CmsError("SignedData has too few fields")
    _der.decode_integer(fields[0])
    fields[1].expect(_der.SET)
    encap = fields[2].expect(_der.SEQUENCE).children()
    if not encap or _der.decode_oid(encap[0]) != OID_DATA:
        raise CmsError("signed content is not of type data")
    detached = len(encap) == 1
    rest = fields[3:]
    certificates: list[x509.Certificate] = []
    if rest and rest[0].tag == 0xA0:
        for choice in rest[0].children():
            if choice.tag != _der.SEQUENCE:
                continue  # attribute certificates and other choices are not used here
            if len(certificates) >= MAX_CERTIFICATES:
                raise CmsError("too many certificates")
            certificates.append(_load_certificate(choice.raw))
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:  # CRLs: not used
        rest = rest[1:]
    if len(rest) != 1:
        raise CmsError("malformed signerInfos")
    signers = tuple(_parse_signer(s, certificates) for s in rest[0].expect(_der.SET).children())
    return SignedData(tuple(certificates), signers, detached)


def _load_certificate(raw: bytes) -> x509.Certificate:
    """Parse a certificate completely now: cryptography reads names, extensions and keys
    lazily, and a hostile certificate must fail here, not in the middle of a check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd attribute lengths: the checks judge the cert
            cert = x509.load_der_x509_certificate(raw)
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            list(cert.extensions)
            cert.public_key()
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number)
    except Exception as exc:  # KeyError, ValueError, UnsupportedAlgorithm … from the parser
        raise CmsError(f"unreadable certificate ({type(exc).__name__})") from exc
    return cert


def _parse_signer(element: _der.Element, certificates: list[x509.Certificate]) -> SignerInfo:
    fields = element.expect(_der.SEQUENCE).children()
    if len(fields) < 5:
        raise CmsError("SignerInfo has too few fields")
    _der.decode_integer(fields[0])
    certificate = _match_signer(fields[1], certificates)
    digest_oid = _algorithm_oid(fields[2])
    index = 3
    signed_attributes = None
    attributes: dict[str, list[_der.Element]] = {}
    if fields[index].tag == 0xA0:
        raw = fields[index].raw
        signed_attributes = b"\x31" + raw[1:]  # signed as a SET OF, stored as [0] IMPLICIT
        for attribute in fields[index].children():
            parts = attribute.expect(_der.SEQUENCE).children()
            if len(parts) != 2:
                raise CmsError("malformed attribute")
            oid = _der.decode_oid(parts[0])
            if oid in attributes:
                raise CmsError("attribute appears twice")
            attributes[oid] = parts[1].expect(_der.SET).children()
        index += 1
    if len(fields) < index + 2:
        raise CmsError("SignerInfo has too few fields")
    signature_oid = _algorithm_oid(fields[index])
    signature = fields[index + 1].expect(_der.OCTET_STRING).value
    return SignerInfo(
        certificate=certificate,
        digest_oid=digest_oid,
        signature_oid=signature_oid,
        signature=signature,
        signed_attributes=signed_attributes,
        content_type=_single(attributes, OID_CONTENT_TYPE, _der.decode_oid),
        message_digest=_single(
            attributes, OID_MESSAGE_DIGEST, lambda e: e.expect(_der.OCTET_STRING).value
        ),
        signing_time=_single(attributes, OID_SIGNING_TIME, _der.decode_time),
    )


def _single(attributes, oid, decode):
    values = attributes.get(oid)
    if values is None:
        return None
    if len(values) != 1:
        raise CmsError("attribute must have exactly one value")
    return decode(values[0])


def _algorithm_oid(element: _der.Element) -> str:
    parts = element.expect(_der.SEQUENCE).children()
    if not parts:
        raise CmsError("empty algorithm identifier")
    return _der.decode_oid(parts[0])


def _match_signer(
    sid: _der.Element, certificates: list[x509.Certificate]
) -> x509.Certificate | None:
    if sid.tag == _der.SEQUENCE:  # IssuerAndSerialNumber
        parts = sid.children()
        if len(parts) != 2:
            raise CmsError("malformed signer identifier")
        issuer_raw, serial = parts[0].raw, _der.decode_integer(parts[1])
        for cert in certificates:
            if cert.serial_number == serial and _issuer_raw(cert) == issuer_raw:
                return cert
        return None
    if sid.tag == 0x80:  # [0] SubjectKeyIdentifier
        for cert in certificates:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.value:
                return cert
        return None
    raise CmsError("unknown signer identifier")


def _issuer_raw(cert: x509.Certificate) -> bytes:
    tbs = _der.read_single(cert.tbs_certificate_bytes).children()
    if tbs[0].tag == 0xA0:  # explicit version
        tbs = tbs[1:]
    return tbs[2].raw  # serialNumber, signature, issuer


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    problem: str | None = None  # a code: see ``check_signature``
    signer: SignerInfo | None = None


def check_signature(signed: SignedData, content: bytes) -> SignatureCheck:
    """Does ``signed`` carry one valid signature over ``content``?

    Problem codes: ``not_detached``, ``signer_count``, ``no_certificate``,
    ``no_attributes``, ``digest_algorithm``, ``content_type``, ``digest_mismatch``,
    ``signature_algorithm``, ``bad_signature``."""
    if not signed.detached:
        return SignatureCheck(False, "not_detached")
    if len(signed.signers) != 1:
        return SignatureCheck(False, "signer_count")
    signer = signed.signers[0]
    if signer.certificate is None:
        return SignatureCheck(False, "no_certificate", signer)
    if signer.signed_attributes is None or signer.message_digest is None:
        return SignatureCheck(False, "no_attributes", signer)
    digest_cls = _DIGESTS.get(signer.digest_oid)
    if digest_cls is None:
        return SignatureCheck(False, "digest_algorithm", signer)
    if signer.content_type != OID_DATA:
        return SignatureCheck(False, "content_type", signer)
    if hashlib.new(digest_cls.name, content).digest() != signer.message_digest:
        return SignatureCheck(False, "digest_mismatch", signer)
    key = signer.certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and signer.signature_oid == _RSA:
            key.verify(signer.signature, signer.signed_attributes, padding.PKCS1v15(), digest_cls())
        elif isinstance(key, rsa.RSAPublicKey) and signer.signature_oid in _RSA_WITH:
            key.verify(
                signer.signature,
                signer.signed_attributes,
                padding.PKCS1v15(),
                _RSA_WITH[signer.signature_oid](),
            )
        elif isinstance(key, ec.EllipticCurvePublicKey) and (
            signer.signature_oid == _EC or signer.signature_oid in _ECDSA_WITH
        ):
            algorithm = _ECDSA_WITH.get(signer.signature_oid, digest_cls)()
            key.verify(signer.signature, signer.signed_attributes, ec.ECDSA(algorithm))
        else:
            return SignatureCheck(False, "signature_algorithm", signer)
    except InvalidSignature:
        return SignatureCheck(False, "bad_signature", signer)
    except (UnsupportedAlgorithm, ValueError):
        return SignatureCheck(False, "signature_algorithm", signer)
    return SignatureCheck(True, None, signer)
