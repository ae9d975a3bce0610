"""Runner overhead per HTTP request: our client + evidence recording vs. a raw httpx call.

Starts the embedded sandbox on loopback (no latency, unlimited ingestion), registers a
synthetic bank, and times the same KFR lookup three ways, interleaved so that drift in the
machine's load hits all of them alike:

  raw       httpx.Client.get with the headers and a bearer token prepared beforehand
  client    KfrClient.lookup with MaskinportenAuth (cached token), no recording
  memory    the same through RecordingTransport, kept in memory only
  recorded  the same through RecordingTransport, journalled to disk (fsync per exchange)

The overhead is the difference of medians against ``raw``; the server's own time is in
all of them and cancels out.

The sandbox's listening socket is created without ``proto=IPPROTO_TCP``, so asyncio does
not set TCP_NODELAY on its connections: a response whose body is written after its
headers then waits for the client's delayed ACK (about 40 ms, at random per connection),
which would drown the figures. Until the sandbox binds with IPPROTO_TCP, this script
binds the sandbox's socket that way itself; ``--as-is`` measures the sandbox unchanged.

    python3 benchmarks/bench_client.py [--requests 400] [--warmup 40] [--as-is]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.auth import Credentials, MaskinportenAuth, MaskinportenClient
from conformance.evidence import EvidenceRecorder, Journal, RecordingTransport
from conformance.ids import synthetic_fodselsnummer
from conformance.kfr import KfrClient, make_http_client
from conformance.sandbox import SandboxSettings, start_sandbox

ORGNR = "910000004"
SCOPE = "bits:kundeforhold.write"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _bind_with_tcp_nodelay() -> None:
    import socket

    from conformance.sandbox import server

    def bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(512)
        sock.setblocking(False)
        return sock

    server._bind = bind  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="timed requests per variant")
    parser.add_argument("--warmup", type=int, default=40, help="untimed requests per variant")
    parser.add_argument("--as-is", action="store_true", help="keep the sandbox's own socket")
    args = parser.parse_args()
    if not args.as_is:
        _bind_with_tcp_nodelay()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        settings = SandboxSettings(data_dir=tmp_path / "sandbox", ingest_rate=None)
        with start_sandbox(settings) as sb:
            bank = sb.register_bank(ORGNR, name="Benchbank AS", out_dir=tmp_path / "creds")
            creds = Credentials.load(Path(bank.p12), password=bank.password)

            plain_http = make_http_client(timeout_s=10)
            mp = MaskinportenClient(
                issuer=sb.maskinporten_issuer,
                client_id=bank.client_id,
                credentials=creds,
                http=plain_http,
                token_endpoint=sb.token_endpoint,
            )
            auth = MaskinportenAuth(mp, [SCOPE])
            client = KfrClient(sb.kfr_base_url, ORGNR, http=plain_http, auth=auth)

            journal = Journal(tmp_path / "journal.jsonl")
            recorder = EvidenceRecorder(journal)
            recorded_http = make_http_client(
                timeout_s=10, wrap=lambda t: RecordingTransport(t, recorder)
            )
            recorded = KfrClient(sb.kfr_base_url, ORGNR, http=recorded_http, auth=auth)
            in_memory = EvidenceRecorder()
            memory_http = make_http_client(
                timeout_s=10, wrap=lambda t: RecordingTransport(t, in_memory)
            )
            memory = KfrClient(sb.kfr_base_url, ORGNR, http=memory_http, auth=auth)

            customer = synthetic_fodselsnummer()
            assert client.add(customer).status in (200, 201)
            token = mp.token([SCOPE]).value
            raw_http = httpx.Client(timeout=10)
            url = f"{sb.kfr_base_url}/customers/financialInstitutions/{ORGNR}/"

            def raw() -> None:
                headers = {
                    "Authorization": f"Bearer {token}",
                    "CustomerID": customer,
                    "CorrelationID": str(uuid.uuid4()),
                }
                r = raw_http.get(url, headers=headers)
                assert r.status_code == 200, r.status_code

            def ours() -> None:
                assert client.lookup(customer).status == 200

            def ours_in_memory() -> None:
                assert memory.lookup(customer).status == 200

            def ours_recorded() -> None:
                assert recorded.lookup(customer).status == 200

            variants: dict[str, Callable[[], None]] = {
                "raw": raw,
                "client": ours,
                "memory": ours_in_memory,
                "recorded": ours_recorded,
            }
            for fn in variants.values():
                for _ in range(args.warmup):
                    fn()
            timings: dict[str, list[float]] = {name: [] for name in variants}
            with recorder.case("bench"):
                for _ in range(args.requests):
                    for name, fn in variants.items():
                        t0 = time.perf_counter()
                        fn()
                        timings[name].append((time.perf_counter() - t0) * 1000.0)
            journal.close()
            journal_bytes = (tmp_path / "journal.jsonl").stat().st_size
            recorded_n = len(recorder.exchanges("bench"))
            for c in (raw_http, plain_http, memory_http, recorded_http):
                c.close()

    base = statistics.median(timings["raw"])
    print(f"{args.requests} lookups per variant against the sandbox on loopback (ms per request)")
    print(f"{'variant':<10} {'median':>8} {'p90':>8} {'overhead':>9}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:<10} {median:8.3f} {_percentile(values, 0.9):8.3f} {median - base:+9.3f}")
    print(f"journal: {recorded_n} exchanges, {journal_bytes / max(1, recorded_n):.0f} bytes each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
