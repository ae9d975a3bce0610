"""Stopping a sandbox: at once (``PromptServer``), yet still uvicorn's graceful shutdown —
idle connections are closed, a response being written is finished, the port is let go."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from conformance.ids import synthetic_orgnr
from conformance.sandbox import RunningSandbox, SandboxSettings
from conformance.sandbox.server import RunningSandbox as ServerClass
from conftest import multipart_body

BOUNDARY = "873380600719114776488944"


def _lookup_request(sb: RunningSandbox, token: str) -> bytes:
    return (
        f"GET /kar-ws/api/v1/customers/financialInstitutions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nCorrelationID: {uuid.uuid4()}\r\n"
        f"CustomerID: {synthetic_orgnr()}\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body; the connection is left open."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_stop_closes_an_idle_keep_alive_connection_and_the_port(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    sb = sandbox_factory()
    api = bank_api(sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"), sb=sb)
    with socket.create_connection(("127.0.0.1", sb.port)) as sock:
        sock.sendall(_lookup_request(sb, api.token))
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 ")  # answered; the connection stays open
        sb.stop()
        assert _read_all(sock) == b"", "the server closes the idle connection when it stops"
    try:
        socket.create_connection(("127.0.0.1", sb.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused, "nothing listens on the port after stop()"


def test_a_request_being_handled_during_stop_is_answered_in_full(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    sb = sandbox_factory()
    api = bank_api(sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"), sb=sb)
    customer = synthetic_orgnr()
    body = multipart_body({"customer_type": "DSOPBANK", "customers": customer}, BOUNDARY)
    head = (
        f"POST /kar-ws/api/v1/customers/financialInstitutions/{api.creds.orgnr}/batch HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {api.token}\r\n"
        f"CorrelationID: {uuid.uuid4()}\r\nExpect: 100-continue\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sb.port)) as sock:
        sock.settimeout(10)
        sock.sendall(head)
        # "100 Continue" comes when the handler asks for the body: the request is in hand.
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        stopper = threading.Thread(target=sb.stop)
        stopper.start()
        sock.sendall(body)
        data = _read_all(sock)
        stopper.join(10)
    assert not stopper.is_alive()
    assert data.startswith(b"HTTP/1.1 201 "), data[:200]


def test_a_sandbox_stopped_before_it_started_serving_does_not_hang(tmp_path: Any) -> None:
    sb = ServerClass(SandboxSettings(data_dir=tmp_path / "sb", ingest_rate=None))
    sb.stop()  # never started: nothing to wait for, the port is released
    sb2 = ServerClass(SandboxSettings(data_dir=tmp_path / "sb2", ingest_rate=None)).start()
    sb2.stop()
    sb2.stop()  # twice is harmless
    assert sb2._thread is not None and not sb2._thread.is_alive()
