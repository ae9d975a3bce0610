"""Benchmark: the whole bundled sheet against the embedded sandbox, and the runner's overhead.

    python3 benchmarks/bench_runner.py [--rounds 5] [--write]

Each round runs the README's main job (``pytest --bank=<orgnr>``) in a fresh process with
a fresh ``KFR_CONFORMANCE_HOME`` and unlimited sandbox ingestion, so the figure excludes the
time KFR's 250 IDs/s ingestion takes (that is KFR's, not ours). Reported per round:

- wall time of the whole process (interpreter start, sandbox start, CA creation on the
  first run of a home, 22 rows, filled sheet, report, signed pack);
- the session time pytest prints (rows only + end-of-session artefacts);
- HTTP exchanges from the journal, the time spent waiting for the server (sum of each
  exchange's ``elapsed_ms``) and the runner's own time per request:
  (rows time − server time) / exchanges, where rows time is the sum of the cases' durations.

``--write`` replaces the ``## Runner`` section of docs/performance.md with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BANK = "311000004"
# Rows that wait on purpose (ingestion polling) or build a 10 MB body: not runner overhead.
WAITING_STEPS = {"batch_with_dates", "batch_without_dates", "history_after_end", "batch_too_large"}


def one_round(home: Path) -> dict[str, float]:
    reports = home / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env["KFR_CONFORMANCE_HOME"] = str(home)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--bank={BANK}",
         f"--reports-dir={reports}", "--ingest-rate=0", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{proc.stdout}\n{proc.stderr}")
    session = float(re.search(r"in ([0-9.]+)s", proc.stdout).group(1))
    run_dir = next((reports / BANK).iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    rows = sum(c.get("duration_s") or 0.0 for c in record["cases"])
    exchanges = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line]
    server_ms = sum(ex.get("elapsed_ms") or 0.0 for ex in exchanges)
    # Overhead only over rows that never sleep: the batch rows poll for ingestion on purpose.
    quick = {c["case_id"]: c["duration_s"] for c in record["cases"]
             if c.get("binding") and c["binding"] not in WAITING_STEPS and c.get("duration_s")}
    quick_ex = [ex for ex in exchanges if ex.get("case_id") in quick]
    quick_server = sum(ex.get("elapsed_ms") or 0.0 for ex in quick_ex) / 1000.0
    return {
        "wall_s": wall, "session_s": session, "rows_s": rows, "exchanges": len(exchanges),
        "server_s": server_ms / 1000.0,
        "overhead_ms_per_request": (sum(quick.values()) - quick_server) * 1000.0 / max(1, len(quick_ex)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            home = Path(tmp) / f"home-{i}"
            results.append(one_round(home))
            r = results[-1]
            print(f"round {i + 1}: wall {r['wall_s']:.2f} s, session {r['session_s']:.2f} s, "
                  f"rows {r['rows_s']:.2f} s, {r['exchanges']} exchanges, server {r['server_s']:.2f} s, "
                  f"runner {r['overhead_ms_per_request']:.2f} ms/request")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    lines = [
        "## Runner",
        "",
        "Method: `python3 benchmarks/bench_runner.py --rounds "
        f"{args.rounds} --write` runs the README's main job (`pytest --bank={BANK}`) in a fresh",
        "process with a fresh home (so the sandbox CA is created each time) and unlimited sandbox",
        "ingestion, excluding the time KFR's 250 IDs/s ingestion takes. \"Rows\" is the sum of the",
        "22 rows' durations; \"server\" the sum of every HTTP exchange's elapsed time from the",
        "journal; runner overhead per request = (rows − server) / exchanges over the rows that never",
        "wait (the batch rows poll for ingestion on purpose, the 413 row builds 10 MB): our client,",
        "recording, fsynced journal, evidence files and step logic.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Medians of {args.rounds} rounds:",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| whole process (start → pack signed) | {med('wall_s'):.2f} s |",
        f"| pytest session (22 rows + filled sheet, report, pack) | {med('session_s'):.2f} s |",
        f"| the 22 rows | {med('rows_s'):.2f} s |",
        f"| HTTP exchanges | {med('exchanges'):.0f} |",
        f"| time waiting for the sandbox | {med('server_s'):.2f} s |",
        f"| runner overhead per request | {med('overhead_ms_per_request'):.2f} ms |",
        "",
        "Goal: the full sheet in under 5 s (excluding KFR's ingestion time): "
        + ("met." if med("wall_s") < 5 else "**not met** — see the rows above for where the time goes."),
        "",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        doc = ROOT / "docs" / "performance.md"
        current = doc.read_text(encoding="utf-8")
        pattern = re.compile(r"## Runner\n.*?(?=\n## |\Z)", re.S)
        current = pattern.sub(text.rstrip() + "\n", current) if pattern.search(current) else current.rstrip() + "\n\n" + text
        doc.write_text(current, encoding="utf-8")


if __name__ == "__main__":
    main()
