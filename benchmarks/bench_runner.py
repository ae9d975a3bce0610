"""Benchmark: the whole bundled sheet against the embedded sandbox, and where its time goes.

    python3 benchmarks/bench_runner.py [--rounds 5] [--before DIR] [--bytecode cache|none]
                                       [--fresh-home] [--write]

Each round runs the README's main job (``pytest --bank=<orgnr>``, from the repository root)
in a fresh process. Reported per round, and as medians:

- wall time of the whole process (interpreter start, pytest and its plugins, sheet, sandbox
  start, 22 rows, filled sheet, report, signed pack, sandbox stop, exit);
- the session time pytest prints (from session start: rows and end-of-session artefacts);
- the rows (sum of the cases' durations) and what is neither: the fixed cost, wall − rows;
- HTTP exchanges from the journal, the time spent waiting for the server (sum of each
  exchange's ``elapsed_ms``) and the runner's own time per request:
  (rows time − server time) / exchanges, over the rows that never wait on purpose.

The sandbox ingests at KFR's 250 IDs/s, the runner's default. One warm-up run per tree
comes first; by default every round reuses its home (the sandbox CA and the bank's
certificate exist, as on a bank's second run); ``--fresh-home`` gives each round a new one.
``--bytecode``: as in ``bench_startup.py`` (``cache``, the default: a bytecode cache of the
runs' own, as a bank's Python keeps; ``none``: nothing written, as this machine's
``PYTHONDONTWRITEBYTECODE=1`` runs them). ``--before DIR`` runs another checkout's main job
too (for example ``git archive <commit> | tar -x -C DIR``), from DIR, alternating with this
tree round by round.

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

from perfdoc import publish

ROOT = Path(__file__).resolve().parent.parent
BANK = "311000004"
# Rows that wait on purpose (ingestion polling) or build and send 10 MB: not runner overhead.
WAITING_STEPS = {"batch_with_dates", "batch_without_dates", "history_after_end", "batch_too_large"}
BYTECODE_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")


def one_round(tree: Path, home: Path, reports: Path, bytecode: str, pycache: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "KFR_")) and k not in (*BYTECODE_ENV, "PYTHONPATH")}
    env["KFR_CONFORMANCE_HOME"] = str(home)
    env["PYTHONPATH"] = str(tree)
    if bytecode == "cache":
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--bank={BANK}", f"--reports-dir={reports}", "-q",
         "-o", f"cache_dir={home / 'pytest-cache'}"],
        cwd=tree, env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run failed in {tree}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    session = float(re.search(r"in ([0-9.]+)s", proc.stdout).group(1))
    run_dir = max((reports / BANK).iterdir(), key=lambda p: p.stat().st_mtime)
    record = json.loads((run_dir / "run.json").read_text())
    rows = sum(c.get("duration_s") or 0.0 for c in record["cases"])
    exchanges = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line]
    server_ms = sum(ex.get("elapsed_ms") or 0.0 for ex in exchanges)
    # Overhead only over rows that never wait: the batch rows poll for ingestion on purpose.
    quick = {c["case_id"]: c["duration_s"] for c in record["cases"]
             if c.get("binding") and c["binding"] not in WAITING_STEPS and c.get("duration_s")}
    quick_ex = [ex for ex in exchanges if ex.get("case_id") in quick]
    quick_server = sum(ex.get("elapsed_ms") or 0.0 for ex in quick_ex) / 1000.0
    oversize = next((c.get("duration_s") or 0.0 for c in record["cases"]
                     if c.get("binding") == "batch_too_large"), 0.0)
    return {
        "wall_s": wall, "session_s": session, "rows_s": rows, "fixed_s": wall - rows,
        "oversize_s": oversize, "exchanges": len(exchanges), "server_s": server_ms / 1000.0,
        "overhead_ms_per_request": (sum(quick.values()) - quick_server) * 1000.0 / max(1, len(quick_ex)),
    }


FIGURES = (
    ("wall_s", "whole process (start → pack signed → exit)", "{:.2f} s"),
    ("session_s", "pytest session (rows + filled sheet, report, pack)", "{:.2f} s"),
    ("rows_s", "the 22 rows", "{:.2f} s"),
    ("oversize_s", "… of which KFR-20 (build and send the over-10 MB batch)", "{:.2f} s"),
    ("fixed_s", "fixed cost (whole process − rows)", "{:.2f} s"),
    ("exchanges", "HTTP exchanges", "{:.0f}"),
    ("server_s", "time waiting for the sandbox", "{:.2f} s"),
    ("overhead_ms_per_request", "runner overhead per request", "{:.2f} ms"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout to run alongside")
    parser.add_argument("--bytecode", choices=("cache", "none"), default="cache")
    parser.add_argument("--fresh-home", action="store_true", help="a new home every round")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    trees = {"after": ROOT} if not args.before else {"before": args.before.resolve(), "after": ROOT}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        base = Path(tmp)
        for name, tree in trees.items():  # warm-up: CA, certificate, bytecode cache
            one_round(tree, base / f"home-{name}", base / f"reports-{name}", args.bytecode,
                      base / "pycache")
        for i in range(args.rounds):
            order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                home = base / (f"home-{name}-{i}" if args.fresh_home else f"home-{name}")
                results[name].append(one_round(tree, home, base / f"reports-{name}", args.bytecode,
                                               base / "pycache"))
                r = results[name][-1]
                print(f"round {i + 1} {name}: wall {r['wall_s']:.2f} s, session {r['session_s']:.2f} s, "
                      f"rows {r['rows_s']:.2f} s (KFR-20 {r['oversize_s']:.2f} s), fixed {r['fixed_s']:.2f} s, "
                      f"{r['exchanges']:.0f} exchanges, server {r['server_s']:.2f} s, "
                      f"runner {r['overhead_ms_per_request']:.2f} ms/request")
            loads.append(os.getloadavg()[0])

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    columns = list(trees)
    lines = [
        "## Runner",
        "",
        "Method: `python3 benchmarks/bench_runner.py --rounds "
        f"{args.rounds}{' --before DIR' if args.before else ''} --bytecode {args.bytecode}"
        f"{' --fresh-home' if args.fresh_home else ''} --write` (the method is in the script's "
        "docstring): the README's main job (`pytest --bank="
        f"{BANK}`) as a whole process, {'a fresh home each round' if args.fresh_home else 'its home reused after a warm-up run'}, "
        + ("a warm bytecode cache" if args.bytecode == "cache" else "no bytecode written")
        + (", the two trees alternating round by round" if args.before else "") + ".",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average (1 min) {min(loads):.2f}–{max(loads):.2f} "
        f"during the rounds. Medians of {args.rounds} rounds:",
        "",
        "| figure | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for key, label, fmt in FIGURES:
        lines.append(f"| {label} | " + " | ".join(fmt.format(med(c, key)) for c in columns) + " |")
    lines.append("")
    publish("## Runner", lines, args.write)


if __name__ == "__main__":
    main()
