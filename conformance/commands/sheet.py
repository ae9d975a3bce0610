"""``kfr-conformance sheet PATH``: show what the runner reads from an integration-test sheet.

Per case: id, title, expected status and error code, the step it binds to (or "ikke
automatisert") and whether it is manual; plus the sheet's version and SHA-256, and every
row the reader did not read as written (with its row number and why). With ``--json``
the same as data, for scripts. With ``--suggest`` a bindings file with ranked candidates
for every unbound row, for the bank to confirm (see :mod:`conformance.binding_suggest`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conformance.errors import UsageError

# The sheet reader (openpyxl) and the binder are imported inside ``run``: building the
# parser (every command, ``--help``) must not load them.
if TYPE_CHECKING:
    from conformance.models import CaseSpec
    from conformance.sheet import SheetInfo

NOT_AUTOMATED_NB = "ikke automatisert"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sheet",
        help="vis testtilfellene som leses fra et testark, med forventning og binding",
        description="Les et KFR-testark og vis hvert testtilfelle: ID, tittel, forventet "
        "status og feilkode, hvilket steg det bindes til, og om det er manuelt. Rader som "
        "ikke leses som de står, vises med radnummer og grunn.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="testarket (.xlsx)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="skriv resultatet som JSON")
    output.add_argument(
        "--suggest",
        action="store_true",
        help="skriv en bindingsfil (TOML) med rangerte forslag for hver rad som ikke ble bundet",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="med --suggest: skriv bindingsfilen hit i stedet for til skjermen "
        "(en eksisterende fil overskrives ikke)",
    )
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
        "expectation_source": case.expectation_source,
        "binding": case.binding,
        "binding_source": case.binding_source,
        "manual": case.manual,
        "row": case.row,
    }


def _status_cell(case: CaseSpec) -> str:
    status = str(case.expected.status or "–")
    return f"{status}*" if case.expectation_source == "step" else status


def _print_table(info: SheetInfo, cases: list[CaseSpec], suite_name: str, out: TextIO) -> None:
    print(
        f"Testark:   {info.file_name} (arket «{info.worksheet}», overskrift på rad {info.header_row})",
        file=out,
    )
    print(f"Versjon:   {info.version or 'ukjent'}", file=out)
    print(f"SHA-256:   {info.sha256}", file=out)
    print(f"Suite:     {suite_name}", file=out)
    print(file=out)
    headings = ("ID", "Rad", "Tittel", "Status", "Feilkode", "Binding", "Manuell")
    rows = [
        (
            case.case_id,
            str(case.row),
            case.title if len(case.title) <= 48 else case.title[:47] + "…",
            _status_cell(case),
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
    if any(c.expectation_source == "step" for c in cases):
        print(
            "* Arket angir ingen status, bare et utsagn («kunden er registrert»); statusen er "
            "stegets vanlige svar.",
            file=out,
        )
    if unbound:
        print(
            "Rader som ikke er automatisert kan bindes med en bindingsfil; "
            f"«kfr-conformance sheet {info.file_name} --suggest» lager et forslag.",
            file=out,
        )
    if info.notices:
        print(file=out)
        print(f"Rader som ikke leses som de står ({len(info.notices)}):", file=out)
        for notice in info.notices:
            print(f"  {notice.describe()}", file=out)


def _write_suggestions(args: argparse.Namespace, text: str, count: int, out: TextIO) -> None:
    if args.out is None:
        out.write(text)
        return
    target: Path = args.out
    if target.exists():
        raise UsageError(
            f"«{target}» finnes allerede og overskrives ikke (den kan ha bekreftelser i seg).",
            hint="Velg et annet filnavn med --out, eller flytt den gamle filen først.",
        )
    from conformance.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(target, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"Kan ikke skrive «{target}»: {exc.strerror or exc}.") from exc
    print(f"Skrev forslag for {count} rader til {target}.", file=out)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.out is not None and not args.suggest:
        raise UsageError("--out brukes bare sammen med --suggest.")
    from conformance.binding import bind_cases, load_bindings_file
    from conformance.sheet import read_sheet
    from conformance.suite import default_suite_dir, load_suite

    info, cases = read_sheet(args.path)
    suite = load_suite(args.suite if args.suite else default_suite_dir())
    overrides = load_bindings_file(args.bindings) if args.bindings else None
    cases = bind_cases(cases, suite.registry, overrides)
    if args.suggest:
        from conformance.binding_suggest import suggest, suggestions_toml

        suggestions = suggest(cases, suite.registry)
        text = suggestions_toml(
            suggestions,
            suite.registry,
            sheet_name=info.file_name,
            sheet_sha256=info.sha256,
            suite_name=suite.name,
        )
        _write_suggestions(args, text, len(suggestions), out)
    elif args.json:
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
