"""Starting, stopping and sharing a sandbox: restart keeps everything, concurrency loses
nothing, loopback only, one log line per request without secrets."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.errors import IdentifierError, SandboxError
from conformance.ids import synthetic_fodselsnummer, synthetic_orgnr
from conformance.sandbox import RunningSandbox, SandboxSettings, start_sandbox
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import WRITE_SCOPE


def test_restart_keeps_relationships_clients_ca_and_signing_key(
    tmp_path: Path, bank_api: Callable[..., Any]
) -> None:
    data_dir = tmp_path / "data"
    orgnr, customer = synthetic_orgnr(), synthetic_fodselsnummer()
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as first:
        creds = first.register_bank(orgnr, "Vedvarende Bank AS", tmp_path / "creds")
        api = bank_api(creds, sb=first)
        assert api.add(customer).status_code == 201
        ca_before, token = first.ca_pem, api.token
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as second:
        assert second.ca_pem == ca_before
        again = second.register_bank(orgnr, None, tmp_path / "creds")
        assert again.client_id == creds.client_id and again.name == "Vedvarende Bank AS"
        api = bank_api(again, sb=second)
        assert api.found(customer)
        assert api.add(customer).status_code == 200
        # A token from before the restart (another port) is still signed by this folder's key.
        api.token = token
        assert api.add(synthetic_fodselsnummer()).status_code == 201


def test_in_memory_keeps_the_ca_but_not_the_data(
    tmp_path: Path, bank_api: Callable[..., Any]
) -> None:
    settings = SandboxSettings(data_dir=tmp_path, in_memory=True, ingest_rate=None)
    orgnr, customer = synthetic_orgnr(), synthetic_orgnr()
    with start_sandbox(settings) as first:
        api = bank_api(first.register_bank(orgnr, out_dir=tmp_path / "c"), sb=first)
        assert api.add(customer).status_code == 201
        ca = first.ca_pem
    assert not (tmp_path / "sandbox.sqlite3").exists()
    with start_sandbox(settings) as second:
        assert second.ca_pem == ca
        api = bank_api(second.register_bank(orgnr, out_dir=tmp_path / "c"), sb=second)
        assert not api.found(customer)


def test_a_pending_batch_resumes_after_restart_without_duplicates(
    tmp_path: Path, bank_api: Callable[..., Any]
) -> None:
    data_dir = tmp_path / "data"
    customers = [synthetic_fodselsnummer() for _ in range(30)]
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=20)) as slow:
        creds = slow.register_bank(synthetic_orgnr(), out_dir=tmp_path / "c")
        assert bank_api(creds, sb=slow).batch(",".join(customers)).status_code == 201
        time.sleep(0.4)
        partly = slow.relationship_count(creds.orgnr)
    assert 0 < partly < len(customers)
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as fast:
        assert fast.wait_for_ingestion(10)
        assert fast.relationship_count(creds.orgnr) == len(customers)


def test_batches_of_an_older_data_folder_are_ingested_and_lists_are_deleted(
    tmp_path: Path, bank_api: Callable[..., Any]
) -> None:
    data_dir = tmp_path / "data"
    old, new = [synthetic_fodselsnummer() for _ in range(3)], [synthetic_orgnr() for _ in range(3)]
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as first:
        creds = first.register_bank(synthetic_orgnr(), out_dir=tmp_path / "c")
    # A batch accepted by an earlier version kept its list as text in ``batches.entries``.
    with sqlite3.connect(data_dir / "sandbox.sqlite3") as db:
        db.execute(
            "INSERT INTO batches (fid, correlation_id, total, state, default_start, entries,"
            " received_at) VALUES (?, NULL, 3, 'pending', '2020-01-01', ?, '2020-01-01T00:00:00')",
            (creds.orgnr, ",".join(old)),
        )
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as second:
        api = bank_api(creds, sb=second)
        assert api.batch(",".join(new)).status_code == 201
        assert second.wait_for_ingestion(10)
        assert all(api.found(c, from_date="2020-01-01") for c in old + new)
    with sqlite3.connect(data_dir / "sandbox.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM batch_files").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM batches WHERE entries IS NOT NULL").fetchone() == (
            0,
        )


def test_two_sandboxes_on_one_data_folder_share_everything(
    tmp_path: Path, bank_api: Callable[..., Any]
) -> None:
    """Like two processes on one folder: clients, data and batches are shared, and a batch
    both ingesters can see is stored exactly once."""
    settings = SandboxSettings(data_dir=tmp_path / "data", ingest_rate=None)
    with start_sandbox(settings) as one, start_sandbox(settings) as two:
        creds = one.register_bank(synthetic_orgnr(), out_dir=tmp_path / "c")
        api_one, api_two = bank_api(creds, sb=one), bank_api(creds, sb=two)
        customer = synthetic_fodselsnummer()
        assert api_one.add(customer).status_code == 201
        assert api_two.add(customer).status_code == 200
        batch = [synthetic_orgnr() for _ in range(3000)]
        assert api_two.batch(",".join(batch)).status_code == 201
        assert one.wait_for_ingestion(20) and two.wait_for_ingestion(20)
        assert one.relationship_count(creds.orgnr) == len(set(batch)) + 1


def test_concurrent_mixed_requests_lose_and_corrupt_nothing(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Path
) -> None:
    """8 clients × 500 requests (add, end, lookup, batch) on one bank and a shared pool of
    customers: the database must hold exactly what was acknowledged."""
    sb = sandbox_factory()
    creds = sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "c")
    token = bank_api(creds, sb=sb).token
    pool = [synthetic_fodselsnummer() for _ in range(200)]
    acks: Counter[str] = Counter()
    batch_ids: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        api = bank_api(creds, sb=sb)
        api.token = token
        local: Counter[str] = Counter()
        mine: list[str] = []
        for _ in range(500):
            roll = rng.random()
            customer = rng.choice(pool)
            if roll < 0.45:
                status = api.add(customer).status_code
                local[{201: "added", 200: "existed"}.get(status, f"add {status}")] += 1
            elif roll < 0.8:
                status = api.end(customer).status_code
                local[{204: "ended", 404: "missing"}.get(status, f"end {status}")] += 1
            elif roll < 0.98:
                status = api.lookup(customer).status_code
                local["looked" if status == 200 else f"lookup {status}"] += 1
            else:
                fresh = [synthetic_orgnr(rng) for _ in range(20)]
                status = api.batch(",".join(fresh)).status_code
                if status == 201:
                    mine += fresh
                local["batch" if status == 201 else f"batch {status}"] += 1
        with lock:
            acks.update(local)
            batch_ids.extend(mine)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert sb.wait_for_ingestion(20)
    elapsed = time.monotonic() - started
    unexpected = {k: v for k, v in acks.items() if " " in k}
    assert not unexpected, unexpected
    assert sum(acks.values()) == 8 * 500
    batch_rows = len(set(batch_ids) - set(pool))
    assert sb.relationship_count(creds.orgnr) == acks["added"] + batch_rows
    assert (
        sb.relationship_count(creds.orgnr, active_only=True)
        == acks["added"] - acks["ended"] + batch_rows
    )
    assert elapsed < 30, elapsed


# ---------------------------------------------------------------- binding


def test_only_loopback_unless_allowed() -> None:
    with pytest.raises(SandboxError, match="loopback"):
        SandboxSettings(host="0.0.0.0")
    with pytest.raises(SandboxError):
        SandboxSettings(host="192.0.2.10")
    assert SandboxSettings(host="0.0.0.0", allow_non_loopback=True).host == "0.0.0.0"
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        SandboxSettings(host=host)


def test_bad_settings_are_refused_clearly() -> None:
    for bad in (
        {"ingest_rate": -1},
        {"port": 70000},
        {"ingest_rate": float("inf")},
        {"max_batch_bytes": 0},
    ):
        with pytest.raises(SandboxError):
            SandboxSettings(**bad)


def test_a_busy_port_is_a_sandbox_error(sandbox: RunningSandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=str(sandbox.port)):
        start_sandbox(SandboxSettings(data_dir=tmp_path, port=sandbox.port))


def test_register_bank_refuses_a_bad_orgnr(sandbox: RunningSandbox, tmp_path: Path) -> None:
    with pytest.raises(IdentifierError):
        sandbox.register_bank("123456789", out_dir=tmp_path)


def test_default_data_folder_is_under_the_conformance_home(set_home: Path) -> None:
    with start_sandbox(SandboxSettings(ingest_rate=None)) as sb:
        assert sb.data_dir == set_home / "sandbox"
        assert (set_home / "sandbox" / "ca-cert.pem").read_bytes() == sb.ca_pem


# ---------------------------------------------------------------- logging


def test_one_log_line_per_request_with_correlation_id_and_no_secrets(
    sandbox: RunningSandbox,
    bank_api: Callable[..., Any],
    bank: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="conformance.sandbox")
    api = bank_api(bank)
    correlation_id = "11111111-2222-4333-8444-555555555555"
    api.add(synthetic_fodselsnummer(), CorrelationID=correlation_id)
    api.add("bad", CorrelationID=correlation_id)
    obtain_token(bank, sandbox.maskinporten_issuer, [WRITE_SCOPE])
    deadline = time.monotonic() + 2
    while (
        time.monotonic() < deadline
        and sum(correlation_id in r.getMessage() for r in caplog.records) < 2
    ):
        time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "conformance.sandbox"]
    mine = [line for line in lines if correlation_id in line]
    assert len(mine) == 2
    path = f"/kar-ws/api/v1/customers/financialInstitutions/{bank.orgnr}/relationshipType/DSOPBANK"
    assert mine[0].startswith(f"POST {path} 201 CorrelationID={correlation_id}")
    assert mine[1].startswith(f"POST {path} 400 ")
    assert any(line.startswith("POST /maskinporten/token 200") for line in lines)
    text = caplog.text
    assert api.token not in text and "Bearer" not in text and "eyJ" not in text


def test_the_sandbox_serves_its_openapi_description(sandbox: RunningSandbox) -> None:
    response = httpx.get(sandbox.kfr_base_url + "/openapi.yaml")
    assert response.status_code == 200 and b"addCustomerDSOPGWByFile" in response.content
