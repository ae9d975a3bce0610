"""The gateway as one ASGI app: forward, check, record — and the loopback control API.

Forwarding goes through aiohttp's client (:class:`conformance.gateway.network.UpstreamClient`),
set up as a proxy needs it: each request passed on as it came (only ``Host`` and hop-by-hop
headers change) and each answer back as it came, bodies streamed both ways and never
decoded, no cookies, redirects or retries of its own.

For every request: the contract rules run (:class:`conformance.contract.ContractSession`),
an injection may answer instead of KFR (:mod:`conformance.gateway.injections`), and the
exchange is recorded redacted in the shape of ``docs/architecture.md`` plus ``source``,
``answered_by``, ``injected``, ``token_claims`` and ``contract``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from conformance.contract import (
    ContractSession,
    RequestFacts,
    ResponseFacts,
    Verdict,
    token_claims,
)
from conformance.errors import ConformanceError, UsageError
from conformance.evidence import (
    BodyCapture,
    body_record,
    operation_for,
    redact_headers,
    redact_text,
    token_fingerprint,
)
from conformance.gateway.injections import Injection, InjectionTracker, injected_response
from conformance.gateway.network import UPSTREAM_ERRORS, UpstreamClient, describe_error
from conformance.gateway.recorder import GatewayRecorder
from conformance.gateway.settings import KFR_PREFIX, GatewaySettings
from conformance.sandbox.settings import is_loopback_host

__all__ = ["CONTROL_PREFIX", "GatewayApp", "GatewayState", "upstream_proxy", "upstream_tls"]

CONTROL_PREFIX = "/_gateway"
# Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection, not to the message.
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
_INLINE_CHECK_BYTES = 64 * 1024   # larger batch bodies are checked on a worker thread
_BUFFER_CAP = 64 * 1024 * 1024    # an injection reads at most this much before deciding
_PREFETCH_CAP = 1024 * 1024       # a non-batch body larger than this streams through
_SMALL_ANSWER = 64 * 1024         # answers up to this size are recorded before they are passed on
UPSTREAM_CONNECTIONS = 8          # at most this many requests are with KFR at once; more wait


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def upstream_tls(settings: GatewaySettings) -> ssl.SSLContext:
    """The system's trust store plus, when given, the bank's bundle (e.g. the CA of a
    TLS-inspecting proxy, or the sandbox CA for an https sandbox)."""
    context = ssl.create_default_context()
    bundle = settings.upstream_ca_bundle
    if bundle is not None:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UsageError(f"CA-bundelen {bundle} kan ikke leses som PEM-sertifikater.") from exc
    return context


def upstream_proxy(url: str) -> str | None:
    """The proxy from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY for the upstream, unless NO_PROXY
    names it or it is on loopback (a bank behind a proxy reaches Bits' test environment
    the way its runs do)."""
    env = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback_host(host) or urllib.request.proxy_bypass_environment(host, env):
        return None
    proxy = env.get(parts.scheme) or env.get("all")
    return proxy if not proxy or "://" in proxy else f"http://{proxy}"


@dataclass
class GatewayState:
    """What the app and the Python API share. ``case_id`` labels the exchanges that follow
    (the runner names the row it is performing)."""

    settings: GatewaySettings
    session: ContractSession
    recorder: GatewayRecorder
    tracker: InjectionTracker
    case_id: str | None = None
    tls: ssl.SSLContext | None = None
    upstream: UpstreamClient | None = None

    def __post_init__(self) -> None:
        # Parsed once, not per request; the Host header as httpx (a run's client) writes it.
        self.upstream_netloc: bytes = httpx.URL(self.settings.upstream_url).netloc
        self.upstream_base: str = self.settings.upstream_url.rstrip("/")

    def open_upstream(self) -> UpstreamClient:
        """Opened on the gateway's own event loop, where its connections live."""
        if self.upstream is None:
            self.upstream = UpstreamClient(
                self.upstream_base, tls=self.tls or upstream_tls(self.settings),
                proxy=upstream_proxy(self.settings.upstream_url),
                timeout_s=self.settings.upstream_timeout_s,
                # One bank's core system needs no more; more requests wait for a free one.
                connections=UPSTREAM_CONNECTIONS,
            )
        self.upstream.open()
        return self.upstream


@dataclass
class _Body:
    """The request body as it passes: a capture for the evidence, the whole of it for a
    batch (the contract rules read the file), and its SHA-256 (a batch's identity)."""

    keep_limit: int
    capture: BodyCapture = field(default_factory=BodyCapture)
    kept: bytearray = field(default_factory=bytearray)
    sha256: Any = field(default_factory=hashlib.sha256)
    complete: bool = False
    disconnected: bool = False

    def feed(self, chunk: bytes) -> None:
        self.capture.feed(chunk)
        self.sha256.update(chunk)
        if len(self.kept) <= self.keep_limit:
            self.kept += chunk[: self.keep_limit + 1 - len(self.kept)]

    async def stream(self, receive: Receive) -> AsyncIterator[bytes]:
        while not self.complete:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ConnectionAbortedError("the core system closed the connection mid-request")
            chunk = message.get("body", b"")
            self.complete = not message.get("more_body", False)
            if chunk:
                self.feed(chunk)
                yield chunk

    async def prefetch(self, receive: Receive, cap: int) -> bytes | AsyncIterator[bytes]:
        """The whole body when it is at most ``cap`` bytes (then the request is known in
        full before it is forwarded); otherwise what was read, followed by the rest as it
        comes — never a truncated body."""
        chunks: list[bytes] = []
        rest = self.stream(receive)
        async for chunk in rest:
            chunks.append(chunk)
            if self.capture.size > cap:
                break
        if self.complete:
            return b"".join(chunks)

        async def joined() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk
            async for chunk in rest:
                yield chunk
        return joined()


class GatewayApp:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.control = Router(routes=_control_routes(state))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            client = scope.get("client")
            if client is None or not is_loopback_host(client[0]):
                await JSONResponse({"error": "Kun tilgjengelig fra loopback."}, 403)(scope, receive, send)
                return
            await self.control(scope, receive, send)
            return
        try:
            await self._proxy(scope, receive, send)
        finally:
            self.state.recorder.encode_pending()   # the answer is out: now the journal's turn

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.state.open_upstream()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.state.upstream is not None:
                    await self.state.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---------------------------------------------------------------- forwarding

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        at, t0 = time.time(), time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        relative = path[len(KFR_PREFIX):] if path.startswith(KFR_PREFIX + "/") else path
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or path.encode("utf-8")
        target = raw_path[len(KFR_PREFIX):] if raw_path.startswith(KFR_PREFIX.encode() + b"/") else raw_path
        target += b"?" + query if query else b""
        url = state.upstream_base + target.decode("latin-1")
        headers, seen, has_body = _request_headers(scope["headers"])
        forwarded_headers = [(b"host", state.upstream_netloc), *headers]
        operation = operation_for(method, relative)
        claims, problem = token_claims(seen.get("authorization"))
        is_batch = operation == "batch"
        body = _Body(keep_limit=state.session.max_batch_bytes if is_batch else 0)
        record = _Exchange(state, method, url, forwarded_headers, claims, at, t0, operation)

        def facts() -> RequestFacts:
            return RequestFacts(
                method=method, path=relative, operation=operation, at=at,
                correlation_id=seen.get("correlationid"), customer_id=seen.get("customerid"),
                content_type=seen.get("content-type"), claims=claims, token_problem=problem,
                body=bytes(body.kept) if is_batch and body.complete else None,
                body_size=body.capture.size,
                body_sha256=body.sha256.hexdigest() if body.complete else None,
            )

        # A batch streams through (up to 10 MB); anything else is read first, so its facts
        # are known before it is forwarded — and so is any batch an injection may answer.
        content: Any = b""
        if has_body and (not is_batch or state.tracker.armed_for(operation)):
            content = await body.prefetch(receive, _BUFFER_CAP if is_batch else _PREFETCH_CAP)
        elif has_body:
            content = body.stream(receive)
        else:
            body.complete = True
        request_facts: RequestFacts | None = None
        verdicts: list[Verdict] = []
        if body.complete:
            request_facts = facts()
            strike = state.tracker.strike(request_facts)
            if strike is not None:
                verdicts = await self._check(request_facts)
                await self._answer_injected(send, record, strike, request_facts, verdicts, body)
                return

        # aiohttp frames the body: one read whole gets its length (unless it came with one),
        # one still streaming in without a length goes on chunked, as it came.
        upstream_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in forwarded_headers]
        t_up = time.perf_counter()
        forwarding = asyncio.ensure_future(state.open_upstream().send(
            method, target.decode("latin-1"), upstream_headers, content if has_body else None
        ))
        if request_facts is not None:
            # The request goes out first; the contract rules and the request's evidence are
            # worked out while KFR is busy with it, so they add nothing to the core system's
            # wait. The verdicts never held a request back; they are in place before the
            # answer is observed. One turn of the loop lets the send write the request.
            try:
                await asyncio.sleep(0)
                verdicts = await self._check(request_facts)
                record.prepare(body, verdicts)
            except BaseException:
                forwarding.cancel()
                raise
        try:
            response = await forwarding
        except UPSTREAM_ERRORS as exc:
            record.upstream_ms = (time.perf_counter() - t_up) * 1000
            if request_facts is None:
                request_facts = facts()
                verdicts = await self._check(request_facts)
            await self._answer_unreachable(send, record, exc, request_facts, verdicts, body)
            return
        record.upstream_ms = (time.perf_counter() - t_up) * 1000
        if request_facts is None:   # a streamed body: its facts are known now it is through
            if not body.complete:
                await _drain(body, receive)
            request_facts = facts()
            verdicts = await self._check(request_facts)
        await self._pass_answer(send, record, response, request_facts, verdicts, body)

    async def _pass_answer(
        self, send: Send, record: _Exchange, response: aiohttp.ClientResponse, facts: RequestFacts,
        verdicts: list[Verdict], body: _Body,
    ) -> None:
        """KFR's answer to the core system, unchanged. Answers up to 64 KiB (all of KFR's)
        are read whole, recorded, then passed on — so the exchange is in the record before
        the core system has its answer; larger ones stream through and are recorded after."""
        status = response.status
        out_headers = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in _HOP_BY_HOP]
        named = {k.decode("latin-1"): v.decode("latin-1") for k, v in out_headers}

        def remember(capture: BodyCapture, error: str | None) -> None:
            # Synchronous: the answer is known to the session before a retry can arrive.
            self.state.session.observe_response(facts, ResponseFacts(
                status=status, at=time.time(), retry_after=named.get("retry-after"),
            ))
            record.finish(
                facts, verdicts, body,
                {"status": status, "headers": redact_headers(response.raw_headers),
                 "body": body_record(capture, (), named.get("content-encoding", ""))},
                error=error, answered_by="upstream",
            )

        capture = BodyCapture()
        length = named.get("content-length", "")
        if length.isdigit() and int(length) <= _SMALL_ANSWER:
            try:
                content = await response.read()
            except UPSTREAM_ERRORS as exc:   # KFR broke off its answer: the core system gets a 502
                response.close()
                await self._answer_unreachable(send, record, exc, facts, verdicts, body)
                return
            response.release()
            capture.feed(content)
            remember(capture, None)
            with contextlib.suppress(OSError):
                await send({"type": "http.response.start", "status": status, "headers": out_headers})
                await send({"type": "http.response.body", "body": content, "more_body": False})
            return
        error = None
        try:
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            async for chunk in response.content.iter_any():
                capture.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UPSTREAM_ERRORS as exc:
            error = describe_error(exc)
        finally:
            if error is None:
                response.release()
            else:
                response.close()   # broken off: the connection is not reused
        remember(capture, error)

    async def _check(self, facts: RequestFacts) -> list[Verdict]:
        if facts.body is not None and len(facts.body) > _INLINE_CHECK_BYTES:
            return await asyncio.to_thread(self.state.session.check_request, facts)
        return self.state.session.check_request(facts)

    async def _answer_injected(
        self, send: Send, record: _Exchange, strike: tuple[int, Injection], facts: RequestFacts,
        verdicts: list[Verdict], body: _Body,
    ) -> None:
        injection_id, injection = strike
        status, headers, content = injected_response(injection, facts.correlation_id)
        header_map = {k.decode(): v.decode() for k, v in headers}
        self.state.session.observe_response(
            facts, ResponseFacts(status=status, at=time.time(), retry_after=header_map.get("retry-after"))
        )
        capture = BodyCapture()
        capture.feed(content)
        record.finish(
            facts, verdicts, body,
            {"status": status, "headers": redact_headers(headers), "body": body_record(capture, ())},
            error=None, answered_by="gateway", injected=injection.kind, injection_id=injection_id,
        )
        with contextlib.suppress(OSError):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _answer_unreachable(
        self, send: Send, record: _Exchange, exc: BaseException, facts: RequestFacts,
        verdicts: list[Verdict], body: _Body,
    ) -> None:
        """KFR could not be reached (or broke off): a 502 from the gateway, recorded with
        the error. When the core system itself went away mid-request, nobody is answered."""
        reason = describe_error(exc)
        if body.disconnected:
            self.state.session.observe_response(facts, ResponseFacts(status=None, at=time.time()))
            record.finish(facts, verdicts, body, None, error=reason, answered_by="gateway")
            return
        content = json.dumps({
            "error": "gateway",
            "message": f"Opptaksgatewayen fikk ikke svar fra KFR ({self.state.settings.upstream_url}): {reason.split(':', 1)[0]}",
        }, ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        self.state.session.observe_response(facts, ResponseFacts(status=502, at=time.time()))
        capture = BodyCapture()
        capture.feed(content)
        record.finish(
            facts, verdicts, body,
            {"status": 502, "headers": redact_headers(headers), "body": body_record(capture, ())},
            error=reason, answered_by="gateway",
        )
        with contextlib.suppress(OSError):
            await send({"type": "http.response.start", "status": 502, "headers": headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})


def _request_headers(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], dict[str, str], bool]:
    """The headers to forward (all but ``Host`` and hop-by-hop ones, in their order), the
    same as a dict for the rules, and whether a body follows."""
    headers: list[tuple[bytes, bytes]] = []
    seen: dict[str, str] = {}
    has_body = False
    for name, value in raw:
        if name == b"content-length":
            has_body = value.strip() not in (b"", b"0")
        elif name == b"transfer-encoding":
            has_body = True
        if name in _HOP_BY_HOP or name == b"host":
            continue
        headers.append((name, value))
        seen[name.decode("latin-1")] = value.decode("latin-1")
    return headers, seen, has_body


async def _drain(body: _Body, receive: Receive) -> None:
    """Read what the upstream did not (it answered before the whole upload arrived)."""
    try:
        async for _ in body.stream(receive):
            pass
    except ConnectionAbortedError:
        pass


class _Exchange:
    """Builds one recorded exchange once the answer is out."""

    def __init__(
        self, state: GatewayState, method: str, url: str, headers: list[tuple[bytes, bytes]],
        claims: Mapping[str, Any] | None, at: float, t0: float, operation: str,
    ) -> None:
        self.state = state
        self.method = method
        self.url = url
        self.headers = headers
        self.claims = claims
        self.at = at
        self.t0 = t0
        self.operation = operation
        self.upstream_ms: float | None = None
        self.request: dict[str, Any] | None = None
        self.contract: tuple[list[Verdict], list[dict[str, Any]]] | None = None

    def prepare(self, body: _Body, verdicts: list[Verdict] | None = None) -> None:
        """What can be recorded before the answer is there (worked out while KFR is busy):
        the request, redacted, once its body is through, and the verdicts as recorded."""
        if verdicts is not None:
            self.contract = (verdicts, [v.to_dict() for v in verdicts])
        # Which token was sent, as the tool's own evidence says it (never the token).
        bearer = next((v for k, v in self.headers if k == b"authorization"), b"").decode("latin-1")
        scheme, _, token = bearer.partition(" ")
        token_sha256 = token_fingerprint(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        self.started_at = _utc(self.at)
        self.request = {
            "method": self.method,
            "url": redact_text(self.url),
            "headers": redact_headers(self.headers),
            "body": body_record(body.capture, ()),
            **({"token_sha256": token_sha256} if token_sha256 else {}),
        }

    def finish(
        self, facts: RequestFacts, verdicts: list[Verdict], body: _Body, response: dict[str, Any] | None,
        *, error: str | None, answered_by: str, injected: str | None = None,
        injection_id: int | None = None,
    ) -> None:
        state = self.state
        if self.request is None:
            self.prepare(body)
        contract = self.contract[1] if self.contract and self.contract[0] is verdicts else [
            v.to_dict() for v in verdicts]
        exchange: dict[str, Any] = {
            "source": "gateway",
            "case_id": state.case_id,
            "seq": 0,
            "operation": self.operation,
            "correlation_id": facts.correlation_id,
            "started_at": self.started_at,
            "elapsed_ms": round((time.perf_counter() - self.t0) * 1000, 3),
            "upstream_ms": None if self.upstream_ms is None else round(self.upstream_ms, 3),
            "request": self.request,
            "response": response,
            "error": redact_text(error) if error else None,
            "answered_by": answered_by,
            "injected": injected,
            "token_claims": dict(self.claims) if self.claims is not None else None,
            "contract": contract,
        }
        state.recorder.record(exchange)
        state.tracker.observe(facts, exchange, injection_id)


# ---------------------------------------------------------------- control API (loopback)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False).encode(), status, media_type="application/json")


def _control_routes(state: GatewayState) -> list[Route]:
    def handler(func: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await func(request)
            except ConformanceError as exc:
                return _json({"error": exc.diagnostics()}, 400)
            except (ValueError, TypeError) as exc:
                return _json({"error": f"Ugyldig forespørsel: {exc}"}, 400)
        return wrapped

    @handler
    async def status(request: Request) -> Response:
        settings = state.settings
        return _json({
            "bank": settings.bank_orgnr,
            "environment": settings.env_name,
            "upstream": settings.upstream_url,
            "maskinporten_issuer": settings.maskinporten_issuer,
            "exchanges": state.recorder.count,
            "case_id": state.case_id,
            "journal": str(state.recorder.journal_path) if state.recorder.journal_path else None,
        })

    @handler
    async def exchanges(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        limit = int(request.query_params.get("limit", "1000"))
        return _json(state.recorder.exchanges(since=since, limit=max(1, min(limit, 10_000))))

    @handler
    async def injections(request: Request) -> Response:
        if request.method == "POST":
            data = json.loads(await request.body() or b"{}")
            injection_id = state.tracker.add(Injection.from_dict(data))
            return _json({"id": injection_id}, 201)
        return _json(state.tracker.report())

    @handler
    async def injection(request: Request) -> Response:
        return _json(state.tracker.report(int(request.path_params["id"]))[0])

    @handler
    async def case(request: Request) -> Response:
        data = json.loads(await request.body() or b"{}")
        value = data.get("case_id") if isinstance(data, dict) else None
        if value is not None and not isinstance(value, str):
            raise ValueError("case_id må være en streng eller null")
        state.case_id = value
        return _json({"case_id": state.case_id})

    return [
        Route(CONTROL_PREFIX + "/status", status, methods=["GET"]),
        Route(CONTROL_PREFIX + "/exchanges", exchanges, methods=["GET"]),
        Route(CONTROL_PREFIX + "/injections", injections, methods=["GET", "POST"]),
        Route(CONTROL_PREFIX + "/injections/{id:int}", injection, methods=["GET"]),
        Route(CONTROL_PREFIX + "/case", case, methods=["PUT"]),
    ]
