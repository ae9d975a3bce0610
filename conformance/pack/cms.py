"""Read and check a detached CMS SignedData (RFC 5652) — the ``manifest.json.p7s``.

Parsing is ``asn1crypto``'s (a widely used, widely fuzzed ASN.1 library); every
cryptographic operation is ``cryptography``'s. asn1crypto parses lazily, so
``parse_signed_data`` reads every field a check will need *now* and keeps only plain
Python values: a hostile structure fails here, as ``CmsError``, never halfway through a
check. Only what a pack signature needs is accepted: exactly one signer, signed attributes
(content type, message digest, signing time), SHA-256/384/512 with RSA PKCS#1 v1.5 or
ECDSA, and the signer's certificate inside the structure. Unsigned attributes are read for
one purpose: RFC 3161 signature timestamps (``id-aa-signatureTimeStampToken``), kept as raw
tokens for ``conformance.pack.timestamp`` to judge. Anything else is reported as a
``problem`` code rather than guessed at; the caller words it for people.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as _asn1_tsp  # noqa: F401 - see below

# ``asn1crypto.tsp`` adds the RFC 3161 names (``tst_info``, ``signing_certificate_v2``) to
# the CMS maps when imported; asn1crypto builds its name → OID maps once, on first use, so
# it is imported with ``cms``, before any use, in every process that handles CMS here.
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"  # id-aa-signatureTimeStampToken

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
MAX_SIGNERS = 4  # one is required; a few more are read only to be refused by name
MAX_ATTRIBUTES = 32
MAX_TIMESTAMPS = 4


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
    timestamp_tokens: tuple[bytes, ...] = ()  # DER ContentInfo of each signature timestamp


@dataclass(frozen=True)
class SignedData:
    certificates: tuple[x509.Certificate, ...]
    signers: tuple[SignerInfo, ...]
    detached: bool


def parse_signed_data(data: bytes) -> SignedData:
    try:
        return _parse(data)
    except CmsError:
        raise
    except Exception as exc:
        # asn1crypto reports malformed input as ValueError, TypeError, KeyError, OverflowError
        # … depending on where the bytes go wrong; to the caller every one means "unreadable".
        raise CmsError(_short(exc)) from exc


def _short(exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (detail[:160] or type(exc).__name__).replace("\n", " ")


def _parse(data: bytes) -> SignedData:
    content_info = asn1_cms.ContentInfo.load(data, strict=True)  # strict: nothing trailing
    if content_info["content_type"].dotted != OID_SIGNED_DATA:
        raise CmsError("not a CMS SignedData")
    signed = content_info["content"]
    if not isinstance(signed, asn1_cms.SignedData):
        raise CmsError("malformed content wrapper")
    signed["version"].native  # noqa: B018 - parse now, not during a check
    encap = signed["encap_content_info"]
    if encap["content_type"].dotted != OID_DATA:
        raise CmsError("signed content is not of type data")
    detached = isinstance(encap["content"], asn1_core.Void)

    certificates: list[x509.Certificate] = []
    issuer_names: list[bytes] = []  # the DER issuer Name of each, as signer ids carry it
    choices = signed["certificates"]
    if not isinstance(choices, asn1_core.Void):
        if len(choices) > MAX_CERTIFICATES:
            raise CmsError("too many certificates")
        for choice in choices:
            if choice.name != "certificate":
                continue  # attribute certificates and other choices are not used here
            parsed = choice.chosen
            issuer_names.append(parsed["tbs_certificate"]["issuer"].dump())
            certificates.append(_load_certificate(parsed.dump()))
    infos = signed["signer_infos"]
    if len(infos) > MAX_SIGNERS:
        raise CmsError("too many signers")
    signers = tuple(_parse_signer(info, certificates, issuer_names) for info in infos)
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


def _parse_signer(
    info: asn1_cms.SignerInfo, certificates: list[x509.Certificate], issuer_names: list[bytes]
) -> SignerInfo:
    info["version"].native  # noqa: B018 - parse now, not during a check
    certificate = _match_signer(info["sid"], certificates, issuer_names)
    digest_oid = info["digest_algorithm"]["algorithm"].dotted
    signed_attributes = None
    values: dict[str, object] = {}
    attrs = info["signed_attrs"]
    if not isinstance(attrs, asn1_core.Void):
        raw = attrs.dump()
        if len(raw) < 2 or raw[1] == 0x80:
            raise CmsError("signed attributes are not DER (indefinite length)")
        # Signed as a SET OF (RFC 5652 §5.4), stored with the [0] IMPLICIT tag.
        signed_attributes = b"\x31" + raw[1:]
        values = _signed_values(attrs)
    return SignerInfo(
        certificate=certificate,
        digest_oid=digest_oid,
        signature_oid=info["signature_algorithm"]["algorithm"].dotted,
        signature=info["signature"].native,
        signed_attributes=signed_attributes,
        content_type=values.get(OID_CONTENT_TYPE),  # type: ignore[arg-type]
        message_digest=values.get(OID_MESSAGE_DIGEST),  # type: ignore[arg-type]
        signing_time=values.get(OID_SIGNING_TIME),  # type: ignore[arg-type]
        timestamp_tokens=_timestamp_tokens(info["unsigned_attrs"]),
    )


def _signed_values(attrs: asn1_cms.CMSAttributes) -> dict[str, object]:
    if len(attrs) > MAX_ATTRIBUTES:
        raise CmsError("too many signed attributes")
    seen: set[str] = set()
    values: dict[str, object] = {}
    for attribute in attrs:
        oid = attribute["type"].dotted
        if oid in seen:
            raise CmsError("attribute appears twice")
        seen.add(oid)
        if oid not in (OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNING_TIME):
            continue  # signed, so covered by the signature, but not needed by any check
        items = attribute["values"]
        if len(items) != 1:
            raise CmsError("attribute must have exactly one value")
        value = items[0]
        if oid == OID_CONTENT_TYPE:
            values[oid] = value.dotted
        elif oid == OID_MESSAGE_DIGEST:
            values[oid] = bytes(value.native)
        else:
            moment = value.native
            if not isinstance(moment, dt.datetime):
                raise CmsError("malformed signing time")
            values[oid] = (
                moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            )
    return values


def _timestamp_tokens(attrs: asn1_core.Asn1Value) -> tuple[bytes, ...]:
    """The raw tokens of every ``id-aa-signatureTimeStampToken`` (unsigned) attribute.
    They are judged later, by ``timestamp``: an unreadable token is a failed check with a
    reason, not an unreadable signature."""
    if isinstance(attrs, asn1_core.Void):
        return ()
    if len(attrs) > MAX_ATTRIBUTES:
        raise CmsError("too many unsigned attributes")
    tokens: list[bytes] = []
    for attribute in attrs:
        if attribute["type"].dotted != OID_SIGNATURE_TIMESTAMP:
            continue
        for value in attribute["values"]:
            # ``dump()`` of an untouched value is its encoding as it arrived, unparsed.
            tokens.append(value.dump())
            if len(tokens) > MAX_TIMESTAMPS:
                raise CmsError("too many timestamps")
    return tuple(tokens)


def _match_signer(
    sid: asn1_cms.SignerIdentifier,
    certificates: list[x509.Certificate],
    issuer_names: list[bytes],
) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        chosen = sid.chosen
        issuer_raw, serial = chosen["issuer"].dump(), chosen["serial_number"].native
        for cert, cert_issuer in zip(certificates, issuer_names, strict=True):
            if cert.serial_number == serial and cert_issuer == issuer_raw:
                return cert
        return None
    if sid.name == "subject_key_identifier":
        wanted = bytes(sid.chosen.native)
        for cert in certificates:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == wanted:
                return cert
        return None
    raise CmsError("unknown signer identifier")


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


def add_signature_timestamp(signature_der: bytes, token_der: bytes) -> bytes:
    """``signature_der`` with ``token_der`` added to its one SignerInfo as the unsigned
    attribute ``id-aa-signatureTimeStampToken`` (CAdES-T). Everything signed — the signed
    attributes, the certificates, the signature value — keeps its exact encoding: the
    parsed parts are reused, not re-encoded, so OpenSSL still verifies the result."""
    try:
        content_info = asn1_cms.ContentInfo.load(signature_der, strict=True)
        signed = content_info["content"]
        (info,) = list(signed["signer_infos"])
        token = asn1_cms.ContentInfo.load(token_der, strict=True)
        kept = [
            attribute
            for attribute in (
                [] if isinstance(info["unsigned_attrs"], asn1_core.Void) else info["unsigned_attrs"]
            )
            if attribute["type"].dotted != OID_SIGNATURE_TIMESTAMP
        ]
        stamped_attr = asn1_cms.CMSAttribute(
            {"type": "signature_time_stamp_token", "values": [token]}
        )
        fields = present_fields(info)
        fields["unsigned_attrs"] = asn1_cms.CMSAttributes([*kept, stamped_attr])
        stamped_info = asn1_cms.SignerInfo(fields)
        signed_fields = present_fields(signed)
        signed_fields["signer_infos"] = asn1_cms.SignerInfos([stamped_info])
        result = asn1_cms.ContentInfo(
            {"content_type": "signed_data", "content": asn1_cms.SignedData(signed_fields)}
        ).dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsError(f"cannot add the timestamp: {_short(exc)}") from exc
    return result


def present_fields(value: asn1_core.Sequence) -> dict[str, asn1_core.Asn1Value]:
    """The fields of a parsed SEQUENCE that are present, as parsed objects: a new SEQUENCE
    built from them re-uses their encodings byte for byte."""
    return {
        name: value[name]
        for name, *_ in value._fields
        if not isinstance(value[name], asn1_core.Void)
    }
