"""RFC 3161 signature timestamps (CAdES-T): asking a TSA for one, and judging one.

A bank signs its own pack, so the ``signingTime`` inside the signature is the bank's word.
A time-stamping authority (TSA) signs a statement "these bytes existed at ``genTime``";
over the SignerInfo's signature value, that statement dates the signature independently,
and an auditor years later can tell the certificate was valid when the pack was signed.

- ``request_token(url, data)`` asks a TSA (HTTP POST, ``application/timestamp-query``) for
  a token over ``data``, checks the answer is granted, carries our nonce and the imprint of
  our bytes, and returns the token (DER ``ContentInfo``). ``rfc3161-client`` builds the
  request and reads the answer.
- ``judge_timestamp(...)`` decides the ``timestamp`` check: one token, readable, its message
  imprint equal to the hash of the signature value, signed by a TSA certificate with the
  ``timeStamping`` EKU that chains (valid at ``genTime``) to a trusted root. Then ``genTime``
  is the trusted signing time. ``rfc3161-client``'s verifier checks the token's signature
  and chain (OpenSSL ``PKCS7_verify`` at ``genTime``, purpose ``timestampsign``) and the
  critical EKU; this module adds the imprint check first, so the reason names what failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from conformance.errors import PackError
from conformance.pack._text import text
from conformance.tls import default_ssl_context

if TYPE_CHECKING:
    from conformance.pack.cms import SignerInfo

MAX_RESPONSE_BYTES = 1 << 20  # a token with a short chain is a few KiB
DEFAULT_TIMEOUT_S = 15.0
_IMPRINT_ALGORITHMS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_GRANTED = (0, 1)  # granted, grantedWithMods
_NAME_LABELS = {  # as certinfo shows names: readable labels for the two the RFC leaves as OIDs
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


class TimestampError(PackError):
    """No timestamp could be had from the TSA (the message says why, in Norwegian)."""


def shown_url(url: str) -> str:
    """``url`` without user information, which may hold a password for the TSA."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(ugyldig URL)"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def request_token(url: str, data: bytes, *, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """A timestamp token (DER ``ContentInfo``) from the TSA at ``url`` over ``data``."""
    import httpx
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response

    where = shown_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise TimestampError(f"Tidsstempeltjenesten «{where}» er ikke en http(s)-adresse.")
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    try:
        # The process's shared TLS context: httpx would load the CA bundle again.
        with httpx.Client(
            timeout=timeout, follow_redirects=False, verify=default_ssl_context()
        ) as client:
            response = client.post(
                url,
                content=request.as_bytes(),
                headers={"Content-Type": "application/timestamp-query"},
            )
    except httpx.HTTPError as exc:
        raise TimestampError(
            f"Tidsstempeltjenesten {where} svarte ikke ({type(exc).__name__})."
        ) from exc
    if response.status_code != 200:
        raise TimestampError(f"Tidsstempeltjenesten {where} svarte HTTP {response.status_code}.")
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise TimestampError(f"Svaret fra tidsstempeltjenesten {where} er for stort.")
    try:
        answer = decode_timestamp_response(response.content)
        status = answer.status
    except Exception as exc:  # the Rust parser raises ValueError and kin on bad DER
        raise TimestampError(f"Svaret fra tidsstempeltjenesten {where} kan ikke leses.") from exc
    if status not in _GRANTED:
        raise TimestampError(f"Tidsstempeltjenesten {where} avslo forespørselen (status {status}).")
    info = answer.tst_info
    if info.nonce != request.nonce:
        raise TimestampError(
            f"Svaret fra tidsstempeltjenesten {where} gjelder en annen forespørsel."
        )
    if info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampError(f"Tidsstempelet fra {where} gjelder andre data enn signaturen.")
    return answer.time_stamp_token()


# --- judging a token in a received pack ------------------------------------------------------


@dataclass(frozen=True)
class TimestampVerdict:
    ok: bool
    reason: str
    trusted_time: dt.datetime | None = None  # genTime, only when the token is good
    tsa: str | None = None  # the TSA certificate's subject


def judge_timestamp(
    signer: SignerInfo | None,
    *,
    tsa_roots: tuple[x509.Certificate, ...],
    require_timestamp: bool,
    now: dt.datetime,
    lang: str,
) -> TimestampVerdict:
    """The ``timestamp`` check. ``tsa_roots``: every root a TSA certificate may chain to."""
    if signer is None or signer.certificate is None:
        return TimestampVerdict(False, text("ts.unknown", lang))
    tokens = signer.timestamp_tokens
    if not tokens:
        return _untimestamped(signer, require_timestamp, now, lang)
    if len(tokens) != 1:
        return TimestampVerdict(False, text("ts.many", lang, count=len(tokens)))
    try:
        response = _as_response(tokens[0])
        info = response.tst_info
        algorithm_oid = info.message_imprint.hash_algorithm.dotted_string
        imprint = info.message_imprint.message
        gen_time = info.gen_time
        tsa = _tsa_subject(response)
    except Exception as exc:  # hostile token: any parse error means "cannot be read"
        return TimestampVerdict(False, text("ts.malformed", lang, detail=_detail(exc)))
    algorithm = _IMPRINT_ALGORITHMS.get(algorithm_oid)
    if algorithm is None:
        return TimestampVerdict(False, text("ts.algorithm", lang, algorithm=algorithm_oid[:40]))
    if hashlib.new(algorithm, signer.signature).digest() != imprint:
        return TimestampVerdict(False, text("ts.imprint", lang, tsa=tsa), tsa=tsa)
    if not tsa_roots:
        return TimestampVerdict(False, text("ts.no_roots", lang), tsa=tsa)
    problem = _verify_token(response, imprint, tsa_roots)
    if problem is not None:
        return TimestampVerdict(False, text("ts.untrusted", lang, tsa=tsa, detail=problem), tsa=tsa)
    gen_time = gen_time.astimezone(dt.UTC) if gen_time.tzinfo else gen_time.replace(tzinfo=dt.UTC)
    reason = text("ts.ok", lang, tsa=tsa, time=show_time(gen_time))
    return TimestampVerdict(True, reason, trusted_time=gen_time, tsa=tsa)


def _untimestamped(
    signer: SignerInfo, require_timestamp: bool, now: dt.datetime, lang: str
) -> TimestampVerdict:
    certificate = signer.certificate
    assert certificate is not None
    not_after = certificate.not_valid_after_utc
    claimed = show_time(signer.signing_time) if signer.signing_time else "–"
    if require_timestamp and now > not_after:
        return TimestampVerdict(
            False, text("ts.missing_expired", lang, not_after=show_time(not_after))
        )
    if require_timestamp:
        return TimestampVerdict(
            True, text("ts.none_still_valid", lang, not_after=show_time(not_after))
        )
    return TimestampVerdict(True, text("ts.none", lang, time=claimed))


def _as_response(token: bytes):
    """``rfc3161-client`` reads a ``TimeStampResp``; a signature carries the bare token, so it
    is wrapped in a granted status (RFC 3161 §2.4.2) exactly as a TSA would have sent it."""
    from asn1crypto import cms as asn1_cms
    from asn1crypto import tsp
    from rfc3161_client import decode_timestamp_response

    wrapped = tsp.TimeStampResp(
        {
            "status": {"status": "granted"},
            "time_stamp_token": asn1_cms.ContentInfo.load(token, strict=True),
        }
    ).dump()
    return decode_timestamp_response(wrapped)


def _tsa_subject(response) -> str:
    """The subject of the certificate that signed the token (from its signer id)."""
    (signer,) = list(response.signed_data.signer_infos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd serials in a hostile token: judged, not warned
        for raw in response.signed_data.certificates:
            cert = x509.load_der_x509_certificate(raw)
            if cert.serial_number == signer.serial_number and cert.issuer == signer.issuer:
                return cert.subject.rfc4514_string(_NAME_LABELS)[:200]
    return "?"


def _verify_token(response, imprint: bytes, roots: tuple[x509.Certificate, ...]) -> str | None:
    """None when the token's signature, its TSA certificate's chain (at ``genTime``) and the
    certificate's critical ``timeStamping`` EKU are in order; else what is wrong."""
    from rfc3161_client import VerifierBuilder

    builder = VerifierBuilder()
    for root in dict.fromkeys(roots):  # the builder refuses duplicates
        builder = builder.add_root_certificate(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            builder.build().verify(response, imprint)
    except Exception as exc:  # VerificationError, or ValueError from OpenSSL underneath
        return _detail(exc)
    return None


def _detail(exc: BaseException) -> str:
    shown = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return shown[:200]


def show_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
