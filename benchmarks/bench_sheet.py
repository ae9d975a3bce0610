"""Time the sheet's part of a run: read + bind the bundled sheet, and write the filled sheet.

    python3 benchmarks/bench_sheet.py [--repeat N] [--rows N]

``--rows`` also times a synthetic sheet of N rows (the bundled cases repeated, other ids)
to show how reading, binding and writing grow. Best and median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sheet_layouts import BUNDLED_SHEET, Layout, build_layout, kfr_like_registry  # noqa: E402

from conformance.binding import bind_cases  # noqa: E402
from conformance.models import CaseResult, Outcome  # noqa: E402
from conformance.sheet import read_sheet  # noqa: E402
from conformance.sheet_writer import write_filled_sheet  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def results(cases) -> list[CaseResult]:
    return [
        CaseResult(
            case_id=c.case_id,
            title=c.title,
            expected=c.expected,
            row=c.row,
            outcome=Outcome.PASSED,
            actual="HTTP 201",
            correlation_ids=["cid"],
            started_at="2026-11-23T09:00:00Z",
        )
        for c in cases
    ]


def bench(path: Path, repeat: int, out_dir: Path) -> dict[str, float]:
    registry = kfr_like_registry()
    info, cases = read_sheet(path)
    done = results(cases)
    read_best, read_median = timed(lambda: read_sheet(path), repeat)
    bind_best, bind_median = timed(lambda: bind_cases(cases, registry), repeat)
    out = out_dir / "utfylt.xlsx"
    write_best, write_median = timed(
        lambda: write_filled_sheet(
            info,
            done,
            out,
            run_by="bench",
            environment="sandbox",
            run_id="bench",
            bank={"orgnr": "910000004", "name": "Bench"},
        ),
        repeat,
    )
    return {
        "rows": len(cases),
        "read": read_best,
        "read_med": read_median,
        "bind": bind_best,
        "bind_med": bind_median,
        "write": write_best,
        "write_med": write_median,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        figures = [bench(BUNDLED_SHEET, args.repeat, tmp_path)]
        if args.rows:
            cases = read_sheet(BUNDLED_SHEET)[1]
            many = (cases * (args.rows // len(cases) + 1))[: args.rows]
            big = build_layout(tmp_path / "stort.xlsx", Layout(ids="other", title_block=True), many)
            figures.append(bench(big, max(1, args.repeat // 2), tmp_path))
    print("| rows | read best (median) | bind best (median) | write filled best (median) |")
    print("|---:|---:|---:|---:|")
    for f in figures:
        print(
            f"| {f['rows']} | {f['read'] * 1000:.0f} ms ({f['read_med'] * 1000:.0f}) "
            f"| {f['bind'] * 1000:.1f} ms ({f['bind_med'] * 1000:.1f}) "
            f"| {f['write'] * 1000:.0f} ms ({f['write_med'] * 1000:.0f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
