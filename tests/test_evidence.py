"""Evidence: redaction, the journal, and the recording transport over real loopback HTTP.

The KFR-specific recording (token flow, case files of a real run) is in test_auth.py and
test_kfr_client.py against the sandbox; here a tiny loopback server gives full control
over bodies, streaming and dropped connections.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conformance.evidence import (
    MAX_INLINE_BODY,
    REDACTED,
    EvidenceRecorder,
    Journal,
    RecordingTransport,
    operation_for,
    redact_headers,
    redact_text,
)

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzY29wZSI6ImJpdHM6a3VuZGVmb3Job2xkLndyaXRlIn0.c2lnbmF0dXJlX2hlcmU"
PEM_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----"
)


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "text",
    [
        f"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={JWT}",
        f'{{"access_token": "{JWT}", "token_type": "Bearer", "expires_in": 120}}',
        f"Authorization: Bearer {JWT}",
        f"key material follows\n{PEM_KEY}\nand more",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA truncated head without an end",
        '{"password": "hunter2-secret", "user": "x"}',
        "https://kfr.test/cb?access_token=opaque-token-value&state=ok",
    ],
)
def test_redact_text_removes_every_kind_of_secret(text: str) -> None:
    redacted = redact_text(text)
    assert REDACTED in redacted
    for secret in (
        JWT,
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw",
        "MIIEpAIBAAKCAQEA",
        "hunter2-secret",
        "opaque-token-value",
    ):
        assert secret not in redacted


def test_redact_text_keeps_ordinary_kfr_text() -> None:
    text = (
        '{"banks":[{"organizationID":"910000004","bankName":"Testbank AS","activeAccount":false}],'
        ' "errorCode":"KFR-008","errorMessage":"Customer relationship not found"}'
        "05909803219#2019-11-08,922203687"
    )
    assert redact_text(text) == text


def test_redact_text_scrubs_registered_secrets_but_not_tiny_ones() -> None:
    assert redact_text("pass is S3cretPw!", ["S3cretPw!"]) == f"pass is {REDACTED}"
    assert redact_text("a b c", ["b"]) == "a b c"


def test_redact_headers_masks_credentials_and_keeps_spelling() -> None:
    headers = httpx.Headers(
        [
            ("Authorization", f"Bearer {JWT}"),
            ("CustomerID", "05909803219"),
            ("X-Debug", f"token={JWT}"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]
    )
    result = redact_headers(headers)
    assert result["Authorization"] == REDACTED
    assert result["CustomerID"] == "05909803219"
    assert JWT not in result["X-Debug"]
    assert result["Set-Cookie"] == f"{REDACTED}, {REDACTED}"
    assert redact_headers({"proxy-authorization": "Basic dXNlcjpwdw=="}) == {
        "proxy-authorization": REDACTED
    }


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/maskinporten/token", "token"),
        (
            "POST",
            "/kar-ws/api/v1/customers/financialInstitutions/910000004/relationshipType/DSOPBANK",
            "add",
        ),
        (
            "DELETE",
            "/kar-ws/api/v1/customers/financialInstitutions/910000004/relationshipType/DSOPBANK",
            "end",
        ),
        ("POST", "/kar-ws/api/v1/customers/financialInstitutions/910000004/batch", "batch"),
        ("GET", "/kar-ws/api/v1/customers/financialInstitutions/910000004/", "lookup"),
        ("GET", "/kar-ws/api/v1/customers/customerRelationships", "agency_lookup"),
        ("GET", "/kar-ws/api/v1/customers/accountServicingProvider", "account_lookup"),
        ("GET", "/maskinporten/.well-known/oauth-authorization-server", "other"),
        (
            "PUT",
            "/kar-ws/api/v1/customers/financialInstitutions/910000004/relationshipType/DSOPBANK",
            "other",
        ),
    ],
)
def test_operation_is_derived_from_method_and_path(method: str, path: str, operation: str) -> None:
    assert operation_for(method, path) == operation


# ---------------------------------------------------------------- journal


def test_journal_appends_one_line_per_exchange_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "journal.jsonl"
    with Journal(path) as journal:
        journal.append({"seq": 1, "operation": "add"})
        journal.append({"seq": 2, "operation": "end", "note": "æøå"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    assert Journal.read(path)[1]["note"] == "æøå"


def test_journal_survives_a_torn_last_line_and_continues_after_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append({"seq": 1})
        journal.append({"seq": 2})
    # A run killed in the middle of a write leaves half a line behind.
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 3, "operation": "ba')
    assert [e["seq"] for e in Journal.read(path)] == [1, 2]
    # The next process starts on a fresh line, so its exchanges are not glued to the torn one.
    with Journal(path) as journal:
        journal.append({"seq": 4})
    assert [e["seq"] for e in Journal.read(path)] == [1, 2, 4]


def test_journal_read_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert Journal.read(tmp_path / "nothing.jsonl") == []


def test_journal_is_safe_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)

    def write(worker: int) -> None:
        for i in range(25):
            journal.append({"worker": worker, "i": i, "pad": "x" * 2000})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    entries = Journal.read(path)
    assert len(entries) == 100
    assert len(path.read_text().splitlines()) == 100  # no interleaved lines


# ---------------------------------------------------------------- a loopback server


BIG_BODY = b"".join(b"line %05d of a long answer\n" % i for i in range(4000))  # ~108 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        body = self._body()
        if self.path.endswith("/token"):
            answer = json.dumps({"access_token": JWT, "token_type": "Bearer", "expires_in": 120})
            self._send(200, answer.encode(), "application/json")
        else:
            self._send(201, b"", "application/json", correlation=self.headers.get("CorrelationID"))
        self.server.bodies.append(body)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path == "/big":
            self._send(200, BIG_BODY, "text/plain")
        elif self.path == "/drop":
            self.close_connection = True
            self.connection.shutdown(2)  # no answer at all
        else:
            self._send(
                404, b'{"errorCode":"KFR-008","errorMessage":"not found"}', "application/json"
            )

    def _send(self, status: int, body: bytes, ctype: str, correlation: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if correlation:
            self.send_header("CorrelationID", correlation)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.bodies = []  # type: ignore[attr-defined]
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _base(srv: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[EvidenceRecorder]:
    journal = Journal(tmp_path / "journal.jsonl")
    yield EvidenceRecorder(journal)
    journal.close()


def _client(recorder: EvidenceRecorder) -> httpx.Client:
    return httpx.Client(transport=RecordingTransport(httpx.HTTPTransport(), recorder), timeout=5)


def test_exchange_has_the_documented_shape_and_is_redacted(server, recorder, tmp_path) -> None:
    base = _base(server)
    with _client(recorder) as client, recorder.case("KFR-02"):
        client.post(f"{base}/maskinporten/token", data={"grant_type": "x", "assertion": JWT})
        client.post(
            f"{base}/kar-ws/api/v1/customers/financialInstitutions/910000004/relationshipType/DSOPBANK",
            headers={
                "Authorization": f"Bearer {JWT}",
                "CustomerID": "05909803219",
                "CorrelationID": "7d6f2a3e-5b1c-4d0e-9f8a-1b2c3d4e5f60",
            },
        )
    token, add = recorder.exchanges("KFR-02")
    assert set(add) == {
        "case_id",
        "session",
        "seq",
        "attempt",
        "role",
        "operation",
        "correlation_id",
        "started_at",
        "elapsed_ms",
        "request",
        "response",
        "error",
    }
    assert (token["seq"], add["seq"]) == (1, 2)
    assert (token["operation"], add["operation"]) == ("token", "add")
    assert (token["role"], add["role"]) == ("token", "main")
    assert (add["session"], add["attempt"]) == (1, 1)
    # The bearer token is linked to the token exchange by a fingerprint, never kept.
    assert add["request"]["token_sha256"] == token["response"]["token_sha256"]
    assert len(add["request"]["token_sha256"]) == 16
    assert add["correlation_id"] == "7d6f2a3e-5b1c-4d0e-9f8a-1b2c3d4e5f60"
    assert add["request"]["headers"]["Authorization"] == REDACTED
    assert add["request"]["headers"]["CustomerID"] == "05909803219"
    assert add["response"]["status"] == 201
    assert add["started_at"].endswith("Z") and add["elapsed_ms"] >= 0
    assert token["request"]["body"] == f"grant_type=x&assertion={REDACTED}"
    assert json.loads(token["response"]["body"])["access_token"] == REDACTED
    # The server got the real assertion: redaction is for the record only.
    assert JWT.encode() in server.bodies[0]

    case_file = tmp_path / "evidence" / "KFR-02.json"
    recorder.write_case_file("KFR-02", case_file)
    journal_text = (tmp_path / "journal.jsonl").read_text()
    for text in (case_file.read_text(), journal_text):
        assert JWT not in text
    assert json.loads(case_file.read_text())["case_id"] == "KFR-02"
    assert [e["seq"] for e in Journal.read(tmp_path / "journal.jsonl")] == [1, 2]


def test_streaming_response_reaches_the_caller_whole_and_large_bodies_are_summarised(
    server, recorder
) -> None:
    with _client(recorder) as client, recorder.case("big"):
        with client.stream("GET", f"{_base(server)}/big") as response:
            assert recorder.exchanges("big") == []  # nothing read ahead of the caller
            received = b"".join(response.iter_bytes(chunk_size=1000))
        assert received == BIG_BODY
        body = recorder.exchanges("big")[0]["response"]["body"]
    assert len(BIG_BODY) > MAX_INLINE_BODY
    assert body["size"] == len(BIG_BODY)
    assert body["sha256"] == hashlib.sha256(BIG_BODY).hexdigest()
    assert body["head"].splitlines()[0] == "line 00000 of a long answer"
    assert len(body["head"]) <= 2048


def test_large_request_body_is_summarised(server, recorder) -> None:
    payload = ",".join(["05909803219"] * 8000).encode()  # ~96 KiB, like a batch file
    with _client(recorder) as client, recorder.case("batch"):
        client.post(
            f"{_base(server)}/kar-ws/api/v1/customers/financialInstitutions/910000004/batch",
            content=payload,
        )
    body = recorder.exchanges("batch")[0]["request"]["body"]
    assert body["size"] == len(payload)
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()
    assert server.bodies[0] == payload


def test_failed_exchange_is_recorded_with_error_and_no_response(server, recorder) -> None:
    with _client(recorder) as client, recorder.case("drop"), pytest.raises(httpx.TransportError):
        client.get(f"{_base(server)}/drop")
    [exchange] = recorder.exchanges("drop")
    assert exchange["response"] is None
    assert exchange["error"] and "Error" in exchange["error"]

    closed_port = _free_port()
    with _client(recorder) as client, recorder.case("refused"), pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{closed_port}/x")
    assert recorder.exchanges("refused")[0]["error"].startswith("ConnectError")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cases_are_kept_apart_and_unnamed_exchanges_are_not_lost(server, recorder) -> None:
    with _client(recorder) as client:
        client.get(f"{_base(server)}/x")  # before any case: session-level
        with recorder.case("A"):
            client.get(f"{_base(server)}/x")
        recorder.case_id = "B"
        client.get(f"{_base(server)}/x")
        client.get(f"{_base(server)}/x")
    assert len(recorder.exchanges(None)) == 1
    assert [e["seq"] for e in recorder.exchanges("A")] == [1]
    assert [e["seq"] for e in recorder.exchanges("B")] == [1, 2]
    assert recorder.exchanges("B")[0]["response"]["body"].startswith('{"errorCode":"KFR-008"')
    assert sorted(recorder.case_ids()) == ["A", "B"]


def test_registered_password_never_reaches_the_journal(server, tmp_path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    recorder = EvidenceRecorder(journal, secrets=["p12-Passw0rd"])
    with _client(recorder) as client:
        client.post(f"{_base(server)}/x", content=b"debug: p12-Passw0rd")
    journal.close()
    assert "p12-Passw0rd" not in (tmp_path / "j.jsonl").read_text()
    assert os.stat(tmp_path / "j.jsonl").st_mode & 0o077 == 0  # private to the user
