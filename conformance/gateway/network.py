"""The gateway's upstream leg: aiohttp's client, set up to pass requests on as they came.

httpx's connection pool (httpcore + h11) was over half of the gateway's CPU per request:
pool bookkeeping, anyio locks and cancel scopes, and h11's pure-Python parsing and header
validation. aiohttp's client parses with llhttp (C) and keeps its own keep-alive pool
(``benchmarks/bench_gateway.py``, docs/performance.md "Gateway" for the A/B).

What a proxy needs from it, and how it is asked for here: no cookie jar
(``DummyCookieJar``), no redirects followed (``allow_redirects=False`` per request), no
retries — not even aiohttp's silent resend of an idempotent request on a reused connection
the server closed (the core system's retries are what is under test) — answers passed on
still compressed (``auto_decompress=False``), and none of aiohttp's own default headers
(User-Agent, Accept, Accept-Encoding, Content-Type) added to what the core system sent.
The proxy from HTTPS_PROXY/HTTP_PROXY is resolved once by the caller and given explicitly
(``trust_env`` off: NO_PROXY and loopback are decided in one place).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, Sequence
from typing import Any

import aiohttp
import yarl
from aiohttp import hdrs

__all__ = ["UPSTREAM_ERRORS", "UpstreamClient", "describe_error"]

# What can go wrong on the way to KFR and back: aiohttp's own errors (connection, payload,
# TLS verification), timeouts, and plain OS errors from the socket.
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError, TimeoutError, ssl.SSLError, ConnectionAbortedError, OSError,
)
# aiohttp adds these unless told not to; a proxy sends only what the core system sent.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


def describe_error(exc: BaseException) -> str:
    """``"<Kind>: <detail>"`` for the evidence, in the words the tool's own client uses
    (httpx: ConnectError, ConnectTimeout, ReadTimeout, ReadError, RemoteProtocolError), so a
    gateway exchange reads, and is judged, like a run's own."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"ConnectError: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"ConnectError: {exc.os_error}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"ConnectTimeout: {exc}"
    if isinstance(exc, TimeoutError):
        return f"ReadTimeout: {exc or 'timed out'}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "RemoteProtocolError: Server disconnected without sending a response."
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return f"RemoteProtocolError: {exc}"
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return f"ReadError: {exc}"
    return f"{type(exc).__name__}: {exc}"


Content = bytes | AsyncIterable[bytes] | None


class _AsSentRequest(aiohttp.ClientRequest):
    """aiohttp adds ``Content-Length: 0`` to a request without a body (a DELETE, say); a
    proxy passes on the framing that came — none — and records what it sent."""

    def update_body_from_data(self, body: Any, *args: Any, **kwargs: Any) -> None:
        added = body is None and hdrs.CONTENT_LENGTH not in self.headers
        super().update_body_from_data(body, *args, **kwargs)
        if added:
            self.headers.popall(hdrs.CONTENT_LENGTH, None)


class UpstreamClient:
    """One keep-alive pool of at most ``connections`` connections to KFR. Open it on the
    event loop that will use it (the gateway's lifespan start-up)."""

    def __init__(
        self, base_url: str, *, tls: ssl.SSLContext, proxy: str | None, timeout_s: float,
        connections: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tls = tls
        self._proxy = yarl.URL(proxy) if proxy else None
        # As httpx.Timeout(timeout_s, connect=10) was: a new connection within 10 s, a free
        # one from the pool and every read within timeout_s; no limit on the whole answer
        # (a large one streams through for as long as it keeps coming).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=10.0,
                                              sock_read=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0, ssl=self._tls)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            trust_env=False, skip_auto_headers=_NO_AUTO_HEADERS, timeout=self._timeout,
            requote_redirect_url=False, request_class=_AsSentRequest,
        )
        # aiohttp resends an idempotent request once when a reused connection turns out to
        # be closed; KFR must see exactly the requests the core system sent. There is no
        # public switch for it (aiohttp 3.10+ keeps it on this attribute).
        self._session._retry_connection = False

    async def send(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], content: Content
    ) -> aiohttp.ClientResponse:
        """``target`` is the path and query below the base URL, already encoded: it goes on
        byte for byte (no re-quoting)."""
        if self._session is None:
            self.open()
        assert self._session is not None
        return await self._session.request(
            method, yarl.URL(self.base_url + target, encoded=True), headers=headers, data=content,
            allow_redirects=False, proxy=self._proxy, compress=None,
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
