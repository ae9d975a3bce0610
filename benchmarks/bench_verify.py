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

    python3 benchmarks/bench_verify.py
    python3 benchmarks/bench_verify.py --seconds 5 --big-mb 10 --repeat 7
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pack_support import CaseDraft, build_signed_pack, make_results_dir, shared_pki  # noqa: E402

from conformance.pack.verify import VerificationPolicy, verify_pack_bytes, verify_path  # noqa: E402

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
        assert verify_pack_bytes(data, policy).ok
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            verify_pack_bytes(data, policy)
            count += 1
        elapsed = time.perf_counter() - start
        print(f"typical pack: {len(data) / 1024:.0f} KiB zip, 22 cases")
        print(
            f"  verify_pack_bytes: {count / elapsed:.0f} packs/s ({elapsed / count * 1000:.2f} ms each)"
        )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
