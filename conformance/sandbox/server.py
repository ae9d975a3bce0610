"""Starting and stopping a sandbox: uvicorn on a socket we bind ourselves (so the port is
known before the first request), in a background thread or in the foreground."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from cryptography import x509

from conformance.errors import SandboxError
from conformance.ids import require_orgnr
from conformance.listening import listening_socket, url_host
from conformance.sandbox.app import create_app
from conformance.sandbox.context import KFR_PREFIX, FaultState, SandboxContext
from conformance.sandbox.credentials import AGENCY_SCOPE, BankCredentials, issue_credentials
from conformance.sandbox.files import ensure_dir
from conformance.sandbox.ingest import Ingester
from conformance.sandbox.maskinporten import AccessTokens, SigningKey
from conformance.sandbox.pki import PkiUrls, Revocation, TestCA, bank_certificate
from conformance.sandbox.prompt_server import PromptServer
from conformance.sandbox.settings import Faults, SandboxSettings
from conformance.sandbox.store import open_store

log = logging.getLogger("conformance.sandbox")
START_TIMEOUT_S = 15.0


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listening_socket(host, port, 512)
    except OSError as exc:
        raise SandboxError(
            f"Sandkassen kan ikke lytte på {host}:{port}: {exc.strerror or exc}.",
            hint="Velg en annen port med --port, eller 0 for en ledig port.",
        ) from exc


class RunningSandbox:
    """A started sandbox. Use as a context manager, or call ``stop()``."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.data_dir: Path = ensure_dir(settings.resolved_data_dir())
        self.ca = TestCA(self.data_dir)
        signing_key = SigningKey(self.data_dir)
        self._socket = _bind(settings.host, settings.port)
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://{url_host(settings.host)}:{self.port}"
        self.ca.urls = PkiUrls.for_base(self.base_url)  # certificates issued now name it
        try:
            self.store = open_store(self.data_dir, in_memory=settings.in_memory)
        except BaseException:
            self._socket.close()
            raise
        wake = threading.Event()
        self._ctx = SandboxContext(
            settings=settings,
            data_dir=self.data_dir,
            base_url=self.base_url,
            store=self.store,
            ca=self.ca,
            signing_key=signing_key,
            tokens=AccessTokens(signing_key),
            fault_state=FaultState(settings.faults),
            notify_batch=wake,
        )
        self._ingester = Ingester(
            self.store, None if settings.unlimited_ingest else settings.ingest_rate, wake
        )
        config = uvicorn.Config(
            create_app(self._ctx),
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,  # SandboxMiddleware stamps Date from the sandbox's own clock
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
            loop="asyncio",
        )
        self._server = PromptServer(config)  # stops at once, not on uvicorn's 0.1 s clock
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ------------------------------------------------------------------ URLs

    @property
    def kfr_base_url(self) -> str:
        return self.base_url + KFR_PREFIX

    @property
    def maskinporten_issuer(self) -> str:
        return self._ctx.issuer

    @property
    def token_endpoint(self) -> str:
        return self._ctx.token_endpoint

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    @property
    def realistic(self) -> bool:
        """True when an API gateway sits in front of KFR, as in Bits' test environment."""
        return self.settings.realistic

    @property
    def pki_urls(self) -> PkiUrls:
        """The test TSA, OCSP responder, CRL and CA certificate of this sandbox."""
        return PkiUrls.for_base(self.base_url)

    @property
    def tsa_url(self) -> str:
        return self.pki_urls.tsa

    # ------------------------------------------------------------------ life cycle

    def start(self) -> RunningSandbox:
        if self._thread is not None:
            return self
        self._ingester.start()
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SandboxError(f"Sandkassen startet ikke på {self.base_url}.")
            time.sleep(0.005)
        log.info(
            "sandbox started: KFR %s, Maskinporten %s, data %s",
            self.kfr_base_url,
            self.maskinporten_issuer,
            self.data_dir,
        )
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.request_exit()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._ingester.stop()
        with contextlib.suppress(OSError):
            self._socket.close()
        self.store.close()

    def __enter__(self) -> RunningSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def register_bank(
        self,
        orgnr: str,
        name: str | None = None,
        out_dir: Path | None = None,
        password: str | None = None,
    ) -> BankCredentials:
        """Issue a bank's certificate and register its Maskinporten client (idempotent per orgnr)."""
        orgnr = require_orgnr(orgnr)
        return issue_credentials(
            self.ca,
            self.store,
            orgnr,
            name,
            Path(out_dir) if out_dir else self.data_dir / "banks" / orgnr,
            password=password,
        )

    def register_agency(
        self,
        orgnr: str,
        name: str,
        out_dir: Path | None = None,
        scopes: tuple[str, ...] = (AGENCY_SCOPE,),
        password: str | None = None,
    ) -> BankCredentials:
        """A public agency's client (e.g. for the customerRelationships lookup)."""
        orgnr = require_orgnr(orgnr)
        return issue_credentials(
            self.ca,
            self.store,
            orgnr,
            name,
            Path(out_dir) if out_dir else self.data_dir / "agencies" / orgnr,
            kind="agency",
            scopes=scopes,
            password=password,
            alt_scope=None,
        )

    def revoke(
        self,
        bank: str | x509.Certificate,
        *,
        at: dt.datetime | None = None,
        reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
    ) -> Revocation:
        """Revoke a certificate of this sandbox's CA: ``bank`` is the certificate, or an orgnr
        for the bank's certificate in ``<data_dir>/banks/<orgnr>/``. The CRL and the OCSP
        responder say so from the next request on."""
        cert = bank if isinstance(bank, x509.Certificate) else bank_certificate(self.data_dir, bank)
        return self.ca.revoke(cert, at=at, reason=reason)

    def register_account(self, account_id: str, orgnr: str) -> None:
        """Make ``accountServicingProvider`` answer ``orgnr`` for this 11-digit account."""
        if len(account_id) != 11 or not account_id.isdigit():
            raise SandboxError(f"«{account_id}» er ikke et kontonummer med 11 siffer.")
        self.store.register_account(account_id, require_orgnr(orgnr))

    # ------------------------------------------------------------------ faults and state

    @property
    def faults(self) -> Faults:
        return self._ctx.fault_state.current

    def set_faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise SandboxError("set_faults trenger en Faults.")
        self._ctx.fault_state.set(faults)

    def revoke_tokens(self) -> int:
        """Revoke every access token issued so far (the gateway — or, by default, KFR —
        then answers 401 for them); new tokens work. Returns how many unexpired tokens
        this sandbox had issued. ``POST /_sandbox/revoke-tokens`` does the same."""
        return self._ctx.tokens.revoke_all()

    def relationship_count(self, fid: str | None = None, active_only: bool = False) -> int:
        return self.store.relationship_count(fid, active_only=active_only)

    def wait_for_ingestion(self, timeout: float = 10.0) -> bool:
        """True once every accepted batch is ingested; False if that takes longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.store.pending_count() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def serve_forever(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM)."""
        self.start()
        try:
            while not stop.wait(0.2):
                if self._thread is not None and not self._thread.is_alive():
                    raise SandboxError("Sandkassens server stoppet uventet.")
        finally:
            self.stop()


def start_sandbox(
    settings: SandboxSettings | None = None, *, realistic: bool | None = None
) -> RunningSandbox:
    """Start a sandbox in a background thread; returns when it accepts connections.
    ``realistic`` overrides ``settings.realistic`` (an API gateway in front of KFR)."""
    settings = settings or SandboxSettings()
    if realistic is not None:
        settings = dataclasses.replace(settings, realistic=realistic)
    return RunningSandbox(settings).start()
