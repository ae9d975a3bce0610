"""Is the signer's certificate revoked? OCSP first, the CRL as fallback (RFC 6960, RFC 5280).

Where to ask: the verifier's ``ocsp_url`` / ``crl_url`` (and CRLs it hands over, e.g. a
sandbox's ``crl.der``) override what the certificate names (AIA OCSP, CRL distribution
points). Addresses are only fetched for a certificate that already chains to a trusted
root: a forged certificate must not make the verifier fetch URLs of the forger's choosing.

What an answer is worth: it must be signed by the certificate's issuer (or, for OCSP, by a
responder certificate the issuer gave the ``OCSPSigning`` purpose), and it must speak for
the right moment. With a trusted signing time T (a good timestamp) an answer issued at or
after T says what the status was at T, so years-old archived CRLs still count; a revocation
after T is accepted with a note, as CAdES does. Without a timestamp the signature may have
been made at any time up to now, so only a current answer counts and any revocation
refuses. A CRL issued after the certificate expired proves nothing by *not* listing it
(issuers drop expired certificates), so it is not used for "good".

Policy: ``off`` (not checked), ``soft`` (no usable answer → accepted with a note), ``hard``
(no usable answer → refused). A revoked signer is refused in every mode but ``off``.

Fetches are cached for the process (``_CACHE``): ``archive verify-all`` asks once per
certificate and once per CRL, and an unreachable responder costs one timeout, not one per
pack.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from conformance.pack._text import join, text
from conformance.pack.timestamp import show_time, shown_url

if TYPE_CHECKING:
    from conformance.pack.verify import VerificationPolicy

MODES = ("off", "soft", "hard")
SKEW = dt.timedelta(minutes=5)
MAX_AGE_WITHOUT_NEXT_UPDATE = dt.timedelta(days=1)
MAX_OCSP_BYTES = 64 << 10
MAX_CRL_BYTES = 16 << 20
_CACHE_TTL_S = 300.0
_FAILURE_TTL_S = 60.0
_CACHE: dict[tuple[str, str, bytes], tuple[float, bytes | str]] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class RevocationVerdict:
    ok: bool
    reason: str


@dataclass(frozen=True)
class _Answer:
    """What one authentic OCSP response or CRL says about the certificate."""

    source: str  # "OCSP" or "CRL"
    where: str  # the URL asked, or "fil"
    status: str  # "good", "revoked" or "unknown"
    issued: dt.datetime  # thisUpdate
    next_update: dt.datetime | None
    revoked_at: dt.datetime | None = None
    reason: str | None = None


class _Unusable(Exception):
    """This source gave no answer worth having. ``key`` names the reason among the texts
    (``rev.why.*``); otherwise the message is a plain detail such as ``HTTP 503``."""

    def __init__(self, detail: str, *, key: str | None = None) -> None:
        super().__init__(detail)
        self.key = key

    def shown(self, lang: str) -> str:
        return text(f"rev.why.{self.key}", lang) if self.key else str(self)


def judge_revocation(
    certificate: x509.Certificate | None,
    carried: tuple[x509.Certificate, ...],
    *,
    certificate_trusted: bool,
    trusted_time: dt.datetime | None,
    policy: VerificationPolicy,
    now: dt.datetime,
) -> RevocationVerdict:
    """The ``revocation`` check for the signer's ``certificate``; ``carried`` are the
    certificates inside the signature, ``trusted_time`` the timestamp's ``genTime``."""
    lang = policy.lang
    if certificate is None:
        return RevocationVerdict(False, text("rev.unknown", lang))
    if policy.revocation == "off":
        return RevocationVerdict(True, text("rev.off", lang))
    if not certificate_trusted:
        return RevocationVerdict(True, text("rev.not_trusted", lang))
    problems: list[str] = []
    answer = None
    issuer = _issuer_of(certificate, (*carried, *policy.trust_roots))
    if issuer is None:
        problems.append(text("rev.no_issuer", lang))
    else:
        answer = _first_usable_answer(certificate, issuer, trusted_time, policy, now, problems)
    if answer is not None and answer.status == "revoked":
        return _revoked(answer, trusted_time, lang)
    if answer is not None:
        shown = {"source": answer.source, "where": answer.where, "issued": show_time(answer.issued)}
        return RevocationVerdict(True, text("rev.good", lang, **shown))
    key = "rev.unavailable_hard" if policy.revocation == "hard" else "rev.unavailable_soft"
    return RevocationVerdict(policy.revocation != "hard", text(key, lang, problems=join(problems)))


def _revoked(answer: _Answer, trusted_time: dt.datetime | None, lang: str) -> RevocationVerdict:
    assert answer.revoked_at is not None
    shown = {
        "source": answer.source,
        "where": answer.where,
        "revoked_at": show_time(answer.revoked_at),
        "reason": answer.reason or "unspecified",
    }
    if trusted_time is None:
        return RevocationVerdict(False, text("rev.revoked_untimestamped", lang, **shown))
    shown["time"] = show_time(trusted_time)
    if answer.revoked_at > trusted_time:
        return RevocationVerdict(True, text("rev.revoked_after", lang, **shown))
    return RevocationVerdict(False, text("rev.revoked", lang, **shown))


def _first_usable_answer(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    trusted_time: dt.datetime | None,
    policy: VerificationPolicy,
    now: dt.datetime,
    problems: list[str],
) -> _Answer | None:
    """OCSP responders first, then CRLs; the first answer that settles the status."""
    lang = policy.lang
    attempts = [
        *(("OCSP", url, None) for url in _ocsp_urls(certificate, policy)),
        *(("CRL", text("rev.file", lang), crl) for crl in policy.crls),
        *(("CRL", url, None) for url in _crl_urls(certificate, policy)),
    ]
    if not attempts:
        problems.append(text("rev.no_sources", lang))
    for source, where, given_crl in attempts:
        shown_where = shown_url(where) if given_crl is None else where
        try:
            if source == "OCSP":
                answer = _ask_ocsp(certificate, issuer, where, policy.revocation_timeout)
            else:
                crl = given_crl or _load_crl(_fetch("GET", where, b"", policy.revocation_timeout))
                answer = _read_crl(crl, certificate, issuer, shown_where)
        except _Unusable as exc:
            detail = exc.shown(lang)
            problems.append(
                text("rev.failed", lang, source=source, where=shown_where, detail=detail)
            )
            continue
        problem = _why_not_usable(answer, certificate, trusted_time, now, lang)
        if problem is None:
            return answer
        problems.append(problem)
    return None


def _why_not_usable(
    answer: _Answer,
    certificate: x509.Certificate,
    trusted_time: dt.datetime | None,
    now: dt.datetime,
    lang: str,
) -> str | None:
    shown = {"source": answer.source, "where": answer.where, "issued": show_time(answer.issued)}
    if answer.status == "revoked":
        return None  # a revocation is final, however old the answer that reports it
    if answer.status != "good":
        return text("rev.status_unknown", lang, **shown)
    if trusted_time is not None:
        # Issued at or after the trusted signing time: it speaks for that moment.
        if answer.issued < trusted_time - SKEW:
            return text("rev.too_old", lang, time=show_time(trusted_time), **shown)
    else:
        # No trusted time: the signature may be from any moment up to now.
        expires = answer.next_update or answer.issued + MAX_AGE_WITHOUT_NEXT_UPDATE
        if answer.issued > now + SKEW or expires < now - SKEW:
            return text("rev.too_old", lang, time=show_time(now), **shown)
    if answer.source == "CRL" and answer.issued > certificate.not_valid_after_utc + SKEW:
        return text("rev.expired_off_crl", lang, **shown)
    return None


# --- where to ask --------------------------------------------------------------------------


def _http_urls(urls: list[str]) -> list[str]:
    return [u for u in dict.fromkeys(urls) if urlsplit(u).scheme in ("http", "https")][:3]


def _ocsp_urls(certificate: x509.Certificate, policy: VerificationPolicy) -> list[str]:
    if policy.ocsp_url:
        return [policy.ocsp_url]
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return _http_urls(
        [
            d.access_location.value
            for d in aia.value
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        ]
    )


def _crl_urls(certificate: x509.Certificate, policy: VerificationPolicy) -> list[str]:
    if policy.crl_url:
        return [policy.crl_url]
    if policy.crls:
        return []  # the verifier handed over the CRLs to use
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return []
    return _http_urls(
        [
            name.value
            for point in points.value
            for name in point.full_name or ()
            if isinstance(name, x509.UniformResourceIdentifier)
        ]
    )


def _issuer_of(
    certificate: x509.Certificate, candidates: tuple[x509.Certificate, ...]
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None


# --- fetching ------------------------------------------------------------------------------


def _fetch(method: str, url: str, body: bytes, timeout: float) -> bytes:
    """The body of a 200 answer, cached for the process; ``_Unusable`` otherwise."""
    key = (method, url, body)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None and cached[0] > time.monotonic():
        if isinstance(cached[1], str):
            raise _Unusable(cached[1])
        return cached[1]
    try:
        result: bytes | str = _download(method, url, body, timeout)
        ttl = _CACHE_TTL_S
    except _Unusable as exc:
        result, ttl = str(exc), _FAILURE_TTL_S
    with _CACHE_LOCK:
        _CACHE[key] = (time.monotonic() + ttl, result)
    if isinstance(result, str):
        raise _Unusable(result)
    return result


def _download(method: str, url: str, body: bytes, timeout: float) -> bytes:
    import httpx

    cap = MAX_OCSP_BYTES if method == "POST" else MAX_CRL_BYTES
    headers = {"Content-Type": "application/ocsp-request"} if method == "POST" else {}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=3) as client,
            client.stream(method, url, content=body or None, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise _Unusable(f"HTTP {response.status_code}")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > cap:
                    raise _Unusable(f"> {cap} byte")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise _Unusable(type(exc).__name__) from exc


def clear_cache() -> None:
    """Forget fetched answers (tests that revoke between two verifications)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --- OCSP ------------------------------------------------------------------------------------


def _ask_ocsp(
    certificate: x509.Certificate, issuer: x509.Certificate, url: str, timeout: float
) -> _Answer:
    where = shown_url(url)
    # No nonce: the request stays the same for a certificate, so its answer can be cached
    # across packs; freshness is judged from thisUpdate instead (see _why_not_usable).
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA1())  # SHA-1 CertID: what all answer
        .build()
    )
    raw = _fetch("POST", url, request.public_bytes(serialization.Encoding.DER), timeout)
    try:
        response = ocsp.load_der_ocsp_response(raw)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise _Unusable(response.response_status.name.lower())
        _check_ocsp_signature(response, issuer)
        single = next(
            (
                r
                for r in response.responses
                if r.serial_number == certificate.serial_number
                and r.issuer_key_hash == request.issuer_key_hash
                and r.issuer_name_hash == request.issuer_name_hash
            ),
            None,
        )
        if single is None:
            raise _Unusable("other_certificate", key="other_certificate")
        status = {
            ocsp.OCSPCertStatus.GOOD: "good",
            ocsp.OCSPCertStatus.REVOKED: "revoked",
        }.get(single.certificate_status, "unknown")
        reason = single.revocation_reason
        return _Answer(
            source="OCSP",
            where=where,
            status=status,
            issued=single.this_update_utc,
            next_update=single.next_update_utc,
            revoked_at=single.revocation_time_utc,
            reason=reason.name if reason else None,
        )
    except _Unusable:
        raise
    except Exception as exc:  # a hostile or broken response: ValueError and kin
        raise _Unusable(type(exc).__name__, key="malformed") from exc


def _check_ocsp_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    """Signed by the issuer itself, or by a responder certificate the issuer signed for
    this purpose (``OCSPSigning``)."""
    signer = None
    if _responder_is(response, issuer):
        signer = issuer
    else:
        for candidate in response.certificates:
            if not _responder_is(response, candidate):
                continue
            try:
                candidate.verify_directly_issued_by(issuer)
                usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as exc:
                raise _Unusable("not_issuer", key="not_issuer") from exc
            if ExtendedKeyUsageOID.OCSP_SIGNING not in usage.value:
                raise _Unusable("not_issuer", key="not_issuer")
            signer = candidate
    if signer is None:
        raise _Unusable("not_issuer", key="not_issuer")
    if not _signature_valid(
        signer.public_key(),
        response.signature,
        response.tbs_response_bytes,
        response.signature_hash_algorithm,
    ):
        raise _Unusable("bad_signature", key="bad_signature")


def _responder_is(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == certificate.subject
    key_hash = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
    return response.responder_key_hash == key_hash


def _signature_valid(
    key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None
) -> bool:
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


# --- CRL ---------------------------------------------------------------------------------------


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM bytes (``ValueError`` when it is neither)."""
    if b"-----BEGIN X509 CRL-----" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        return load_crl(data)
    except ValueError as exc:
        raise _Unusable("not_crl", key="not_crl") from exc


def _read_crl(
    crl: x509.CertificateRevocationList,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    where: str,
) -> _Answer:
    try:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
            raise _Unusable("not_issuer", key="not_issuer")
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        issued, next_update = crl.last_update_utc, crl.next_update_utc
        if entry is None:
            return _Answer("CRL", where, "good", issued, next_update)
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        return _Answer(
            "CRL", where, "revoked", issued, next_update, entry.revocation_date_utc, reason
        )
    except _Unusable:
        raise
    except Exception as exc:  # a hostile CRL: ValueError, UnsupportedAlgorithm …
        raise _Unusable(type(exc).__name__, key="malformed") from exc
