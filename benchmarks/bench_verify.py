"""How fast Bits can verify packs: packs per second for a typical pack, and the cost of a
pack with a 10 MB evidence file compared with ``sha256sum`` of the same bytes.

Method: build real, signed packs with ``tests/pack_support`` (a test CA with an issuing
CA, our bank's signing certificate, a results folder as the runner leaves it). The typical
pack has 22 cases (the bundled sheet's size) with 1–3 KFR calls each, the filled sheet,
report.html, run.json, the journal and the original sheet. The large pack has the same
plus one evidence file of ``--big-mb`` MB of random text (compresses about 2:1, like real
recorded bodies). ``verify_pack_bytes`` runs in-process on the zip's bytes: every check,
the safe zip reader, CMS parsing, path validation. ``sha256sum`` (a process per run) hashes
the same zip and the same uncompressed evidence file; ``hashlib`` the same bytes
in-process. Best and median of ``--repeat`` runs.

Trusted time and revocation: the same typical pack is also signed with an RFC 3161
timestamp from a real sandbox TSA (started on loopback for the run), and verified with
the default policy (timestamp judged: imprint, token signature, TSA chain at genTime) and
with the strict policy against a certificate of the sandbox CA (timestamp required,
revocation ``hard`` through the sandbox's OCSP responder: the first verification asks over
HTTP, later ones use the process cache, as ``archive verify-all`` does).

    python3 benchmarks/bench_verify.py
    python3 benchmarks/bench_verify.py --seconds 5 --big-mb 10 --repeat 7
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pack_support import (  # noqa: E402
    BANK_NAME,
    BANK_ORGNR,
    CaseDraft,
    build_signed_pack,
    make_results_dir,
    shared_pki,
)

from conformance.pack.build import build_pack  # noqa: E402
from conformance.pack.revocation import clear_cache  # noqa: E402
from conformance.pack.verify import VerificationPolicy, verify_pack_bytes, verify_path  # noqa: E402
from conformance.sandbox import SandboxSettings, start_sandbox  # noqa: E402

_OPERATIONS = (("token", "add"), ("add", "end"), ("batch",), ("lookup",), ("add", "add", "end"))


def typical_cases(count: int = 22) -> tuple[CaseDraft, ...]:
    return tuple(
        CaseDraft(f"KFR-{i:02d}", operations=_OPERATIONS[i % len(_OPERATIONS)])
        for i in range(1, count + 1)
    )


def _times(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _fmt(times: list[float]) -> str:
    return f"{min(times) * 1000:.1f} ms (median {statistics.median(times) * 1000:.1f})"


def _throughput(data: bytes, policy: VerificationPolicy, seconds: float) -> str:
    """Packs per second and milliseconds per pack over ``seconds`` (wall clock), and the
    same per second of this process's CPU time, which a busy shared machine disturbs less."""
    report = verify_pack_bytes(data, policy)
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        verify_pack_bytes(data, policy)
        count += 1
    elapsed = time.perf_counter() - start
    cpu_rate = count / max(time.process_time() - cpu, 1e-9)
    return (
        f"{count / elapsed:.0f} packs/s ({elapsed / count * 1000:.2f} ms each; "
        f"{cpu_rate:.0f} packs per CPU-second; load average {_load()})"
    )


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _interleaved_cpu(packs: dict[str, bytes], policy: VerificationPolicy, rounds: int) -> None:
    """CPU time per verification, the packs taking turns, so that the machine's other load
    falls on each alike: the difference is what the timestamp costs."""
    times: dict[str, list[float]] = {name: [] for name in packs}
    for _ in range(rounds):
        for name, data in packs.items():
            start = time.process_time()
            verify_pack_bytes(data, policy)
            times[name].append(time.process_time() - start)
    for name, values in times.items():
        values.sort()
        p10, median = values[len(values) // 10], statistics.median(values)
        print(
            f"  {name}: CPU {p10 * 1000:.2f} ms (p10) → {1 / p10:.0f} packs per CPU-second, "
            f"median {median * 1000:.2f} ms → {1 / median:.0f}"
        )


def trusted_time(work: Path, seconds: float, repeat: int, plain: bytes) -> None:
    pki = shared_pki()
    with start_sandbox(SandboxSettings(data_dir=work / "sandbox", ingest_rate=None)) as sb:
        stamped = build_signed_pack(
            make_results_dir(work / "stamped", cases=typical_cases()), tsa_url=sb.tsa_url
        )
        assert stamped.timestamped
        data = stamped.zip_path.read_bytes()
        policy = VerificationPolicy(
            trust_roots=(pki.root.certificate,), tsa_trust_roots=(sb.ca.cert,)
        )
        print(f"typical pack, timestamped: {_throughput(data, policy, seconds)}")
        print("typical pack without and with a timestamp, interleaved:")
        _interleaved_cpu({"untimestamped": plain, "timestamped": data}, policy, 300)

        issued = sb.ca.issue(BANK_ORGNR, BANK_NAME)  # names the sandbox's OCSP responder
        strict_pack = build_pack(
            make_results_dir(work / "strict", cases=typical_cases()),
            certificate=issued.cert,
            private_key=issued.key,
            tsa_url=sb.tsa_url,
        ).zip_path.read_bytes()
        strict = VerificationPolicy.strict(trust_roots=(sb.ca.cert,))

        def first() -> None:
            clear_cache()
            assert verify_pack_bytes(strict_pack, strict).ok

        print(f"  strict, OCSP over HTTP (uncached): {_fmt(_times(first, repeat))}")
        print(f"  strict, OCSP answer cached: {_throughput(strict_pack, strict, seconds)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on throughput")
    parser.add_argument("--big-mb", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    pki = shared_pki()
    policy = VerificationPolicy(trust_roots=(pki.root.certificate,))
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        typical = build_signed_pack(make_results_dir(work / "typical", cases=typical_cases()))
        data = typical.zip_path.read_bytes()
        print(f"typical pack: {len(data) / 1024:.0f} KiB zip, 22 cases")
        print(f"  verify_pack_bytes: {_throughput(data, policy, args.seconds)}")
        print(
            f"  verify_path (results folder): {_fmt(_times(lambda: verify_path(typical.zip_path.parent, policy), args.repeat))}"
        )

        big_mb = args.big_mb
        big = build_signed_pack(
            make_results_dir(work / "big", cases=typical_cases(), evidence_padding=big_mb << 20)
        )
        big_data = big.zip_path.read_bytes()
        evidence = big.zip_path.parent / "evidence" / "KFR-01.json"
        assert verify_pack_bytes(big_data, policy).ok
        print(
            f"large pack: {len(big_data) / 2**20:.1f} MiB zip, "
            f"evidence file {evidence.stat().st_size / 2**20:.1f} MiB uncompressed"
        )
        print(
            f"  verify_pack_bytes:            {_fmt(_times(lambda: verify_pack_bytes(big_data, policy), args.repeat))}"
        )
        print(
            f"  verify_path (results folder): {_fmt(_times(lambda: verify_path(big.zip_path.parent, policy), args.repeat))}"
        )
        sha256sum = shutil.which("sha256sum")
        if sha256sum:
            for label, path in (("the zip", big.zip_path), ("the evidence file", evidence)):

                def run(p: Path = path) -> None:
                    subprocess.run([sha256sum, str(p)], check=True, capture_output=True)

                print(f"  sha256sum of {label}: {_fmt(_times(run, args.repeat))}")
        print(
            f"  hashlib.sha256 of the evidence bytes: {_fmt(_times(lambda: hashlib.sha256(evidence.read_bytes()).digest(), args.repeat))}"
        )
        trusted_time(work, args.seconds, args.repeat, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
