"""Alternative layouts of the integration-test sheet, built from the bundled sheet's cases.

Bits' official sheet can change under us; these workbooks change it the ways it could:
a cover sheet and a title block, English headers, integer IDs or other IDs, section rows,
another order, hidden columns, an extra row nobody automated. Tests (sheet, binding,
plugin) read them and check they still give the same cases and bindings.

Also here: :func:`kfr_like_registry`, a step registry with the signatures of the KFR
suite's steps (no step does anything), so binding can be tested without the suite.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from conformance.models import CaseSpec
from conformance.sheet import parse_expectation, read_sheet
from conformance.steps import Actual, StepRegistry

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SHEET = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"

# fmt: off
NORWEGIAN_HEADERS = {
    "id": "Testcase-ID", "category": "Kategori", "title": "Tittel", "description": "Beskrivelse",
    "preconditions": "Forutsetninger", "test_data": "Testdata", "expected": "Forventet resultat",
    "actual": "Faktisk resultat", "status": "Status", "comment": "Kommentar", "date": "Dato",
    "executed_by": "Utført av", "correlation_id": "CorrelationID",
}
ENGLISH_HEADERS = {
    "id": "Test ID", "category": "Category", "title": "Title", "description": "Description",
    "preconditions": "Preconditions", "test_data": "Test data", "expected": "Expected result",
    "actual": "Actual result", "status": "Status", "comment": "Comments", "date": "Date",
    "executed_by": "Executed by", "correlation_id": "Correlation ID",
}
DEFAULT_COLUMNS = ("id", "category", "description", "preconditions", "test_data", "expected",
                   "actual", "status", "comment", "date", "executed_by", "correlation_id")
# fmt: on


@dataclass(frozen=True)
class Layout:
    """How to lay the cases out; every option is a way the official sheet could differ."""

    headers: dict[str, str] | None = None
    columns: Sequence[str] = DEFAULT_COLUMNS
    cover_sheet: bool = False
    title_block: bool = False
    sections: bool = False
    ids: str = "original"  # original | int | float | other
    shuffle_seed: int | None = None
    hidden_columns: Sequence[str] = ()
    hidden_decoy: bool = False  # an extra hidden column named like a real one
    cases_sheet_hidden: bool = False
    extra_rows: Sequence[CaseSpec] = ()
    sheet_title: str = "Testtilfeller"


def bundled_cases() -> list[CaseSpec]:
    return read_sheet(BUNDLED_SHEET)[1]


def _case_id(case: CaseSpec, index: int, ids: str) -> object:
    if ids == "int":
        return index
    if ids == "float":
        return float(index)
    if ids == "other":
        return f"TC-{100 + index}"
    return case.case_id


def _values(case: CaseSpec, index: int, layout: Layout) -> dict[str, object]:
    return {
        "id": _case_id(case, index, layout.ids),
        "category": case.category,
        "title": case.title,
        "description": case.description,
        "preconditions": case.preconditions,
        "test_data": case.test_data,
        "expected": case.expected.text,
    }


def build_layout(path: Path, layout: Layout, cases: Sequence[CaseSpec] | None = None) -> Path:
    """Write ``cases`` (default: the bundled sheet's) to ``path`` in ``layout``."""
    cases = list(cases if cases is not None else bundled_cases()) + list(layout.extra_rows)
    if layout.shuffle_seed is not None:
        random.Random(layout.shuffle_seed).shuffle(cases)
    headers = layout.headers or NORWEGIAN_HEADERS
    columns = list(layout.columns)
    if layout.hidden_decoy:
        # An old, hidden "Forventet resultat" left of the real one: must not win.
        columns.insert(1, "decoy")

    wb = Workbook()
    first = wb.active
    if layout.cover_sheet:
        first.title = "Forside"
        first["A1"] = "KFR – Integrasjonstester"
        first["A1"].font = Font(bold=True, size=16)
        first["A3"] = "Versjon 2.1"
        first["A5"] = "Fyll inn Faktisk resultat, Status og Utført av for hvert testtilfelle."
        ws = wb.create_sheet(layout.sheet_title)
    else:
        ws = first
        ws.title = layout.sheet_title

    row = 1
    if layout.title_block:
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(columns))
        ws.cell(row=1, column=1, value="KFR – Integrasjonstester")
        ws.cell(row=2, column=1, value="Versjon: 2.1")
        ws.cell(row=3, column=1, value="Bits AS – DSOP")
        row = 5
    header_row = row
    for col, role in enumerate(columns, start=1):
        # The decoy repeats the expected column's name: the visible one must win.
        name = headers["expected"] if role == "decoy" else headers[role]
        cell = ws.cell(row=header_row, column=col, value=name)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for role in layout.hidden_columns:
        letter = ws.cell(row=header_row, column=columns.index(role) + 1).column_letter
        ws.column_dimensions[letter].hidden = True
    if layout.hidden_decoy:
        ws.column_dimensions[ws.cell(row=header_row, column=2).column_letter].hidden = True

    row = header_row + 1
    section = None
    for index, case in enumerate(cases, start=1):
        if layout.sections and case.category != section:
            section = case.category
            ws.cell(row=row, column=1, value=section or "Annet").font = Font(bold=True)
            row += 2  # a section title, then a blank row
        values = _values(case, index, layout)
        for col, role in enumerate(columns, start=1):
            if role == "decoy":
                ws.cell(row=row, column=col, value="(utgått)")
            elif role in values:
                ws.cell(row=row, column=col, value=values[role])
        row += 1
    ws.cell(row=row + 1, column=1, value="Signatur bank: ______________________")
    if layout.cases_sheet_hidden:
        wb.create_sheet("Notater")["A1"] = "Interne notater"
        ws.sheet_state = "hidden"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def _unknown_row() -> CaseSpec:
    """A row no step of the KFR suite does: it must show as "not automated"."""
    return CaseSpec(
        case_id="KFR-99",
        title="Endre kundens kontaktinformasjon",
        category="Vedlikehold",
        description="Endre kundens kontaktinformasjon. PATCH kontaktopplysninger for en kunde-ID.",
        preconditions="Ingen.",
        test_data="Ny e-postadresse.",
        expected=parse_expectation("HTTP 200 OK. Kontaktinformasjonen er endret."),
    )


UNKNOWN_ROW = _unknown_row()

# name → layout; each parses to the bundled sheet's cases (ids aside).
LAYOUTS: dict[str, Layout] = {
    "cover_and_title_block": Layout(cover_sheet=True, title_block=True),
    "english_headers": Layout(
        headers=ENGLISH_HEADERS,
        columns=(
            "id",
            "title",
            "description",
            "category",
            "preconditions",
            "test_data",
            "expected",
            "actual",
            "status",
            "comment",
            "date",
            "executed_by",
            "correlation_id",
        ),
    ),
    "integer_ids": Layout(ids="int"),
    "float_ids": Layout(ids="float", title_block=True),
    "other_ids": Layout(ids="other", headers=ENGLISH_HEADERS),
    "section_rows": Layout(sections=True, title_block=True),
    "shuffled": Layout(shuffle_seed=7, ids="other"),
    "hidden_columns": Layout(hidden_columns=("category", "comment"), hidden_decoy=True),
    "hidden_case_sheet": Layout(cover_sheet=True, cases_sheet_hidden=True),
    "unknown_row": Layout(extra_rows=(UNKNOWN_ROW,), ids="int", shuffle_seed=3),
}


def build_all(directory: Path) -> dict[str, Path]:
    return {
        name: build_layout(directory / f"{name}.xlsx", layout) for name, layout in LAYOUTS.items()
    }


# --------------------------------------------------------------------------- registry


def _not_run(ctx: object) -> Actual:
    raise AssertionError("binding tests never run a step")


def kfr_like_registry(*, with_ids: bool = True) -> StepRegistry:
    """The KFR suite's step signatures (KFR-01 … KFR-22 in order); steps do nothing.

    ``with_ids=False`` leaves out ``case_ids``, so every row must bind by its text.
    """
    registry = StepRegistry()
    specs: list[tuple[str, dict[str, object]]] = [
        ("token", {"operation": "token", "status": 200}),
        ("add_fodselsnummer", {"operation": "add", "subject": "fodselsnummer", "status": 201}),
        ("add_d_nummer", {"operation": "add", "subject": "d-nummer", "status": 201}),
        ("add_orgnr", {"operation": "add", "subject": "orgnr", "status": 201}),
        (
            "add_existing",
            {
                "operation": "add",
                "status": 200,
                "keywords": (("finnes", "eksisterer", "already", "exists", "allerede"),),
            },
        ),
        ("lookup_own_bank", {"operation": "lookup", "status": 200}),
        ("end_relationship", {"operation": "end", "status": 204}),
        ("history_after_end", {"operation": "history", "status": 200}),
        ("end_missing", {"operation": "end", "status": 404, "error_code": "KFR-008"}),
        (
            "batch_with_dates",
            {
                "operation": "batch",
                "status": 201,
                "keywords": (("startdato", "start date", "dato"),),
            },
        ),
        (
            "batch_without_dates",
            {"operation": "batch", "status": 201, "keywords": (("uten", "without"),)},
        ),
        ("batch_bad_date", {"operation": "batch", "status": 400, "error_code": "KFR-010"}),
        ("bad_customer_id", {"operation": "add", "status": 400, "error_code": "KFR-005"}),
        ("bad_relationship_type", {"operation": "add", "status": 400, "error_code": "KFR-009"}),
        ("missing_correlation_id", {"operation": "add", "status": 400, "error_code": "KFR-004"}),
        ("other_bank_fid", {"operation": "add", "status": 403, "error_code": "KFR-003"}),
        ("no_token", {"operation": "add", "status": 401, "error_code": "KFR-001"}),
        ("missing_scope", {"operation": "add", "status": 403, "error_code": "KFR-002"}),
        (
            "batch_bad_boundary",
            {"operation": "batch", "status": 403, "keywords": (("boundary", "grense"),)},
        ),
        ("batch_too_large", {"operation": "batch", "status": 413}),
        ("manual_d3", {"keywords": (("batch", "fil"), ("slett", "avslutt", "delete", "end"))}),
        ("manual_a8", {"keywords": (("kjernesystem", "core"),)}),
    ]
    for number, (name, spec) in enumerate(specs, start=1):
        ids = (f"KFR-{number:02d}",) if with_ids else ()
        if name.startswith("manual_"):
            registry.manual_step(name, case_ids=ids, **spec)  # type: ignore[arg-type]
        else:
            registry.step(name, case_ids=ids, **spec)(_not_run)  # type: ignore[arg-type]
    return registry


EXPECTED_BINDINGS = {
    f"KFR-{number:02d}": name
    for number, name in enumerate(
        [
            "token",
            "add_fodselsnummer",
            "add_d_nummer",
            "add_orgnr",
            "add_existing",
            "lookup_own_bank",
            "end_relationship",
            "history_after_end",
            "end_missing",
            "batch_with_dates",
            "batch_without_dates",
            "batch_bad_date",
            "bad_customer_id",
            "bad_relationship_type",
            "missing_correlation_id",
            "other_bank_fid",
            "no_token",
            "missing_scope",
            "batch_bad_boundary",
            "batch_too_large",
            "manual_d3",
            "manual_a8",
        ],
        start=1,
    )
}
