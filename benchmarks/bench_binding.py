"""Measure how binding generalises: sheets written in other words than ours.

    python3 benchmarks/bench_binding.py [--json] [--time N]

Builds every sheet of ``tests/binding_corpus.py`` (tuned and held out), reads it with
``read_sheet``, binds it with the KFR suite's real step registry (``testcases/steps.py``)
and scores each row against its truth: bound to the right step, bound to a wrong step
(a decoy bound to anything counts as wrong), or left unbound. For the unbound rows it
also scores what ``sheet --suggest`` would offer. The bundled sheet's own layouts
(``tests/sheet_layouts.py``) are measured too, as a check that nothing regressed at home.
``--time N`` also times binding with the real registry (best and median of N runs).
Figures and method: ``docs/binding.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from binding_corpus import HELD_OUT, SEEN, TUNED, CorpusSheet, Row, measure  # noqa: E402
from sheet_layouts import EXPECTED_BINDINGS, LAYOUTS, build_layout, bundled_cases  # noqa: E402

from conformance.sheet import read_sheet  # noqa: E402
from conformance.suite import default_suite_dir, load_suite  # noqa: E402


def _own_layouts(directory: Path) -> CorpusSheet:
    """The bundled sheet's alternative layouts as one corpus sheet (truth from our ids)."""
    by_description = {c.description: c.case_id for c in bundled_cases()}
    rows: list[Row] = []
    for name, layout in sorted(LAYOUTS.items()):
        _, cases = read_sheet(build_layout(directory / f"layout-{name}.xlsx", layout))
        for case in cases:
            original = by_description.get(case.description)
            rows.append(
                Row(
                    f"{name}:{case.case_id}",
                    case.title,
                    case.expected.text,
                    EXPECTED_BINDINGS[original] if original else None,
                    description=case.description,
                    test_data=case.test_data,
                    preconditions=case.preconditions,
                    category=case.category,
                    type="Manuell" if case.manual else "",
                )
            )
    columns = {
        "id": "Testcase-ID",
        "category": "Kategori",
        "title": "Tittel",
        "type": "Type",
        "description": "Beskrivelse",
        "preconditions": "Forutsetninger",
        "test_data": "Testdata",
        "expected": "Forventet resultat",
    }
    return CorpusSheet("own_layouts", "nb", columns, tuple(rows))


def _timings(registry: object, repeat: int) -> list[tuple[int, float, float]]:
    """(rows, best, median) seconds to bind the bundled sheet's cases with the real
    registry, as they are and repeated to 1 000 rows under other ids (all bind by text)."""
    from dataclasses import replace

    from conformance.binding import bind_cases

    cases = bundled_cases()
    many = [
        replace(c, case_id=f"T{n}-{i}")
        for n in range(1000 // len(cases) + 1)
        for i, c in enumerate(cases)
    ][:1000]
    figures = []
    for sample in (cases, many):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            bind_cases(sample, registry)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
        figures.append((len(sample), min(times), statistics.median(times)))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--time", type=int, metavar="N", default=0, help="also time binding, best of N runs"
    )
    args = parser.parse_args(argv)
    registry = load_suite(default_suite_dir()).registry
    report: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="sheetread-bench-") as tmp:
        directory = Path(tmp)
        groups = {
            "tuned": TUNED,
            "seen": SEEN,
            "held out": HELD_OUT,
            "own sheet": (_own_layouts(directory),),
        }
        for group, sheets in groups.items():
            report[group] = [
                {**asdict(score), "correct_rate": score.correct_rate}
                for score in measure(sheets, registry, directory)
            ]
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(
        "| set | sheet | should run | bound right | bound wrong | unbound | decoys left unbound "
        "| suggest: top right | suggest: active right / wrong |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for group, scores in report.items():
        totals = dict.fromkeys(
            (
                "should_run",
                "correct",
                "wrong",
                "unbound",
                "decoys",
                "decoys_unbound",
                "suggested_right",
                "confident_right",
                "confident_wrong",
            ),
            0,
        )
        for s in scores:
            row = {k: (len(v) if isinstance(v, list) else v) for k, v in s.items()}
            for key in totals:
                totals[key] += row[key]  # type: ignore[operator]
            print(_line(group, str(s["name"]), row))
        print(_line(f"**{group}**", "**all**", totals))
    if args.time:
        print()
        print("| rows | bind best (median) |")
        print("|---:|---:|")
        for rows, best, median in _timings(registry, args.time):
            print(f"| {rows} | {best * 1000:.1f} ms ({median * 1000:.1f}) |")
    return 0


def _line(group: str, name: str, r: dict[str, object]) -> str:
    rate = r["correct"] / r["should_run"] if r["should_run"] else 1.0  # type: ignore[operator]
    return (
        f"| {group} | {name} | {r['should_run']} | {r['correct']} ({rate:.0%}) | {r['wrong']} "
        f"| {r['unbound']} | {r['decoys_unbound']}/{r['decoys']} | {r['suggested_right']} "
        f"| {r['confident_right']} / {r['confident_wrong']} |"
    )


if __name__ == "__main__":
    sys.exit(main())
