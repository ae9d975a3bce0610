"""The API gateway in front of KFR, as in Bits' test environment (preprod).

Bits' preprod is not KFR's application alone: an API gateway receives every request
first, and some answers come from it, in its own shapes, before KFR sees anything. The
sandbox plays that gateway for requests under ``/kar-ws/api/v1/`` (not the OpenAPI file),
in this order:

1. **Firewall** (``Faults.firewall_rate`` / ``firewall_next``): ``403`` with
   ``Content-Type: text/html; charset=utf-8`` and ``Connection: close``, a
   "Request Rejected" page with a support ID — a web application firewall's refusal,
   not KFR's KFR-002/KFR-003.
2. **Throttling** (``throttle_rate`` / ``throttle_next``): ``429`` with
   ``Retry-After: <retry_after_s>`` and the gateway's JSON
   ``{"statusCode": 429, "message": "Rate limit is exceeded. Try again in N seconds."}``.
3. **Authentication**, only with ``SandboxSettings(realistic=True)``: a missing, malformed,
   expired, wrongly signed or revoked token gets ``401`` with the published spec's
   ``ErrorResponse401``, ``{"statusCode": 401, "message": "Unauthorized. Access token is
   missing or invalid"}`` — no ``errorCode``. Scope, fid and everything else is still
   KFR's, with KFR's codes. Without ``realistic`` KFR itself answers KFR-001 as before.
   The ``skip_auth`` misbehaviour lets everything through here too.
4. **Errors towards KFR** (``gateway_error_rate`` / ``gateway_error_next``): ``502``,
   ``503`` or ``504`` (drawn from ``gateway_error_statuses``) with the gateway's JSON
   ``{"statusCode": N, "message": "..."}`` or an HTML error page
   (``gateway_error_body``: ``json``, ``html`` or ``mixed``).

None of these reaches KFR, so none changes KFR's state. Gateway answers carry no
``CorrelationID`` header (the gateway does not know KFR's headers): a client tells who
answered from the shape — KFR's JSON has ``errorCode``, the gateway's has ``statusCode``,
a firewall or proxy page is HTML. The gateway faults work in both modes; only the
authentication step needs ``realistic``. A request's upload body is read and discarded
before the answer (up to ``DRAIN_CAP``; beyond that the connection is closed), so a client
that sends its whole body before reading sees the answer instead of a reset.

The control endpoint ``POST /_sandbox/revoke-tokens`` (loopback only) revokes every access
token issued so far; ``RunningSandbox.revoke_tokens()`` does the same in-process.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conformance.sandbox.context import GatewayError, SandboxContext
from conformance.sandbox.maskinporten import InvalidToken
from conformance.sandbox.settings import is_loopback_host

log = logging.getLogger("conformance.sandbox")

DRAIN_CAP = 16 * 1024 * 1024  # more than a 10 MB batch with its form around it
UNAUTHORIZED_MESSAGE = "Unauthorized. Access token is missing or invalid"
GATEWAY_MESSAGES = {
    502: "Bad gateway. The backend service did not answer correctly.",
    503: "Service unavailable. The backend service is temporarily unavailable.",
    504: "Gateway timeout. The backend service did not answer in time.",
}
REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

_ERROR_PAGE = """<!DOCTYPE html>
<html><head><title>{status} {reason}</title></head>
<body><center><h1>{status} {reason}</h1></center><hr><center>gateway</center></body></html>
"""
_FIREWALL_PAGE = """<!DOCTYPE html>
<html><head><title>Request Rejected</title></head>
<body>The requested URL was rejected. Please consult with your administrator.<br><br>
Your support ID is: {support_id}<br><br>
<a href="javascript:history.back();">[Go Back]</a></body></html>
"""


def _headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def gateway_json(status: int, message: str) -> bytes:
    return json.dumps({"statusCode": status, "message": message}).encode()


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _expects_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


async def _drain(receive: Receive) -> bool:
    """Read and discard the request body; False when it is larger than DRAIN_CAP."""
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        total += len(message.get("body", b""))
        if total > DRAIN_CAP:
            return False
        if not message.get("more_body", False):
            return True


class Gateway:
    """Answers in the gateway's name, or lets the request through to KFR."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    async def intercept(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Answer the request if the gateway would; returns what it answered (for the log)
        or None when the request goes on to KFR."""
        fault_state = self.ctx.fault_state
        edge = fault_state.draw_edge()
        if edge == "firewall":
            await self._firewall(scope, receive, send)
            return "firewall"
        if edge == "throttle":
            await self._throttled(scope, receive, send)
            return "throttled"
        if not self._authenticated(scope):
            await self._answer(
                scope,
                receive,
                send,
                401,
                gateway_json(401, UNAUTHORIZED_MESSAGE),
                "application/json",
            )
            return "unauthorized"
        error = fault_state.draw_gateway_error()
        if error is not None:
            await self._gateway_error(scope, receive, send, error)
            return f"error {error.status}"
        return None

    def _authenticated(self, scope: Scope) -> bool:
        ctx = self.ctx
        if not ctx.settings.realistic or ctx.misbehaves("skip_auth"):
            return True
        token = _bearer_token(scope)
        if token is None:
            return False
        try:
            ctx.tokens.verify(token)
        except InvalidToken:
            return False
        return True

    async def _firewall(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = _FIREWALL_PAGE.format(support_id=secrets.randbelow(10**19)).encode()
        await self._answer(scope, receive, send, 403, page, "text/html; charset=utf-8", close=True)

    async def _throttled(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = self.ctx.faults.retry_after_s
        body = gateway_json(429, f"Rate limit is exceeded. Try again in {seconds} seconds.")
        await self._answer(
            scope,
            receive,
            send,
            429,
            body,
            "application/json",
            extra=[("Retry-After", str(seconds))],
        )

    async def _gateway_error(
        self, scope: Scope, receive: Receive, send: Send, error: GatewayError
    ) -> None:
        if error.html:
            page = _ERROR_PAGE.format(status=error.status, reason=REASONS[error.status])
            await self._answer(
                scope, receive, send, error.status, page.encode(), "text/html; charset=utf-8"
            )
        else:
            body = gateway_json(error.status, GATEWAY_MESSAGES[error.status])
            await self._answer(scope, receive, send, error.status, body, "application/json")

    @staticmethod
    async def _answer(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        body: bytes,
        content_type: str,
        *,
        extra: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        if _expects_body(scope) and not await _drain(receive):
            close = True
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *extra,
        ]
        if close:
            headers.append(("Connection", "close"))
        await send({"type": "http.response.start", "status": status, "headers": _headers(headers)})
        await send({"type": "http.response.body", "body": body})


def _control_json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data).encode(), status_code=status, media_type="application/json")


async def revoke_tokens_endpoint(request: Request) -> Response:
    """POST revokes every access token issued so far; new tokens work."""
    client = request.client
    if client is None or not is_loopback_host(client.host):
        return _control_json({"error": "Kun tilgjengelig fra loopback."}, 403)
    ctx: SandboxContext = request.app.state.ctx
    count = ctx.tokens.revoke_all()
    log.info("access tokens revoked (%d issued by this process)", count)
    return _control_json({"revoked": count})
