"""The gateway as a proxy: what passes through unchanged, what is recorded, what is refused.

Upstream is a real HTTP server on loopback that echoes what it received (and can answer
big, compressed or cookie-setting responses), so "unchanged" is checked on the wire.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conformance.errors import ProductionTargetError, UsageError
from conformance.gateway import (
    JOURNAL_FILE,
    ROBUSTNESS_FILE,
    GatewaySettings,
    Injection,
    RunningGateway,
    start_gateway,
)
from conformance.gateway.proxy import GatewayApp
from conformance.gateway.tls import issue_server_certificate
from conformance.sandbox import TestCA

BANK = "311000004"
ISSUER = "http://127.0.0.1:1/maskinporten/"
BIG = 5 * 1024 * 1024


# ---------------------------------------------------------------- an echoing upstream


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_size": len(body),
    }, headers={"Set-Cookie": "session=s3cr3t-cookie-value; HttpOnly", "X-Upstream": "echo"})


async def big(request: Request) -> Response:
    async def chunks() -> Any:
        block = bytes(range(256)) * 4096          # 1 MiB
        for _ in range(BIG // len(block)):
            yield block
            await asyncio.sleep(0)
    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def zipped(request: Request) -> Response:
    return Response(gzip.compress(b'{"banks": []}', mtime=0), headers={"Content-Encoding": "gzip"},
                    media_type="application/json")


class Upstream:
    def __init__(self, tls: tuple[Path, Path] | None = None, keep_alive_s: int = 5) -> None:
        self.scheme = "https" if tls else "http"
        app = Starlette(routes=[
            Route("/kar-ws/api/v1/big", big),
            Route("/kar-ws/api/v1/zipped", zipped),
            Route("/kar-ws/api/v1/{rest:path}", echo, methods=["GET", "POST", "DELETE", "PUT"]),
        ])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=keep_alive_s,
            ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None,
        ))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def kfr_base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/kar-ws/api/v1"

    def __enter__(self) -> Upstream:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def settings(upstream_url: str, record: Path | None, **extra: Any) -> GatewaySettings:
    return GatewaySettings(bank_orgnr=BANK, upstream_url=upstream_url, maskinporten_issuer=ISSUER,
                           env_name="url", record_dir=record, **extra)


@pytest.fixture
def gateway(upstream: Upstream, tmp_path: Path) -> Iterator[RunningGateway]:
    with start_gateway(settings(upstream.kfr_base_url, tmp_path / "rec", max_rate=None)) as gw:
        yield gw


def relationship(fid: str = BANK) -> str:
    return f"/customers/financialInstitutions/{fid}/relationshipType/DSOPBANK"


# ---------------------------------------------------------------- unchanged both ways


def test_a_request_reaches_the_upstream_unchanged_but_for_host_and_hop_by_hop_headers(
    gateway: RunningGateway, upstream: Upstream
) -> None:
    body = os.urandom(3 * 1024 * 1024)

    def streamed() -> Iterator[bytes]:   # no Content-Length: chunked from the client
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    headers = [("CorrelationID", "c0ffee00-0000-4000-8000-000000000001"), ("X-Bank-Trace", "a"),
               ("X-Bank-Trace", "b"), ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("Connection", "keep-alive")]
    with httpx.Client(base_url=gateway.kfr_base_url, timeout=30) as http:
        answer = http.post(relationship() + "?a=1&b=%C3%A6", headers=headers, content=streamed())
    seen = answer.json()
    assert answer.status_code == 200 and answer.headers["x-upstream"] == "echo"
    assert seen["method"] == "POST" and seen["path"] == "/kar-ws/api/v1" + relationship()
    assert seen["query"] == "a=1&b=%C3%A6"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest() and seen["body_size"] == len(body)
    received = [(k.lower(), v) for k, v in seen["headers"]]
    assert ("host", f"127.0.0.1:{upstream.port}") in received
    assert [v for k, v in received if k == "x-bank-trace"] == ["a", "b"]
    assert ("correlationid", "c0ffee00-0000-4000-8000-000000000001") in received
    assert not {"proxy-authorization", "connection"} & {k for k, _ in received}


def test_answers_come_back_unchanged_streamed_and_still_compressed(gateway: RunningGateway) -> None:
    digest = hashlib.sha256()
    with httpx.Client(base_url=gateway.kfr_base_url, timeout=30) as http:
        with http.stream("GET", "/big") as answer:
            for chunk in answer.iter_raw():
                digest.update(chunk)
        block = bytes(range(256)) * 4096
        assert digest.hexdigest() == hashlib.sha256(block * (BIG // len(block))).hexdigest()
        with http.stream("GET", "/zipped", headers={"Accept-Encoding": "gzip"}) as zipped_answer:
            raw = b"".join(zipped_answer.iter_raw())
        assert zipped_answer.headers["content-encoding"] == "gzip"
        assert raw == gzip.compress(b'{"banks": []}', mtime=0)   # passed on still compressed
    recorded = {e["request"]["url"].rsplit("/", 1)[-1]: e for e in gateway.exchanges()}
    assert recorded["big"]["response"]["body"]["size"] == BIG          # size + hash, not the text
    assert recorded["big"]["response"]["body"]["sha256"] == digest.hexdigest()
    assert recorded["zipped"]["response"]["body"] == '{"banks": []}'   # recorded readable


def test_the_gateway_keeps_no_cookies_and_records_none(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.kfr_base_url) as first:
        assert "s3cr3t-cookie-value" in first.get(relationship()).headers["set-cookie"]
    with httpx.Client(base_url=gateway.kfr_base_url) as second:
        received = dict((k.lower(), v) for k, v in second.get(relationship()).json()["headers"])
    assert "cookie" not in received
    assert gateway.flush()
    journal = gateway.journal_path.read_text()
    assert "s3cr3t-cookie-value" not in journal and journal.count("\n") == 2


# ---------------------------------------------------------------- what is recorded


def test_the_token_is_never_recorded_only_its_claims(gateway: RunningGateway) -> None:
    import jwt

    token = jwt.encode({"iss": ISSUER, "scope": "bits:kundeforhold.write", "client_id": "c1",
                        "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{BANK}"},
                        "iat": int(time.time()), "exp": int(time.time()) + 120, "jti": "jti-1",
                        "secret_extra": "x"}, "signing-key-of-somebody-else-32b", algorithm="HS256")
    with httpx.Client(base_url=gateway.kfr_base_url) as http:
        http.post(relationship(), headers={"Authorization": f"Bearer {token}", "CustomerID": "05909803219",
                                           "CorrelationID": str(uuid.uuid4())})
    gateway.stop()
    journal = (gateway.settings.record_dir / JOURNAL_FILE).read_text()
    assert token not in journal and token.split(".")[1] not in journal
    exchange = json.loads(journal.splitlines()[0])
    assert exchange["request"]["headers"]["authorization"] == "[REDACTED]"
    assert exchange["token_claims"] == {"iss": ISSUER, "scope": "bits:kundeforhold.write", "client_id": "c1",
                                        "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{BANK}"},
                                        "iat": exchange["token_claims"]["iat"],
                                        "exp": exchange["token_claims"]["exp"], "jti": "jti-1"}
    assert exchange["source"] == "gateway" and exchange["operation"] == "add"
    assert exchange["request"]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()[:16]
    assert {v["rule"] for v in exchange["contract"]} >= {"correlation-id-uuid", "token-issuer", "customer-id-valid"}


def test_concurrent_requests_are_all_recorded_and_labelled_with_the_case(gateway: RunningGateway) -> None:
    gateway.set_case("KFR-07")

    def client(n: int) -> None:
        with httpx.Client(base_url=gateway.kfr_base_url) as http:
            for _ in range(25):
                http.get(f"/customers/financialInstitutions/{BANK}/", headers={"CorrelationID": str(uuid.uuid4())})

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gateway.stop()
    lines = [json.loads(line) for line in gateway.journal_path.read_text().splitlines()]
    assert sorted(e["seq"] for e in lines) == list(range(1, 201))
    assert {e["case_id"] for e in lines} == {"KFR-07"}
    assert len({e["correlation_id"] for e in lines}) == 200


def test_an_unreachable_upstream_is_a_502_from_the_gateway_and_recorded(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with start_gateway(settings(f"http://127.0.0.1:{port}/kar-ws/api/v1", tmp_path)) as gw:
        with httpx.Client(base_url=gw.kfr_base_url) as http:
            answer = http.delete(relationship(), headers={"CorrelationID": str(uuid.uuid4())})
        assert answer.status_code == 502
        assert "Opptaksgatewayen fikk ikke svar fra KFR" in answer.json()["message"]
        exchange = gw.exchanges()[0]
        assert exchange["answered_by"] == "gateway" and exchange["error"].startswith("ConnectError")


# ---------------------------------------------------------------- refused before listening


@pytest.mark.parametrize("url", ["https://api.bits.no/kar-ws/api/v1", "https://API.BITS.NO./kar-ws/api/v1"])
def test_production_is_refused_before_the_gateway_listens(url: str) -> None:
    with pytest.raises(ProductionTargetError, match="produksjonsmiljø"):
        GatewaySettings(bank_orgnr=BANK, upstream_url=url, maskinporten_issuer=ISSUER)
    with pytest.raises(ProductionTargetError, match="Maskinportens produksjonsmiljø"):
        GatewaySettings(bank_orgnr=BANK, upstream_url="http://127.0.0.1:1/kar-ws/api/v1",
                        maskinporten_issuer="https://maskinporten.no/")


def test_listening_beyond_loopback_needs_to_be_asked_for() -> None:
    with pytest.raises(UsageError, match="loopback"):
        settings("http://127.0.0.1:1/kar-ws/api/v1", None, host="0.0.0.0")


def test_the_control_api_answers_loopback_only() -> None:
    app = GatewayApp.__new__(GatewayApp)   # only the gate in front of the control API is used
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/_gateway/exchanges", "headers": [],
             "query_string": b"", "client": ("192.0.2.10", 50000)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 403
    assert "loopback" in json.loads(sent[1]["body"])["error"]


# ---------------------------------------------------------------- https on the listening side


def test_tls_serves_https_with_a_certificate_from_the_sandbox_ca(upstream: Upstream, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "sandbox")
    cert, key = issue_server_certificate(ca, ["127.0.0.1"], tmp_path / "tls")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    with start_gateway(settings(upstream.kfr_base_url, None, tls_cert=cert, tls_key=key)) as gw:
        assert gw.kfr_base_url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(ca.cert_path))
        with httpx.Client(base_url=gw.kfr_base_url, verify=trusting) as http:
            assert http.get(relationship()).json()["method"] == "GET"
        with httpx.Client(base_url=gw.kfr_base_url) as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.get(relationship())


def test_an_https_upstream_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    """Bits' test environment is https: the gateway verifies it (here against the sandbox
    CA given as --ca-bundle) and refuses one it cannot verify."""
    ca = TestCA(tmp_path / "sandbox")
    with Upstream(tls=issue_server_certificate(ca, ["127.0.0.1"], tmp_path / "tls")) as https_upstream:
        trusting = settings(https_upstream.kfr_base_url, None, upstream_ca_bundle=ca.cert_path)
        with start_gateway(trusting) as gw, httpx.Client(base_url=gw.kfr_base_url) as http:
            assert http.get(relationship()).json()["path"] == "/kar-ws/api/v1" + relationship()
        with start_gateway(settings(https_upstream.kfr_base_url, None)) as gw, \
                httpx.Client(base_url=gw.kfr_base_url) as http:
            refused = http.get(relationship())
            assert refused.status_code == 502
            assert "CERTIFICATE_VERIFY_FAILED" in gw.exchanges()[0]["error"]


def test_an_idle_connection_the_upstream_closed_is_not_reused(tmp_path: Path) -> None:
    """KFR's side closes idle keep-alive connections; the next request must get a fresh
    connection, not a 502."""
    with Upstream(keep_alive_s=1) as quick, start_gateway(settings(quick.kfr_base_url, None)) as gw, \
            httpx.Client(base_url=gw.kfr_base_url) as http:
        assert http.get(relationship()).status_code == 200
        time.sleep(1.6)   # the upstream has closed the idle connection by now
        for _ in range(3):
            assert http.get(relationship()).status_code == 200
        assert [e["answered_by"] for e in gw.exchanges()] == ["upstream"] * 4


# ---------------------------------------------------------------- the control API


def test_injections_and_labels_over_the_control_api(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.base_url) as control, httpx.Client(base_url=gateway.kfr_base_url) as kfr:
        for bad, words in (({"kind": "explode"}, "Ukjent injeksjon"), ({"kind": "already_exists", "operation": "end"},
                           "bare registrering"), ({"kind": "unavailable", "count": 0}, "count"), ([1], "JSON-objekt")):
            answer = control.post("/_gateway/injections", json=bad)
            assert answer.status_code == 400 and words in answer.json()["error"]
        assert control.post("/_gateway/injections", content=b"{nope").status_code == 400
        created = control.post("/_gateway/injections", json={"kind": "rate_limited", "operation": "add",
                                                              "retry_after_s": 7, "observe_s": 0.2})
        assert created.status_code == 201
        assert control.put("/_gateway/case", json={"case_id": "KFR-18"}).json() == {"case_id": "KFR-18"}
        refused = kfr.post(relationship(), headers={"CorrelationID": str(uuid.uuid4()), "CustomerID": "05909803219"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
        passed = kfr.post(relationship(), headers={"CorrelationID": str(uuid.uuid4()), "CustomerID": "05909803219"})
        assert passed.status_code == 200                       # the echo upstream answered
        exchanges = control.get("/_gateway/exchanges", params={"since": 0}).json()
        assert [e["answered_by"] for e in exchanges] == ["gateway", "upstream"]
        assert {e["case_id"] for e in exchanges} == {"KFR-18"}
        report = control.get(f"/_gateway/injections/{created.json()['id']}").json()
        assert report["hits"] == [exchanges[0]["seq"]] and report["attempts_after"] == [exchanges[1]["seq"]]
        assert control.get("/_gateway/status").json()["exchanges"] == 2
        assert control.get("/_gateway/injections/99").status_code == 400


def test_the_robustness_report_is_written_apart_when_the_gateway_stops(gateway: RunningGateway) -> None:
    gateway.inject(Injection("unavailable", operation="end", observe_s=60))
    with httpx.Client(base_url=gateway.kfr_base_url) as http:
        assert http.delete(relationship(), headers={"CustomerID": "05909803219"}).status_code == 503
    gateway.stop()
    report = json.loads((gateway.settings.record_dir / ROBUSTNESS_FILE).read_text())
    assert "inngår ikke i C-2" in report["note"]
    [injection] = report["injections"]
    assert injection["status"] == "ferdig" and injection["ok"] is False
    assert injection["verdicts"][0]["rule"] == "nothing-lost"
    assert "prøvde aldri igjen" in injection["verdicts"][0]["reason"]


def test_a_batch_over_10_mb_streams_through_and_is_a_finding(gateway: RunningGateway) -> None:
    boundary = "873380600719114776488944"
    customers = ",".join(["05909803219"] * (11 * 1024 * 1024 // 12))
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="customers"\r\n\r\n{customers}\r\n'
            f"--{boundary}--\r\n").encode()
    with httpx.Client(base_url=gateway.kfr_base_url, timeout=60) as http:
        answer = http.post(f"/customers/financialInstitutions/{BANK}/batch", content=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "CorrelationID": str(uuid.uuid4())})
    assert answer.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    [exchange] = gateway.exchanges()
    failed = {v["rule"]: v["reason"] for v in exchange["contract"] if not v["ok"]}
    assert set(failed) >= {"batch-size"} and f"{len(body)} byte" in failed["batch-size"]
    assert exchange["request"]["body"]["size"] == len(body)


def test_a_bank_behind_a_proxy_reaches_kfr_through_it(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY/NO_PROXY are honoured as in a run; the echo server plays the proxy."""
    from conformance.gateway.proxy import upstream_proxy

    monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{upstream.port}")
    monkeypatch.setenv("NO_PROXY", "intern.bank.no")
    assert upstream_proxy("http://intern.bank.no/kar-ws/api/v1") is None
    assert upstream_proxy(upstream.kfr_base_url) is None   # loopback: never proxied
    with (start_gateway(settings("http://kfr.test.invalid/kar-ws/api/v1", None)) as gw,
          httpx.Client(base_url=gw.kfr_base_url) as http):
        seen = http.get(relationship()).json()
    # kfr.test.invalid does not resolve: the answer can only have come through the proxy.
    assert seen["path"] == "/kar-ws/api/v1" + relationship()
