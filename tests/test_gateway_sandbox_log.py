"""The sandbox's request log: the gateway's contract verdicts for a core system that talks
to ``sandbox serve`` directly — in the log file, on ``sandbox log`` and on /_sandbox/log."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.cli import main
from conformance.ids import synthetic_fodselsnummer
from conformance.sandbox import BankCredentials, RunningSandbox
from conformance.sandbox.request_log import LOG_FILE, RequestLogMiddleware, read_log


def relationship(bank: BankCredentials) -> str:
    return f"/customers/financialInstitutions/{bank.orgnr}/relationshipType/DSOPBANK"


def send_twice_with_one_correlation_id(
    sb: RunningSandbox, bank: BankCredentials, token: str, customer: str = ""
) -> str:
    cid = str(uuid.uuid4())
    with httpx.Client(base_url=sb.kfr_base_url) as http:
        for who in (customer or synthetic_fodselsnummer(), synthetic_fodselsnummer()):
            http.post(relationship(bank), headers={"Authorization": f"Bearer {token}",
                                                    "CorrelationID": cid, "CustomerID": who})
    return cid


def test_each_request_is_logged_with_the_contracts_verdicts(
    sandbox: RunningSandbox, bank: BankCredentials, sandbox_token: Any
) -> None:
    token = sandbox_token(bank)
    cid = send_twice_with_one_correlation_id(sandbox, bank, token)
    entries, _ = read_log(sandbox.data_dir, bank.orgnr)
    first, second = entries[-2:]
    assert (first["status"], second["status"]) == (201, 201)
    assert first["contract"] == [] and {"correlation-id-unique", "token-consumer"} <= set(first["passed"])
    failed = second["contract"]
    assert [v["rule"] for v in failed] == ["correlation-id-unique"] and cid in failed[0]["reason"]
    assert "correlation-id-unique" not in second["passed"]
    assert second["token_claims"]["consumer"]["ID"] == f"0192:{bank.orgnr}"
    assert token not in (sandbox.data_dir / LOG_FILE).read_text()


def test_sandbox_log_prints_a_banks_requests_and_findings(
    sandbox: RunningSandbox, bank: BankCredentials, other_bank: BankCredentials, sandbox_token: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    send_twice_with_one_correlation_id(sandbox, bank, sandbox_token(bank))
    send_twice_with_one_correlation_id(sandbox, other_bank, sandbox_token(other_bank))
    assert main(["sandbox", "log", "--data-dir", str(sandbox.data_dir), "--bank", bank.orgnr]) == 0
    out = capsys.readouterr().out
    assert out.count(f" {bank.orgnr} POST add ") == 2 and other_bank.orgnr not in out
    assert "→ 201" in out and "    FUNN [correlation-id-unique] klienten brukte CorrelationID" in out
    assert main(["sandbox", "log", "--data-dir", str(sandbox.data_dir), "--bank", bank.orgnr,
                 "--json", "--last", "1"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["bank"] == bank.orgnr
    assert main(["sandbox", "log", "--data-dir", str(sandbox.data_dir), "--bank", "123"]) == 2
    assert "gyldig organisasjonsnummer" in capsys.readouterr().err


def test_sandbox_log_follow_shows_new_requests_as_they_come(
    sandbox: RunningSandbox, bank: BankCredentials, sandbox_token: Any
) -> None:
    token = sandbox_token(bank)
    follower = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "sandbox", "log", "--follow", "--last", "0",
         "--data-dir", str(sandbox.data_dir), "--bank", bank.orgnr],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    try:
        assert follower.stderr is not None and follower.stdout is not None
        assert "Følger" in follower.stderr.readline()   # positioned at the end of the log
        threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
        customer = synthetic_fodselsnummer()
        send_twice_with_one_correlation_id(sandbox, bank, token, customer)
        first = lines.get(timeout=20)
        assert f"POST add {customer} → 201" in first
    finally:
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=20) == 0


def test_the_log_page_escapes_what_clients_send(
    sandbox: RunningSandbox, bank: BankCredentials, sandbox_token: Any
) -> None:
    hostile = '<script>alert("x")</script>'
    with httpx.Client(base_url=sandbox.base_url) as http:
        answer = http.post("/kar-ws/api/v1" + relationship(bank), headers={
            "Authorization": f"Bearer {sandbox_token(bank)}", "CorrelationID": str(uuid.uuid4()),
            "CustomerID": hostile})
        assert answer.status_code == 400
        page = http.get("/_sandbox/log", params={"bank": bank.orgnr})
        as_json = http.get("/_sandbox/log.json", params={"bank": bank.orgnr}).json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert hostile not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert "[customer-id-valid]" in page.text
    assert {e["bank"] for e in as_json} == {bank.orgnr} and as_json[-1]["customer_id"] == hostile


def test_the_log_page_answers_loopback_only(sandbox: RunningSandbox) -> None:
    middleware = RequestLogMiddleware.__new__(RequestLogMiddleware)   # only the gate is used
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/_sandbox/log", "headers": [],
             "query_string": b"", "client": ("192.0.2.10", 40000)}
    asyncio.run(middleware._page(scope, receive, send))
    assert sent[0]["status"] == 403


def test_a_missing_log_is_a_message_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "log", "--data-dir", str(tmp_path)]) == 0
    assert "Ingen forespørsler i loggen" in capsys.readouterr().err


def test_a_batch_is_judged_as_it_streams_past(
    sandbox: RunningSandbox, sandbox_token: Any, tmp_path: Path
) -> None:
    """A batch is never held by the log: it is read in the pieces it arrives in, and the
    rules that need its customers still see them — here a first load holding a
    relationship the client itself ended."""
    from conformance.ids import synthetic_orgnr

    bank = sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path / "bank")
    token = sandbox_token(bank)
    ended, kept = synthetic_fodselsnummer(), synthetic_fodselsnummer()
    others = [synthetic_fodselsnummer() for _ in range(3_000)]
    with httpx.Client(base_url=sandbox.kfr_base_url, timeout=30) as http:
        def call(method: str) -> int:
            return http.request(method, relationship(bank), headers={
                "Authorization": f"Bearer {token}", "CorrelationID": str(uuid.uuid4()),
                "CustomerID": ended}).status_code
        assert (call("POST"), call("DELETE")) == (201, 204)
        body = ('--B\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
                '--B\r\nContent-Disposition: form-data; name="customers"\r\n\r\n'
                + ",".join([*others[:1500], ended, kept, *others[1500:]]) + "\r\n--B--\r\n").encode()
        pieces = (body[i:i + 997] for i in range(0, len(body), 997))
        answer = http.post(f"/customers/financialInstitutions/{bank.orgnr}/batch", content=pieces,
                           headers={"Authorization": f"Bearer {token}", "CorrelationID": str(uuid.uuid4()),
                                    "Content-Type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 201
    entries, _ = read_log(sandbox.data_dir, bank.orgnr)
    batch = entries[-1]
    assert batch["operation"] == "batch"
    assert [v["rule"] for v in batch["contract"]] == ["first-load-without-ended"]
    assert ended in batch["contract"][0]["reason"] and kept not in batch["contract"][0]["reason"]
    assert {"batch-multipart", "batch-customer-lines", "boundary-unquoted"} <= set(batch["passed"])
