"""How long report.html takes to render, and how big it gets, for a 22-case and a 1 000-case run.

Method: build a realistic finished run with ``tests/report_support.make_run`` (evidence
files on disk, every outcome, a >64 KiB batch body recorded as a summary), then time
``render_report`` (reads every evidence file, redacts, renders) and ``write_report`` (the
same plus an fsynced atomic write). Best and median of ``--repeat`` runs; the first render
also pays for loading the templates. With ``--browser``, headless Chromium loads and lays
out the page once (a screenshot), which shows whether a large page stays usable.

    python3 benchmarks/bench_report.py                # 22 and 1000 cases
    python3 benchmarks/bench_report.py --cases 5000 --repeat 3 --browser
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from report_support import make_run  # noqa: E402

from conformance.report import render_report, write_report  # noqa: E402


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _browser_seconds(report: Path, work: Path) -> float | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    start = time.perf_counter()
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={work / 'profile'}",
            f"--screenshot={work / 'shot.png'}",
            "--window-size=1280,2000",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    return time.perf_counter() - start


def bench(n_cases: int, repeat: int, browser: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        results = Path(tmp) / "results"
        record = make_run(results, n_cases=n_cases)
        exchanges = sum(1 for c in record.cases if c.evidence_file)
        render = _timed(lambda: render_report(record, results), repeat)
        write = _timed(lambda: write_report(record, results), repeat)
        report = results / "report.html"
        size_mib = report.stat().st_size / 2**20
        best, median = min(render), statistics.median(render)
        print(
            f"{n_cases:>6} cases ({exchanges} with evidence): render best {best * 1000:8.1f} ms, "
            f"median {median * 1000:8.1f} ms ({best / n_cases * 1e6:6.0f} µs/case); "
            f"write best {min(write) * 1000:8.1f} ms; page {size_mib:6.2f} MiB"
        )
        if browser:
            seconds = _browser_seconds(report, Path(tmp))
            shown = "chromium missing" if seconds is None else f"{seconds:.2f} s"
            print(f"{'':>6} headless Chromium load + screenshot: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="*", default=[22, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time headless Chromium")
    args = parser.parse_args()
    for n in args.cases:
        bench(n, args.repeat, args.browser)


if __name__ == "__main__":
    main()
