"""The gateway's upstream leg on the wire: what KFR receives is what the core system sent.

The upstream here is a raw socket server on loopback that keeps the request heads exactly as
they arrived and answers (or hangs up) as each test scripts it, so headers an HTTP client
library would add, and requests it would silently send again, show.
"""

from __future__ import annotations

import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conformance.gateway import GatewaySettings, RunningGateway, start_gateway
from conformance.ids import synthetic_fodselsnummer

BANK = "311000004"
ISSUER = "http://127.0.0.1:1/maskinporten/"
PATH = f"/kar-ws/api/v1/customers/financialInstitutions/{BANK}/relationshipType/DSOPBANK"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class RawUpstream:
    """Accepts connections; for the n-th request (1-based, over all connections) calls
    ``answer(n)``: the bytes to answer with, or None to close the connection unanswered."""

    def __init__(self, answer: Callable[[int], bytes | None]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def kfr_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/kar-ws/api/v1"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)   # the tests send no bodies
                with self.lock:
                    self.heads.append(head)
                    reply = self.answer(len(self.heads))
                if reply is None:
                    return
                conn.sendall(reply)

    def header_names(self, n: int) -> list[str]:
        lines = self.heads[n].decode("latin-1").split("\r\n")[1:]
        return [line.split(":", 1)[0].lower() for line in lines]

    def close(self) -> None:
        self.sock.close()


def gateway_for(upstream: RawUpstream, record: Path) -> RunningGateway:
    return start_gateway(GatewaySettings(bank_orgnr=BANK, upstream_url=upstream.kfr_base_url,
                                         maskinporten_issuer=ISSUER, env_name="url",
                                         record_dir=record, max_rate=None))


@pytest.fixture
def upstream_answering(request: pytest.FixtureRequest) -> Iterator[RawUpstream]:
    upstream = RawUpstream(request.param)
    yield upstream
    upstream.close()


@pytest.mark.parametrize("upstream_answering", [lambda n: OK], indirect=True)
def test_the_upstream_gets_the_core_systems_headers_and_no_others(
    upstream_answering: RawUpstream, tmp_path: Path
) -> None:
    """No User-Agent, Accept, Accept-Encoding or Content-Type of the gateway's own: KFR sees
    the core system's request, with only Host and hop-by-hop headers changed."""
    sent = (f"POST {PATH}?x=%C3%A6 HTTP/1.1\r\nHost: gateway.local\r\n"
            f"CorrelationID: {uuid.uuid4()}\r\nCustomerID: {synthetic_fodselsnummer(random.Random(9))}\r\nX-Bank-Trace: a\r\n"
            "Connection: keep-alive\r\nContent-Length: 0\r\n\r\n").encode()
    with gateway_for(upstream_answering, tmp_path) as gw, \
            socket.create_connection(("127.0.0.1", gw.port), timeout=10) as client:
        client.sendall(sent)
        answer = b""
        while not answer.endswith(b"{}"):
            chunk = client.recv(65536)
            assert chunk, f"the gateway hung up after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"{}")
    request_line = upstream_answering.heads[0].split(b"\r\n", 1)[0]
    assert request_line == f"POST {PATH}?x=%C3%A6 HTTP/1.1".encode()   # not re-quoted
    names = upstream_answering.header_names(0)
    assert sorted(names) == ["content-length", "correlationid", "customerid", "host", "x-bank-trace"]
    assert f"host: 127.0.0.1:{upstream_answering.port}" in upstream_answering.heads[0].decode().lower()


@pytest.mark.parametrize("upstream_answering", [lambda n: None if n == 2 else OK], indirect=True)
def test_a_request_kfr_hung_up_on_is_not_sent_again_by_the_gateway(
    upstream_answering: RawUpstream, tmp_path: Path
) -> None:
    """KFR closes a kept-alive connection on the second DELETE (idempotent, so an HTTP
    client library would quietly send it again on a new connection): the core system gets
    the gateway's 502 and decides itself whether to retry — its retries are under test."""
    with gateway_for(upstream_answering, tmp_path) as gw, httpx.Client(base_url=gw.kfr_base_url) as http:
        relationship = PATH.removeprefix("/kar-ws/api/v1")
        first = http.delete(relationship, headers={"CorrelationID": str(uuid.uuid4())})
        second = http.delete(relationship, headers={"CorrelationID": str(uuid.uuid4())})
        exchanges = gw.exchanges()
    assert first.status_code == 200
    assert second.status_code == 502 and "fikk ikke svar fra KFR" in second.json()["message"]
    assert len(upstream_answering.heads) == 2 and upstream_answering.connections == 1
    assert "content-length" not in upstream_answering.header_names(0)   # none came, none added
    assert [e["answered_by"] for e in exchanges] == ["upstream", "gateway"]
    assert exchanges[1]["error"].startswith("RemoteProtocolError")
