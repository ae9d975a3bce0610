"""``kfr-conformance sheet PATH``: show what the runner reads from an integration-test sheet.

Per case: id, title, expected status and error code, the step it binds to (or "ikke
automatisert") and whether it is manual; plus the sheet's version and SHA-256. With
``--json`` the same as data, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from conformance.binding import bind_cases, load_bindings_file
from conformance.models import CaseSpec
from conformance.sheet import SheetInfo, read_sheet
from conformance.suite import default_suite_dir, load_suite

NOT_AUTOMATED_NB = "ikke automatisert"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sheet",
        help="vis testtilfellene som leses fra et testark, med forventning og binding",
        description="Les et KFR-testark og vis hvert testtilfelle: ID, tittel, forventet "
        "status og feilkode, hvilket steg det bindes til, og om det er manuelt.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="testarket (.xlsx)")
    parser.add_argument("--json", action="store_true", help="skriv resultatet som JSON")
    parser.add_argument(
        "--bindings",
        type=Path,
        metavar="FILE",
        help="bindingsfil (TOML/JSON) som overstyrer bindingene",
    )
    parser.add_argument(
        "--suite",
        type=Path,
        metavar="DIR",
        help="suite-mappen med steps.py (standard: ./testcases)",
    )
    parser.set_defaults(func=run)


def _case_row(case: CaseSpec) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "title": case.title,
        "expected_status": case.expected.status,
        "expected_error_code": case.expected.error_code,
        "expected_text": case.expected.text,
        "binding": case.binding,
        "binding_source": case.binding_source,
        "manual": case.manual,
        "row": case.row,
    }


def _print_table(info: SheetInfo, cases: list[CaseSpec], suite_name: str, out: TextIO) -> None:
    print(
        f"Testark:   {info.file_name} (arket «{info.worksheet}», overskrift på rad {info.header_row})",
        file=out,
    )
    print(f"Versjon:   {info.version or 'ukjent'}", file=out)
    print(f"SHA-256:   {info.sha256}", file=out)
    print(f"Suite:     {suite_name}", file=out)
    print(file=out)
    headings = ("ID", "Tittel", "Status", "Feilkode", "Binding", "Manuell")
    rows = [
        (
            case.case_id,
            case.title if len(case.title) <= 48 else case.title[:47] + "…",
            str(case.expected.status or "–"),
            case.expected.error_code or "–",
            f"{case.binding} ({case.binding_source})" if case.binding else NOT_AUTOMATED_NB,
            "ja" if case.manual else "nei",
        )
        for case in cases
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headings).rstrip(), file=out)
    print(line.format(*("-" * w for w in widths)).rstrip(), file=out)
    for row in rows:
        print(line.format(*row).rstrip(), file=out)
    bound = sum(1 for c in cases if c.binding and not c.manual)
    manual = sum(1 for c in cases if c.manual)
    unbound = sum(1 for c in cases if not c.binding and not c.manual)
    print(file=out)
    print(
        f"{len(cases)} testtilfeller: {bound} automatisert, {manual} manuelle, "
        f"{unbound} {NOT_AUTOMATED_NB}.",
        file=out,
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    info, cases = read_sheet(args.path)
    suite = load_suite(args.suite if args.suite else default_suite_dir())
    overrides = load_bindings_file(args.bindings) if args.bindings else None
    cases = bind_cases(cases, suite.registry, overrides)
    if args.json:
        payload = {
            "sheet": info.to_dict(),
            "suite": suite.name,
            "cases": [_case_row(case) for case in cases],
        }
        json.dump(payload, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        _print_table(info, cases, suite.name, out)
    return 0
