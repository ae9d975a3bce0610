"""The sandbox as one ASGI app: Maskinporten and KFR routers plus the control endpoint.

``SandboxMiddleware`` wraps everything: it logs one line per request (method, path,
status, CorrelationID — never a token), lets the API gateway (``gateway.py``) answer first
for KFR requests, injects KFR's own faults, and turns any unexpected exception into KFR's
JSON 500 (KFR-007) so no traceback reaches a client.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conformance.errors import SandboxError
from conformance.sandbox import kfr, maskinporten, pki_http
from conformance.sandbox.context import KFR_PREFIX, MASKINPORTEN_PREFIX, SandboxContext
from conformance.sandbox.gateway import Gateway, revoke_tokens_endpoint
from conformance.sandbox.pki import PKI_PREFIX
from conformance.sandbox.request_log import RequestLogMiddleware
from conformance.sandbox.settings import Faults, is_loopback_host

log = logging.getLogger("conformance.sandbox")
_KFR_PATH = KFR_PREFIX + "/"
_MP_PATH = MASKINPORTEN_PREFIX + "/"
_NO_FAULTS = (_KFR_PATH + "openapi.yaml",)


def _control_json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
    )


def _from_loopback(request: Request) -> bool:
    client = request.client
    return client is not None and is_loopback_host(client.host)


async def faults_endpoint(request: Request) -> Response:
    """GET shows the current faults; PUT replaces them (fields left out get defaults)."""
    ctx: SandboxContext = request.app.state.ctx
    if not _from_loopback(request):
        return _control_json({"error": "Kun tilgjengelig fra loopback."}, 403)
    if request.method == "PUT":
        try:
            data = json.loads(await request.body() or b"{}")
            ctx.fault_state.set(Faults.from_dict(data))
        except (ValueError, TypeError) as exc:
            return _control_json({"error": f"Ugyldig JSON: {exc}"}, 400)
        except SandboxError as exc:
            return _control_json({"error": exc.diagnostics()}, 400)
    return _control_json(ctx.fault_state.current.to_dict())


async def status_endpoint(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    if not _from_loopback(request):
        return _control_json({"error": "Kun tilgjengelig fra loopback."}, 403)
    return _control_json(
        {
            "kfr_base_url": ctx.base_url + KFR_PREFIX,
            "maskinporten_issuer": ctx.issuer,
            "realistic": ctx.settings.realistic,
            "pending_batches": ctx.store.pending_count(),
            "relationships": ctx.store.relationship_count(),
        }
    )


def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    path = request.url.path
    if path.startswith(_MP_PATH):
        body = {
            "error": "invalid_request",
            "error_description": f"HTTP {status} for {request.method} {path}",
        }
        return _control_json(body, status)
    code = "KFR-007" if status >= 500 else "KFR-004"
    detail = {404: "unknown resource", 405: "method not allowed"}.get(status)
    return kfr.error_response(status, code, request.headers.get("correlationid"), detail)


def _server_error(request: Request, exc: Exception) -> Response:
    return kfr.error_response(500, "KFR-007", request.headers.get("correlationid"))


class SandboxMiddleware:
    def __init__(self, app: ASGIApp, ctx: SandboxContext) -> None:
        self.app = app
        self.ctx = ctx
        self.gateway = Gateway(ctx)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        correlation_id = "-"
        for name, value in scope["headers"]:
            if name == b"correlationid":
                correlation_id = value.decode("latin-1")[:100]
                break
        status: list[int | str] = ["-"]

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # Date from the sandbox's clock (uvicorn's own Date header is off), so a
                # clock_offset_s fault shows in Date as it would on a server with a wrong clock.
                date = email.utils.formatdate(self.ctx.now(), usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
            await send(message)

        try:
            await self._handle(scope, receive, send, send_logged, path, status)
        except Exception:
            # Starlette has already answered KFR-007 when it could; this is for the log.
            log.exception(
                "unexpected error in %s %s (CorrelationID=%s)",
                scope["method"],
                path,
                correlation_id,
            )
            if status[0] == "-":
                response = kfr.error_response(500, "KFR-007", None)
                await response(scope, receive, send_logged)
        finally:
            log.info(
                "%s %s %s CorrelationID=%s %.1fms",
                scope["method"],
                path,
                status[0],
                correlation_id,
                (time.perf_counter() - started) * 1000,
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        send_logged: Send,
        path: str,
        status: list[int | str],
    ) -> None:
        is_kfr = path.startswith(_KFR_PATH) and path not in _NO_FAULTS
        fault_state = self.ctx.fault_state
        if is_kfr or path.startswith(_MP_PATH):
            latency = fault_state.faults.latency_ms
            if latency:
                await asyncio.sleep(latency / 1000)
        if is_kfr:
            answered = await self.gateway.intercept(scope, receive, send_logged)
            if answered is not None:
                status[0] = f"{status[0]} (gateway: {answered})"
                return
            outcome = fault_state.draw()
            if outcome == "drop":
                status[0] = "dropped"
                await self._drop(send)
                return
            if outcome is not None:
                detail = "injected fault" if outcome == 500 else "gateway timeout (injected fault)"
                headers = dict(scope["headers"])
                cid = headers.get(b"correlationid", b"").decode("latin-1") or None
                response = kfr.error_response(outcome, "KFR-007", cid, detail)
                await response(scope, receive, send_logged)
                return
        await self.app(scope, receive, send_logged)

    @staticmethod
    async def _drop(send: Send) -> None:
        """Close the connection without answering. uvicorn's h11 protocol hands the app
        a bound method of its request cycle, which owns the transport."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:  # not uvicorn's h11 cycle: the best we can do is an error
            raise ConnectionAbortedError("drop requested but the transport is not reachable")
        transport.close()
        # Let uvicorn notice the lost connection, so it does not try to send a 500.
        for _ in range(50):
            if getattr(cycle, "disconnected", False):
                break
            await asyncio.sleep(0.001)


def create_app(ctx: SandboxContext) -> ASGIApp:
    app = Starlette(
        routes=[
            Mount(MASKINPORTEN_PREFIX, routes=maskinporten.ROUTES),
            Mount(KFR_PREFIX, routes=kfr.ROUTES),
            Mount(PKI_PREFIX, routes=pki_http.ROUTES),
            Route("/_sandbox/faults", faults_endpoint, methods=["GET", "PUT"]),
            Route("/_sandbox/status", status_endpoint, methods=["GET"]),
            Route("/_sandbox/revoke-tokens", revoke_tokens_endpoint, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.ctx = ctx
    # Inside SandboxMiddleware: its "drop" fault needs uvicorn's own send callable.
    return SandboxMiddleware(RequestLogMiddleware(app, ctx), ctx)
