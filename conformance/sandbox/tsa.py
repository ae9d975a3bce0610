"""The sandbox's time-stamping authority (RFC 3161): a request in, a signed token out.

The token is a CMS SignedData over a ``TSTInfo`` (policy, message imprint, serial number,
``genTime``, accuracy, the request's nonce), signed by the TSA certificate the sandbox CA
issued (``TestCA.tsa``) with the signed attributes RFC 3161 and RFC 5816 ask for: content
type ``id-ct-TSTInfo``, message digest and ``signingCertificateV2`` (the TSA certificate's
SHA-256). ``asn1crypto`` builds and parses the structures; ``cryptography`` signs. The
answer verifies with ``openssl ts -verify`` and with ``rfc3161-client``.

A request is refused with a ``PKIStatus`` of ``rejection`` and the failure bit RFC 3161
names (``badAlg``, ``badDataFormat``, ``unacceptedPolicy``, ``unacceptedExtension``), as a
real TSA answers, never with a traceback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import ClassVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from conformance.sandbox.pki import IssuedCertificate

# A policy OID under 2.999 (ITU-T X.660's arc for examples): a sandbox token never claims
# a real TSA policy.
SANDBOX_TSA_POLICY = "2.999.8008.1"
# By OID, not by asn1crypto's names: those exist only once ``asn1crypto.tsp`` has been
# imported before asn1crypto built its name maps, which depends on import order.
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
MAX_REQUEST_BYTES = 4096
_IMPRINT_LENGTHS = {"sha256": 32, "sha384": 48, "sha512": 64}


class TimestampRejected(ValueError):
    """The request cannot be granted; ``failure`` is the RFC 3161 ``PKIFailureInfo`` bit."""

    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


@dataclass(frozen=True)
class TimestampRequest:
    imprint: tsp.MessageImprint
    nonce: int | None
    cert_req: bool


def parse_request(body: bytes) -> TimestampRequest:
    if len(body) > MAX_REQUEST_BYTES:
        raise TimestampRejected("bad_data_format", "request too large")
    try:
        request = tsp.TimeStampReq.load(body, strict=True)
        version = request["version"].native
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        policy = request["req_policy"].native
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        has_extensions = request["extensions"].native is not None
    except Exception as exc:  # asn1crypto: ValueError, TypeError … for malformed input
        raise TimestampRejected("bad_data_format", "malformed TimeStampReq") from exc
    if version != "v1":
        raise TimestampRejected("bad_data_format", "unsupported version")
    if _IMPRINT_LENGTHS.get(algorithm) != len(hashed or b""):
        raise TimestampRejected("bad_alg", "hash algorithm must be SHA-256/384/512")
    if policy is not None and policy != SANDBOX_TSA_POLICY:
        raise TimestampRejected("unaccepted_policy", "only the sandbox policy is offered")
    if has_extensions:
        raise TimestampRejected("unaccepted_extension", "extensions are not supported")
    return TimestampRequest(imprint=imprint, nonce=nonce, cert_req=cert_req)


class _RejectedResp(core.Sequence):
    """``TimeStampResp`` without a token: asn1crypto's spec does not mark
    ``timeStampToken`` OPTIONAL, as RFC 3161 §2.4.2 does."""

    _fields: ClassVar[list] = [("status", tsp.PKIStatusInfo)]


def rejection(error: TimestampRejected) -> bytes:
    return _RejectedResp(
        {
            "status": {
                "status": "rejection",
                "status_string": [error.text],
                "fail_info": {error.failure},
            }
        }
    ).dump()


def respond(body: bytes, tsa: IssuedCertificate, *, now: dt.datetime | None = None) -> bytes:
    """The DER ``TimeStampResp`` for a DER ``TimeStampReq``: granted, or rejected."""
    try:
        request = parse_request(body)
    except TimestampRejected as error:
        return rejection(error)
    token = make_token(request, tsa, now=now)
    return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


def make_token(
    request: TimestampRequest, tsa: IssuedCertificate, *, now: dt.datetime | None = None
) -> cms.ContentInfo:
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    info = {
        "version": "v1",
        "policy": SANDBOX_TSA_POLICY,
        "message_imprint": request.imprint,
        "serial_number": secrets.randbits(64),
        "gen_time": moment,
        "accuracy": {"seconds": 1},
    }
    if request.nonce is not None:
        info["nonce"] = request.nonce
    tst_info = tsp.TSTInfo(info)
    tst_der = tst_info.dump()
    cert_der = tsa.cert.public_bytes(serialization.Encoding.DER)
    tsa_cert = asn1_x509.Certificate.load(cert_der)
    signed_attrs = _sorted_attributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [OID_TST_INFO]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": moment})]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}
            ),
            cms.CMSAttribute(
                {
                    "type": OID_SIGNING_CERTIFICATE_V2,
                    # ESSCertIDv2's hash algorithm defaults to SHA-256, so it is left out (DER).
                    "values": [{"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]}],
                }
            ),
        ]
    )
    signature = tsa.key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": tsa_cert.issuer,
                        "serial_number": tsa_cert.serial_number,
                    }
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            "signature": signature,
        }
    )
    signed = {
        "version": "v3",  # the content is not id-data (RFC 5652 §5.1)
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": OID_TST_INFO, "content": tst_info},
        "signer_infos": [signer],
    }
    if request.cert_req:
        signed["certificates"] = [tsa_cert]
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})


def _sorted_attributes(attributes: list[cms.CMSAttribute]) -> cms.CMSAttributes:
    """A DER SET OF is sorted by the members' encodings; verifiers (OpenSSL) re-encode the
    signed attributes that way before checking the signature, so the signer must too."""
    return cms.CMSAttributes(sorted(attributes, key=lambda attribute: attribute.dump()))
