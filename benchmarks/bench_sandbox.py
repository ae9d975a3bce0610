"""Sandbox speed and memory: single POSTs per second over keep-alive, batch ingestion IDs per
second, and the server's peak memory (RSS) while it accepts and ingests a 10 MB batch.

    python3 benchmarks/bench_sandbox.py [--seconds 5] [--clients 4] [--batch-mb 10] [--no-write]

The sandbox runs in its own process (one event loop: one core), like ``sandbox serve``; the
load comes from this process over loopback with ``http.client`` keep-alive connections, so
the client's cost is kept off the server's core. The server's CPU time is read from
/proc, which gives requests per CPU-second of the server alongside the wall-clock rate.

Goals (issue 2): ≥ 1 000 single POSTs/s on one core; ≥ 50 000 IDs/s ingestion of a 10 MB
batch at an unlimited rate. Goal (issue 11): the server's peak RSS while it accepts and
ingests the 10 MB batch ≤ 64 MiB. The peak is the kernel's high-water mark (VmHWM in
/proc/<pid>/status), reset just before the upload by writing 5 to /proc/<pid>/clear_refs.
Figures go to the "## Sandbox" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.ids import synthetic_fodselsnummer, synthetic_orgnr  # noqa: E402
from conformance.sandbox import SandboxSettings, start_sandbox  # noqa: E402
from conformance.sandbox.assertion import obtain_token  # noqa: E402

PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
SECTION = "## Sandbox"
BOUNDARY = "873380600719114776488944"


def _serve(data_dir: str, info: Any, stop: Any) -> None:
    with start_sandbox(SandboxSettings(data_dir=Path(data_dir), ingest_rate=None)) as sb:
        creds = sb.register_bank(synthetic_orgnr(), out_dir=Path(data_dir) / "bank")
        info.put((sb.port, sb.maskinporten_issuer, creds, os.getpid()))
        stop.wait(600)


def _memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or the last reset) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/{pid}/status has no {field}")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_posts(port: int, fid: str, token: str, seconds: float, clients: int) -> dict[str, float]:
    path = f"/kar-ws/api/v1/customers/financialInstitutions/{fid}/relationshipType/DSOPBANK"
    counts = [0] * clients
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        ids = [synthetic_fodselsnummer(rng) for _ in range(2000)]
        i = 0
        while time.monotonic() < deadline:
            headers = {
                "Authorization": f"Bearer {token}",
                "CorrelationID": str(uuid.uuid4()),
                "CustomerID": ids[i % len(ids)],
            }
            conn.request("POST", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status in (200, 201):
                counts[n] += 1
            else:
                errors[n] += 1
            i += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"requests": sum(counts), "errors": sum(errors), "seconds": elapsed}


def _batch_body(megabytes: float) -> tuple[bytes, int]:
    rng = random.Random(42)
    target = int(megabytes * 1024 * 1024) - 400
    parts: list[str] = []
    size = 0
    seen: set[str] = set()
    while size < target:
        cid = synthetic_orgnr(rng) if rng.random() < 0.3 else synthetic_fodselsnummer(rng)
        if cid in seen:
            continue
        seen.add(cid)
        entry = f"{cid}#2019-11-08" if rng.random() < 0.2 else cid
        parts.append(entry)
        size += len(entry) + 1
    text = ",".join(parts)
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\nContent-Type: text/plain\r\n\r\n'
        f"{text}\r\n--{BOUNDARY}--\r\n"
    ).encode()
    return body, len(parts)


def bench_ingestion(
    port: int, fid: str, token: str, megabytes: float, pid: int
) -> dict[str, float]:
    body, count = _batch_body(megabytes)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    peak_before = _memory_mib(pid, "VmHWM")
    rss_before = _memory_mib(pid, "VmRSS")
    _reset_peak(pid)
    cpu_started = _cpu_seconds(pid)
    headers = {
        "Authorization": f"Bearer {token}",
        "CorrelationID": str(uuid.uuid4()),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    started = time.monotonic()
    conn.request(
        "POST",
        f"/kar-ws/api/v1/customers/financialInstitutions/{fid}/batch",
        body=body,
        headers=headers,
    )
    response = conn.getresponse()
    response.read()
    accepted = time.monotonic()
    accept_peak = _memory_mib(pid, "VmHWM")
    cpu_accepted = _cpu_seconds(pid)
    if response.status != 201:
        raise SystemExit(f"batch refused: HTTP {response.status}")
    while True:
        conn.request("GET", "/_sandbox/status")
        status = json.loads(conn.getresponse().read())
        if status["pending_batches"] == 0:
            break
        time.sleep(0.05)
    done = time.monotonic()
    cpu_done = _cpu_seconds(pid)
    conn.close()
    return {
        "ids": count,
        "bytes": len(body),
        "accept_s": accepted - started,
        "ingest_s": done - accepted,
        "accept_cpu_s": cpu_accepted - cpu_started,
        "ingest_cpu_s": cpu_done - cpu_accepted,
        "peak_before_mib": peak_before,
        "rss_before_mib": rss_before,
        "accept_peak_mib": accept_peak,
        "peak_mib": _memory_mib(pid, "VmHWM"),
    }


def write_section(text: str) -> None:
    current = PERFORMANCE_DOC.read_text("utf-8") if PERFORMANCE_DOC.exists() else "# Performance\n"
    start = current.find(f"\n{SECTION}\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(SECTION) + 2)
        rest = current[end + 1 :] if end >= 0 else ""
        updated = current[: start + 1] + text.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    PERFORMANCE_DOC.write_text(updated, "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch-mb", type=float, default=10.0)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/performance.md alone"
    )
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    info, stop = ctx.Queue(), ctx.Event()
    with tempfile.TemporaryDirectory() as tmp:
        server = ctx.Process(target=_serve, args=(tmp, info, stop), daemon=True)
        server.start()
        try:
            port, issuer, creds, pid = info.get(timeout=60)
            token = obtain_token(creds, issuer, ["bits:kundeforhold.write"])
            bench_posts(port, creds.orgnr, token, 1.0, args.clients)  # warm-up
            cpu_before = _cpu_seconds(pid)
            posts = bench_posts(port, creds.orgnr, token, args.seconds, args.clients)
            cpu_posts = _cpu_seconds(pid) - cpu_before
            ingest = bench_ingestion(port, creds.orgnr, token, args.batch_mb, pid)
        finally:
            stop.set()
            server.join(15)
            if server.is_alive():
                server.terminate()

    post_rate = posts["requests"] / posts["seconds"]
    post_per_cpu = posts["requests"] / cpu_posts if cpu_posts else float("nan")
    ingest_rate = ingest["ids"] / ingest["ingest_s"]
    accept_rate = ingest["ids"] / ingest["accept_s"]
    today = time.strftime("%Y-%m-%d")
    verdict_posts = "met" if post_rate >= 1000 else "MISSED"
    verdict_ingest = "met" if ingest_rate >= 50_000 else "MISSED"
    verdict_memory = "met" if ingest["peak_mib"] <= 64 else "MISSED"
    load = os.getloadavg()
    text = f"""{SECTION}

Command: `python3 benchmarks/bench_sandbox.py` (last run {today}, Python {platform.python_version()},
{os.cpu_count()} cores shared with other work, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at
the end; figures vary by ±20 % between runs on a quiet machine, more under load).

Method: the sandbox runs in its own process (one asyncio event loop under uvicorn/h11, i.e. one
core) on a temporary data folder, SQLite in WAL mode. The load generator is this script's
process: {args.clients} threads, each with one keep-alive `http.client` connection, sending
`POST …/relationshipType/DSOPBANK` with a valid token, a fresh CorrelationID and synthetic
fødselsnumre for {args.seconds:g} s after a 1 s warm-up. The server's CPU time comes from
`/proc/<pid>/stat`. Then one batch of {ingest["bytes"] / 1048576:.1f} MB ({ingest["ids"]:,} unique synthetic IDs,
20 % with a start date) is posted at an unlimited ingest rate; "accept" is the time to the
201 (reading, parsing and validating every ID through `conformance/sandbox/identifiers.py`),
"ingest" the
time from the 201 until `/_sandbox/status` shows no pending batch. Memory: the server's
resident set (VmRSS) before the upload, and its peak (VmHWM, reset just before the upload via
`/proc/<pid>/clear_refs`) at the 201 and after ingestion.

| measure | result | goal |
|---|---|---|
| single POSTs, wall clock | {post_rate:,.0f} /s ({posts["requests"]:,} in {posts["seconds"]:.1f} s, {posts["errors"]} errors) | ≥ 1 000 /s — {verdict_posts} |
| single POSTs per server CPU-second | {post_per_cpu:,.0f} /s | |
| batch accept (to 201) | {ingest["accept_s"]:.1f} s = {accept_rate:,.0f} IDs/s | |
| batch ingestion (after 201) | {ingest["ingest_s"]:.1f} s = {ingest_rate:,.0f} IDs/s | ≥ 50 000 /s — {verdict_ingest} |
| server CPU: accept / ingestion | {ingest["accept_cpu_s"]:.1f} s / {ingest["ingest_cpu_s"]:.1f} s = {ingest["ids"] / ingest["ingest_cpu_s"]:,.0f} IDs per CPU-second | |
| server RSS before the upload | {ingest["rss_before_mib"]:.1f} MiB (peak so far {ingest["peak_before_mib"]:.1f} MiB) | |
| peak RSS until the 201 | {ingest["accept_peak_mib"]:.1f} MiB | |
| peak RSS until ingested | {ingest["peak_mib"]:.1f} MiB | ≤ 64 MiB — {verdict_memory} |

Notes: access tokens are validated once and then cached (the expiry is still checked on every
request); a TCP_NODELAY fix on the listening socket removed a 40 ms delayed-ACK stall per
response. Accepting a full 10 MB file is dominated by identifier validation (python-stdnum,
6–8 µs per ID, behind one call, `conformance/sandbox/identifiers.py`), which KFR also must do
before its 201. Wall-clock rates on this shared machine follow the other engineers' load
(the ingestion goal was met at 81 000 IDs/s on a quiet machine on 2026-11-23); the server's
CPU seconds are the steadier comparison.

Memory (issue 11): the upload used to be read whole into memory, copied, split with a regex,
decoded, split into 771 000 strings and tuples, and joined again; ingestion split the stored
list into 771 000 strings once more, and the ingesting connection had a 64 MiB page cache.
Now the body is parsed as it streams (`BatchStream`: the `customers` part goes element by
element to a spooled temporary file, only the element that straddles two reads is kept, in a
bounded form), copied into SQLite with incremental BLOB I/O into its own table (a
`zeroblob()` in the middle of a row made SQLite build all 10 MB in memory), and ingested a
64 KiB window at a time; each 10 000-row chunk is inserted in key order, so a 4 MiB page
cache ingests as fast as 64 MiB did. Before and after, this script back to back on
2026-11-30 at the same load (≈ 4 on 2 cores):

| | peak RSS until the 201 | peak RSS until ingested | accept (wall / server CPU) | ingestion (wall / server CPU) | single POSTs/s (per CPU-second) |
|---|---:|---:|---:|---:|---:|
| before (main at `a2fb2d5`) | 220.0 MiB | 250.9 MiB | 14.0 s / 10.7 s | 37.7 s / 20.4 s | 646 (1 530) |
| after | 52.7 MiB | 62.3 MiB | 12.2 s / 8.9 s | 22.0 s / 14.9 s | 927 (1 668) |

The single-POST goal (met at 3 772 /s on a quiet machine on 2026-11-23) is missed at this
load by the old code too; the gateway layer adds a few dictionary look-ups per request.

The 10 MB limit counts the `customers` part (1 MiB more for the rest of the form); a file
part over it, or a `Content-Length` over both, is answered 413 with `Connection: close` as
soon as it is seen, without reading the rest — measured at the socket level in
`tests/test_sandbox_realistic.py` (the answer and the close arrive with the upload, not after
the 30 s keep-alive).
"""
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"written to {PERFORMANCE_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
