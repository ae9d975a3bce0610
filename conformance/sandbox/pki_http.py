"""The sandbox CA's public services over HTTP, mounted at ``/_pki``:

    POST /_pki/tsa            RFC 3161 time stamping (application/timestamp-query → -reply)
    POST /_pki/ocsp           RFC 6960 OCSP (application/ocsp-request → -response)
    GET  /_pki/ocsp/{base64}  the same, GET form (RFC 6960 appendix A.1)
    GET  /_pki/crl            the current CRL, DER (application/pkix-crl)
    GET  /_pki/ca.crt         the CA certificate, DER (what the AIA ``caIssuers`` names)

OCSP answers are signed by the CA itself (no delegated responder), GOOD for any serial the
CA has not revoked, REVOKED with the time and reason from ``TestCA.revocations()``, and
UNKNOWN for a certificate of another issuer. Revocations are read on every request, so
``kfr-conformance sandbox revoke`` in another process takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.sandbox.pki import TestCA

MAX_OCSP_REQUEST_BYTES = 4096
MAX_TSA_REQUEST_BYTES = 4096
OCSP_VALIDITY = dt.timedelta(hours=1)


class _TooLarge(Exception):
    pass


async def _body(request: Request, cap: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise _TooLarge
    return bytes(body)


def _ca(request: Request) -> TestCA:
    return request.app.state.ctx.ca


async def timestamp_endpoint(request: Request) -> Response:
    from conformance.sandbox import tsa  # asn1crypto: loaded when a timestamp is asked for

    try:
        body = await _body(request, MAX_TSA_REQUEST_BYTES)
    except _TooLarge:
        return Response(b"", status_code=413)
    answer = tsa.respond(body, _ca(request).tsa)
    return Response(answer, media_type="application/timestamp-reply")


def answer_ocsp(ca: TestCA, request_der: bytes, *, now: dt.datetime | None = None) -> bytes:
    """The DER OCSP response to a DER OCSP request (one certificate per request)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        name_hash, key_hash = _issuer_hashes(ca.cert, algorithm)
        serial = request.serial_number
        nonces = [ext.value for ext in request.extensions if isinstance(ext.value, x509.OCSPNonce)]
    except (ValueError, UnsupportedAlgorithm):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    revoked = None
    if (request.issuer_name_hash, request.issuer_key_hash) != (name_hash, key_hash):
        status = ocsp.OCSPCertStatus.UNKNOWN
    else:
        revoked = ca.revocations().get(serial)
        status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=serial,
        algorithm=algorithm,
        cert_status=status,
        this_update=moment,
        next_update=moment + OCSP_VALIDITY,
        revocation_time=revoked.revoked_at if revoked else None,
        revocation_reason=revoked.reason if revoked else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert)
    for nonce in nonces[:1]:  # echoed, so a client can tell the answer is for its request
        builder = builder.add_extension(nonce, critical=False)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _issuer_hashes(
    ca_cert: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    """CertID's issuerNameHash and issuerKeyHash for this CA (RFC 6960 §4.1.1): the hash of
    the DER subject name and of the public key's bits (for RSA, the PKCS#1 structure)."""
    name = hashes.Hash(algorithm)
    name.update(ca_cert.subject.public_bytes())
    key = hashes.Hash(algorithm)
    key.update(
        ca_cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
    )
    return name.finalize(), key.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def _ocsp_response(body: bytes, ca: TestCA) -> Response:
    return Response(answer_ocsp(ca, body), media_type="application/ocsp-response")


async def ocsp_post(request: Request) -> Response:
    try:
        body = await _body(request, MAX_OCSP_REQUEST_BYTES)
    except _TooLarge:
        return Response(b"", status_code=413)
    return _ocsp_response(body, _ca(request))


async def ocsp_get(request: Request) -> Response:
    encoded = unquote(request.path_params["encoded"])
    if len(encoded) > MAX_OCSP_REQUEST_BYTES * 2:
        return Response(b"", status_code=414)
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        body = b""
    return _ocsp_response(body, _ca(request))


async def crl_endpoint(request: Request) -> Response:
    crl = _ca(request).crl().public_bytes(serialization.Encoding.DER)
    return Response(crl, media_type="application/pkix-crl")


async def ca_endpoint(request: Request) -> Response:
    der = _ca(request).cert.public_bytes(serialization.Encoding.DER)
    return Response(der, media_type="application/pkix-cert")


ROUTES = [
    Route("/tsa", timestamp_endpoint, methods=["POST"]),
    Route("/ocsp", ocsp_post, methods=["POST"]),
    Route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"]),
    Route("/crl", crl_endpoint, methods=["GET"]),
    Route("/ca.crt", ca_endpoint, methods=["GET"]),
]
