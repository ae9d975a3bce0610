"""The preflight's clients with eyes: the tool's own HTTP, Maskinporten and KFR clients for
one bank, with every exchange observed (when it left, the answer's ``Date`` and status, or
the network error itself — the clients turn errors into prose), and the A-7 checks that
need a real request: TLS through the proxy in use, and the clock."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from conformance.auth import Credentials, MaskinportenClient
from conformance.preflight.lines import STEP_NETWORK, CheckLine, Status, make_line
from conformance.preflight.network import (
    Endpoint,
    NetworkProblem,
    check_clock,
    check_dns,
    check_tcp,
    clock_skew_s,
    describe_network_error,
    endpoints,
)
from conformance.profile import BankEnvironment


@dataclass
class _Exchange:
    url: httpx.URL
    sent_at: float
    received_at: float = 0.0
    status: int | None = None
    date: str | None = None
    content_type: str = ""
    body: bytes = b""
    error: BaseException | None = None


def _as_httpx_error(exc: BaseException) -> BaseException:
    """httpcore's exception as httpx's. httpx maps them through a table of httpcore's
    classes built on first use; if httpcore was imported again since (pytest's in-process
    test runs drop the modules they imported), the table misses and httpcore's own
    exception escapes the clients, which only know httpx's. Same names, so map by name."""
    if isinstance(exc, httpx.HTTPError) or not type(exc).__module__.startswith("httpcore"):
        return exc
    mapped = getattr(httpx, type(exc).__name__, None)
    if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
        return mapped(str(exc))
    return exc


class _ObservingTransport(httpx.BaseTransport):
    """Wraps each transport of the preflight's HTTP client (direct and proxied): the clients
    turn network errors into prose and do not expose Date headers, the preflight needs both."""

    def __init__(self, inner: httpx.BaseTransport, log: list[_Exchange]) -> None:
        self.inner = inner
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(request.url, time.time())
        self.log.append(exchange)
        try:
            response = self.inner.handle_request(request)
            response.read()  # small answers only here; the clients read it again from memory
        except BaseException as exc:
            mapped = _as_httpx_error(exc)
            exchange.received_at, exchange.error = time.time(), mapped
            if mapped is exc:
                raise
            raise mapped from exc
        exchange.received_at = time.time()
        exchange.status = response.status_code
        exchange.date = response.headers.get("date")
        exchange.content_type = response.headers.get("content-type", "")
        exchange.body = response.content[:65536]
        return response

    def close(self) -> None:
        self.inner.close()


def _bearer(token: str) -> Any:
    def auth(request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    return auth


def decode_token(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A JWT's header and claims, unverified (the signature is never shown or needed)."""
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None


class Probe:
    """The preflight's HTTP client, Maskinporten client and KFR client for one bank, with
    every exchange observed (sent/received time, Date, status, or the network error)."""

    def __init__(self, env: BankEnvironment, credentials: Credentials | None, *,
                 timeout: httpx.Timeout) -> None:
        from conformance.kfr import KfrClient, make_http_client

        self.env = env
        self.credentials = credentials
        self.log: list[_Exchange] = []
        self.http = make_http_client(
            ca_bundle=env.ca_bundle, wrap=lambda t: _ObservingTransport(t, self.log)
        )
        self.http.timeout = timeout
        self.maskinporten_ep, self.kfr_ep = endpoints(env)
        self.ca = f"CA-bundelen {env.ca_bundle}" if env.ca_bundle else "standard rotsertifikater"
        self.mp = (
            MaskinportenClient(issuer=env.maskinporten_issuer, client_id=env.client_id,
                               credentials=credentials, http=self.http, retries=0)
            if credentials is not None else None
        )
        self.kfr = KfrClient(env.kfr_base_url, env.orgnr, http=self.http, auth=None, retries=0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last(self, ep: Endpoint) -> _Exchange | None:
        for exchange in reversed(self.log):
            if str(exchange.url).startswith(ep.base):
                return exchange
        return None

    def skew(self, ep: Endpoint) -> float | None:
        exchange = self.last(ep)
        if exchange is None or exchange.status is None:
            return None
        return clock_skew_s(exchange.date, exchange.sent_at, exchange.received_at)

    def problem(self, ep: Endpoint) -> NetworkProblem | None:
        exchange = self.last(ep)
        if exchange is None or exchange.error is None:
            return None
        return describe_network_error(exchange.error, ep, self.ca)

    def get(self, ep: Endpoint) -> NetworkProblem | None:
        try:
            self.http.get(ep.url, headers={"Accept": "application/json"})
        except httpx.TransportError:
            return self.problem(ep)
        return None

    def lookup(self, token: str | None) -> Any:
        from conformance.ids import synthetic_fodselsnummer

        # A fresh synthetic person: reading it changes nothing in KFR.
        return self.kfr.lookup(synthetic_fodselsnummer(), auth=_bearer(token) if token else None)


def check_tls(probe: Probe, ep: Endpoint) -> CheckLine:
    check = f"network.tls.{ep.role.lower()}"
    problem = probe.get(ep)
    exchange = probe.last(ep)
    if problem is None and exchange is not None and exchange.status is not None:
        what = (f"TLS verifisert med {probe.ca}" if ep.tls else "HTTP uten TLS (sandkasse)")
        return make_line(STEP_NETWORK, check, Status.OK,
                         f"{ep.role}: {what}; {ep.host} svarte HTTP {exchange.status} ({ep.route}).",
                         host=ep.host, proxy=ep.proxy, status=exchange.status)
    problem = problem or NetworkProblem("answer", "ingen svar", "Prøv igjen.")
    return make_line(STEP_NETWORK, check, Status.FAIL,
                     f"{ep.role}: {problem.text} ({ep.route}).", problem.advice,
                     host=ep.host, proxy=ep.proxy, layer=problem.layer)


def check_endpoint(probe: Probe, ep: Endpoint) -> list[CheckLine]:
    """A-7 for one server: DNS, TCP, TLS (an HTTP answer through the real client) and the
    clock against its Date header. Each layer only when the one below worked."""
    dns, addresses = check_dns(ep)
    lines = [dns]
    if dns.failed:
        return lines
    tcp = check_tcp(ep, addresses)
    lines.append(tcp)
    if tcp.failed:
        return lines
    tls = check_tls(probe, ep)
    lines.append(tls)
    if not tls.failed:
        lines.append(check_clock(ep, probe.skew(ep)))
    return lines
