"""Archive throughput: ``archive add`` and ``verify-all`` over 1 000 typical packs.

Method: build N distinct, really signed packs shaped like a bundled-sheet run (22 cases,
1–3 exchanges each, a ~120 KB report.html, the filled sheet), over 10 banks. Each is
its own run (own CorrelationIDs and evidence), so the replay index holds N runs' worth of
fingerprints with no pair sharing any — as in a real archive (cached in ``--cache`` so a
re-run skips this). Then, each as a real ``kfr-conformance`` process on a fresh archive:

- ``archive add --archive A --trust ca.pem PACKS/`` (folder import: verify, fsynced copy,
  one transaction per pack);
- the same again (every pack a duplicate: hashing and index look-ups only);
- ``archive verify-all`` (read, hash and re-verify every pack, compare with the index);
- ``archive list --json``, ``archive list --replayed`` (the replay self-join over every
  CorrelationID and fingerprint), ``archive export-correlations`` and ``archive html``.

The verifier's own share is measured in-process: ``verify_pack_bytes`` over the same
packs, so the archive's overhead (copy, fsync, index) is the difference.

    python3 benchmarks/bench_archive.py                 # 1000 packs
    python3 benchmarks/bench_archive.py --packs 200 --cache /tmp/kfr-bench-packs
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from archive_support import Bank, restamp_kfr_answers  # noqa: E402
from pack_support import CaseDraft, TinyCA, make_results_dir  # noqa: E402

from conformance.ids import synthetic_orgnr  # noqa: E402
from conformance.pack.build import build_pack  # noqa: E402
from conformance.pack.verify import VerificationPolicy, verify_pack_bytes  # noqa: E402

BANK_COUNT = 10
OPERATIONS = (("token", "add"), ("add", "end"), ("batch",), ("lookup",), ("add", "add", "end"))
CASES = tuple(
    CaseDraft(f"KFR-{i:02d}", operations=OPERATIONS[i % len(OPERATIONS)]) for i in range(1, 23)
)
REPORT_BYTES = 120_000


def _report_html(i: int) -> bytes:
    row = "<tr><td>KFR-{n:02d}</td><td>OK</td><td>HTTP 201 som forventet</td></tr>\n"
    body = "".join(row.format(n=n % 22 + 1) for n in range(REPORT_BYTES // 60))
    return f"<!doctype html><html lang=nb><title>Pakke {i}</title><table>{body}</table>".encode()


def build_packs(out: Path, count: int) -> tuple[Path, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    ca_pem = out / "ca.pem"
    existing = sorted((out / "packs").glob("*.zip")) if (out / "packs").exists() else []
    if ca_pem.exists() and len(existing) >= count:
        return ca_pem, existing[:count]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ca = TinyCA.create("KFR Benchmark Root CA", key_index=30)
    ca.write_pem(ca_pem)
    banks = [
        Bank(synthetic_orgnr(random.Random(7000 + b)), f"Benchmarkbank {b} AS", 31 + b % 4)
        for b in range(BANK_COUNT)
    ]
    base = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
    issued = {
        b: ca.issue(bank.orgnr, bank.name, key_index=bank.key_index) for b, bank in enumerate(banks)
    }
    (out / "packs").mkdir()
    packs = []
    for i in range(count):
        b = i % BANK_COUNT
        folder = make_results_dir(
            out / "runs",
            orgnr=banks[b].orgnr,
            name=banks[b].name,
            cases=CASES,
            started_at=base + dt.timedelta(hours=i),
            seed=i,
        )
        restamp_kfr_answers(folder)  # its own KFR answers, not a copy of another run's
        (folder / "report.html").write_bytes(_report_html(i))
        result = build_pack(
            folder, certificate=issued[b].certificate, private_key=issued[b].private_key
        )
        target = out / "packs" / f"{i:05d}-{result.zip_path.name}"
        shutil.copyfile(result.zip_path, target)
        packs.append(target)
    return ca_pem, packs


def _cli(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=1000)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "kfr-bench-archive-runs"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    ca_pem, packs = build_packs(args.cache, args.packs)
    built = time.perf_counter() - start
    sizes = [p.stat().st_size for p in packs]
    print(
        f"{len(packs)} packs ready in {built:.1f} s; mean size {sum(sizes) / len(sizes) / 1024:.1f} KiB"
    )

    from cryptography import x509

    policy = VerificationPolicy(trust_roots=(x509.load_pem_x509_certificate(ca_pem.read_bytes()),))
    start = time.perf_counter()
    for pack in packs:
        assert verify_pack_bytes(pack.read_bytes(), policy).ok
    verify_only = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="kfr-bench-archive-", dir=args.cache) as work:
        archive = Path(work) / "arkiv"
        trust = ["--archive", str(archive), "--trust", str(ca_pem)]
        folder = str(packs[0].parent)
        add = _cli("archive", "add", *trust, folder)
        again = _cli("archive", "add", *trust, folder)
        verify_all = _cli("archive", "verify-all", *trust)
        listing = _cli("archive", "list", "--archive", str(archive), "--json")
        replayed = _cli("archive", "list", "--archive", str(archive), "--replayed")
        export = _cli(
            "archive", "export-correlations", "--archive", str(archive), str(Path(work) / "ids.csv")
        )
        html = _cli("archive", "html", "--archive", str(archive), str(Path(work) / "nettsted"))
        startup = min(
            _cli("archive", "list", "--archive", str(archive), "--bank", "999999999")
            for _ in range(3)
        )

    n = len(packs)
    rows = [
        ("verify_pack_bytes only (in-process)", verify_only, 0.0),
        ("archive add (new packs)", add, startup),
        ("archive add (all duplicates)", again, startup),
        ("archive verify-all", verify_all, startup),
        ("archive list --json", listing, startup),
        ("archive list --replayed", replayed, startup),
        ("archive export-correlations", export, startup),
        ("archive html", html, startup),
    ]
    print(f"\nprocess start-up (archive list, empty result): {startup * 1000:.0f} ms\n")
    print("| step | wall time | per pack, start-up excluded | packs/s |")
    print("|---|---:|---:|---:|")
    for name, seconds, fixed in rows:
        work_s = max(seconds - fixed, 1e-9)
        print(f"| {name} | {seconds:.2f} s | {work_s / n * 1000:.1f} ms | {n / work_s:.0f} |")


if __name__ == "__main__":
    main()
