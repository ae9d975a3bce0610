"""Starting and stopping a gateway, and the Python API the runner (and tests) drive it by.

uvicorn runs the app in a background thread on a socket bound here, so the port is known
before the first request. Everything the API offers is also on the loopback control API
(``/_gateway/…``) for a gateway running in another process.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from conformance import contract
from conformance.contract import ContractSession, Verdict
from conformance.errors import UsageError
from conformance.gateway.injections import Injection, InjectionTracker
from conformance.gateway.proxy import GatewayApp, GatewayState, upstream_tls
from conformance.gateway.recorder import GatewayRecorder
from conformance.gateway.settings import KFR_PREFIX, GatewaySettings
from conformance.listening import listening_socket, url_host

__all__ = ["ROBUSTNESS_FILE", "RunningGateway", "start_gateway"]

ROBUSTNESS_FILE = "robustness.json"
START_TIMEOUT_S = 15.0


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listening_socket(host, port, 1024)
    except OSError as exc:
        raise UsageError(
            f"Gatewayen kan ikke lytte på {host}:{port}: {exc.strerror or exc}.",
            hint="Velg en annen port med --listen, eller port 0 for en ledig port.",
        ) from exc


def _event_loop() -> str:
    try:
        import uvloop  # noqa: F401  (a faster event loop where it exists: not on Windows)
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http_implementation() -> str:
    try:
        import httptools  # noqa: F401  (uvicorn's fast parser: a third of the gateway's cost)
    except ImportError:
        return "h11"
    return "httptools"


class RunningGateway:
    """A started gateway. Use as a context manager, or call :meth:`stop`.

    ``on_stop`` runs after the server has stopped (e.g. stopping an embedded sandbox)."""

    def __init__(
        self, settings: GatewaySettings, *, on_stop: Callable[[], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_stop = on_stop
        session = ContractSession(
            settings.bank_orgnr, issuer=settings.maskinporten_issuer,
            client_id=settings.client_id, scope=settings.scope, max_rate=settings.max_rate,
        )
        tls = upstream_tls(settings)
        self._socket = _bind(settings.host, settings.port)
        self.recorder = GatewayRecorder(settings.record_dir, keep_in_memory=settings.keep_in_memory)
        self.tracker = InjectionTracker()
        self.state = GatewayState(settings, session, self.recorder, self.tracker, tls=tls)
        self.port: int = self._socket.getsockname()[1]
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
        self.base_url = f"{settings.scheme}://{url_host(host)}:{self.port}"
        config = uvicorn.Config(
            GatewayApp(self.state),
            log_config=None,
            access_log=False,
            http=_http_implementation(),
            ws="none",
            lifespan="on",
            proxy_headers=False,
            server_header=False,
            date_header=False,   # the upstream's Date passes through unchanged
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            loop=_event_loop(),
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def kfr_base_url(self) -> str:
        """The base URL to give the core system instead of KFR's."""
        return self.base_url + KFR_PREFIX

    @property
    def journal_path(self) -> Path | None:
        return self.recorder.journal_path

    # ------------------------------------------------------------------ life cycle

    def start(self) -> RunningGateway:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name=f"gateway-{self.port}", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UsageError(f"Gatewayen startet ikke på {self.base_url}.")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving, judge every injection on what was seen, write ``robustness.json``
        and make sure every exchange is in the journal."""
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        with contextlib.suppress(OSError):
            self._socket.close()
        self.tracker.finish()
        try:
            self._write_robustness()
        finally:
            self.recorder.close()
            if self._on_stop is not None:
                self._on_stop()

    def __enter__(self) -> RunningGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def serve_forever(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.wait(0.2):
                if self._thread is not None and not self._thread.is_alive():
                    raise UsageError("Gatewayens server stoppet uventet.")
        finally:
            self.stop()

    def _write_robustness(self) -> None:
        if self.settings.record_dir is None:
            return
        from conformance.atomic import atomic_write_bytes

        report = {
            "bank": self.settings.bank_orgnr,
            "note": "Robusthetstester fra opptaksgatewayen. Rapporteres for seg og inngår ikke i C-2-resultatet.",
            "injections": self.tracker.report(),
        }
        text = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
        atomic_write_bytes(self.settings.record_dir / ROBUSTNESS_FILE, text.encode("utf-8"))

    # ------------------------------------------------------------------ the API

    @property
    def case_id(self) -> str | None:
        return self.state.case_id

    def set_case(self, case_id: str | None) -> None:
        """Label the exchanges that follow with a sheet row's case id (None: no row)."""
        self.state.case_id = case_id

    def exchanges(self, since: int = 0) -> list[dict[str, Any]]:
        """Recorded exchanges after ``since`` (a ``seq``), oldest first."""
        return self.recorder.exchanges(since=since)

    @property
    def last_seq(self) -> int:
        return self.recorder.count

    def findings(self, since: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(exchange, failed verdict) for every contract finding after ``since``."""
        return [
            (exchange, verdict)
            for exchange in self.recorder.exchanges(since=since)
            for verdict in exchange.get("contract", [])
            if not verdict["ok"]
        ]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> dict[str, Any] | None:
        return self.recorder.wait_for(predicate, timeout, since)

    def expect(
        self, operation: str, customer_id: str | None, *, timeout: float, since: int = 0
    ) -> tuple[Verdict, dict[str, Any] | None]:
        """Wait until the core system sends ``operation`` (``add``, ``end``, ``batch`` …)
        for ``customer_id`` through the gateway; the verdict says whether it did."""

        def wanted(exchange: dict[str, Any]) -> bool:
            if exchange.get("operation") != operation:
                return False
            if customer_id is None:
                return True
            headers = {k.lower(): v for k, v in exchange["request"]["headers"].items()}
            return headers.get("customerid") == customer_id

        started = time.monotonic()
        exchange = self.recorder.wait_for(wanted, timeout, since)
        what = _describe(operation, customer_id)
        return contract.expected_request_seen(what, 1 if exchange else 0, time.monotonic() - started), exchange

    def inject(self, injection: Injection) -> int:
        """Schedule an injection; returns its id for :meth:`injection_report`."""
        return self.tracker.add(injection)

    def injection_report(self, injection_id: int | None = None) -> list[dict[str, Any]]:
        return self.tracker.report(injection_id)

    def wait_settled(self, injection_id: int, timeout: float) -> dict[str, Any]:
        """The injection's report once the reaction is judged (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while not self.tracker.settled(injection_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.tracker.report(injection_id)[0]

    def flush(self, timeout: float = 10.0) -> bool:
        """True once every exchange so far is fsynced in the journal."""
        return self.recorder.flush(timeout)


def _describe(operation: str, customer_id: str | None) -> str:
    names = {"add": "registrering", "end": "avslutning", "batch": "batchopplasting", "lookup": "oppslag"}
    what = names.get(operation, operation)
    return f"{what} av {customer_id}" if customer_id else what


def start_gateway(settings: GatewaySettings, **kwargs: Any) -> RunningGateway:
    """Start a gateway in a background thread; returns when it accepts connections."""
    return RunningGateway(settings, **kwargs).start()
