"""The filled sheet: the original workbook with each case's result written into its row.

Bits compares the returned sheet with the one it sent, so the original layout stays:
the file is loaded with openpyxl and only result cells are written (formatting, merged
cells, other worksheets and data validation are kept). Result columns the sheet lacks
are added at the right of the header, styled like it. A worksheet "Kjøring" holds the
run's metadata; a sandbox run is marked there, and above the header when there is room,
so a filled sheet from the sandbox is never mistaken for onboarding evidence.

Every text written here is untrusted: the environment under test wrote the actual results
and messages, a person wrote the tester's name and the comments. So each is redacted as
evidence is (a token echoed in an error message never reaches the sheet), stripped of the
control characters a workbook cannot hold, capped at Excel's cell limit, and stored as a
string cell, never as a formula: ``=HYPERLINK(…)``, ``+cmd|…``, ``@SUM(…)`` appear literally
when the sheet is opened. Rows that receive text grow to fit it, so a printed or PDF copy
shows every line instead of clipping or overlapping them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import warnings
from collections.abc import Sequence
from copy import copy
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from conformance.atomic import atomic_file
from conformance.errors import SheetError
from conformance.evidence import redact_text
from conformance.models import CaseResult, Outcome
from conformance.sheet import SheetInfo, cell_text, row_in_case_id

__all__ = [
    "MAX_CELL_CHARS",
    "RUN_SHEET",
    "SANDBOX_BANNER",
    "STATUS_FILLS",
    "safe_cell_text",
    "write_filled_sheet",
]

RUN_SHEET = "Kjøring"
SANDBOX_BANNER = "SANDBOX – ikke gyldig som onboardingbevis"

# Result columns, in the order they are added when the sheet has none.
RESULT_HEADERS: dict[str, str] = {
    "actual": "Faktisk resultat",
    "status": "Status",
    "comment": "Kommentar",
    "date": "Dato",
    "executed_by": "Utført av",
    "correlation_id": "CorrelationID",
}

GREEN, RED, AMBER, GREY = "C6EFCE", "FFC7CE", "FFEB9C", "D9D9D9"
STATUS_FILLS: dict[Outcome, str] = {
    Outcome.PASSED: GREEN,
    Outcome.FAILED: RED,
    Outcome.ERROR: AMBER,
    Outcome.PENDING: AMBER,
    Outcome.NOT_AUTOMATED: GREY,
    Outcome.NOT_RUN: GREY,
}
BANNER_FILL = PatternFill("solid", fgColor="C00000")
BANNER_FONT = Font(bold=True, color="FFFFFF", size=14)


# Excel refuses to open a cell longer than this; the evidence file holds the whole text.
MAX_CELL_CHARS = 32_767
TRUNCATED_NOTE = " … [avkortet – hele teksten står i bevisfilen]"
# First characters that make a spreadsheet read a typed value as a formula (or DDE call).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
# Row-height estimate: a column of width w holds about w characters of an 11 pt font
# (fewer once words wrap); a line takes about 1.3 times the font size, in points.
_CHARS_PER_WIDTH = 0.9
_LINE_HEIGHT = 1.3
_ROW_PADDING_PT = 4.0
_MAX_ROW_HEIGHT_PT = 409.0  # Excel's limit
_DEFAULT_COLUMN_WIDTH = 8.43
_DEFAULT_FONT_PT = 11.0


def _visible_control(match) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe_cell_text(value: object) -> str:
    """``value`` as text that may go into a cell: secrets redacted, control characters a
    workbook cannot hold shown as ``\\xNN``, line breaks as line feeds, no longer than
    Excel allows."""
    text = redact_text(str(value))
    # A workbook's XML turns a carriage return into a line feed anyway; say so up front.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = ILLEGAL_CHARACTERS_RE.sub(_visible_control, text)
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
    return text


def _set_text(cell: Cell, value: object, *, wrap: bool = True) -> None:
    """Write free text into ``cell`` as a string cell, never as a formula."""
    text = safe_cell_text(value)
    cell.value = text
    cell.data_type = "s"  # openpyxl would store "=…" as a formula; this is text
    if text.startswith(FORMULA_TRIGGERS):
        # The "'" prefix of spreadsheets: shown as typed, and still text after a person
        # edits the cell.
        cell.quotePrefix = True
    if wrap and not cell.alignment.wrap_text:
        alignment = copy(cell.alignment)
        alignment.wrap_text = True
        cell.alignment = alignment


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ensure_columns(ws: Worksheet, info: SheetInfo) -> dict[str, int]:
    """The sheet's result columns, adding the missing ones right of the header."""
    columns = dict(info.columns)
    header_row = info.header_row
    last_header_col = max(columns.values())
    template = ws.cell(row=header_row, column=last_header_col)
    template_width = ws.column_dimensions[template.column_letter].width
    next_col = max(ws.max_column, last_header_col) + 1
    for role, header in RESULT_HEADERS.items():
        if role in columns:
            continue
        cell = ws.cell(row=header_row, column=next_col, value=header)
        if template.has_style:
            cell.font = copy(template.font)
            cell.fill = copy(template.fill)
            cell.border = copy(template.border)
            cell.alignment = copy(template.alignment)
            cell.number_format = template.number_format
            cell.protection = copy(template.protection)
        ws.column_dimensions[cell.column_letter].width = max(template_width or 0, 16)
        columns[role] = next_col
        next_col += 1
    return columns


def _rows_by_id(ws: Worksheet, info: SheetInfo) -> dict[str, int]:
    id_col = info.columns["id"]
    rows: dict[str, int] = {}
    for row_index in range(info.header_row + 1, ws.max_row + 1):
        case_id = " ".join(cell_text(ws.cell(row=row_index, column=id_col).value).split())
        if case_id:
            rows.setdefault(case_id, row_index)
    return rows


def _row_for(ws: Worksheet, info: SheetInfo, result: CaseResult, rows_by_id: dict[str, int]) -> int:
    id_col = info.columns["id"]
    if result.row > info.header_row:
        at_row = " ".join(cell_text(ws.cell(row=result.row, column=id_col).value).split())
        # Duplicated ids are read as "<id> (rad N)": the row number is the truth then.
        if at_row and (at_row == result.case_id or result.case_id.startswith(f"{at_row} (rad ")):
            return result.row
        # A row without an id of its own (none typed, or under a merged id cell) was given
        # one by the reader that names its row: "Rad 17", "KFR-05 (rad 17)".
        if not at_row and row_in_case_id(result.case_id) == result.row:
            return result.row
    if result.case_id in rows_by_id:
        return rows_by_id[result.case_id]
    raise SheetError(
        f"Fant ikke testtilfellet «{result.case_id}» i arket «{info.file_name}».",
        hint="Resultatene hører ikke til dette arket.",
    )


def _run_date(result: CaseResult) -> dt.date | None:
    stamp = result.finished_at or result.started_at
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _actual_text(result: CaseResult) -> str:
    parts = [p.strip() for p in (result.actual, result.message) if p and p.strip()]
    return "\n".join(dict.fromkeys(parts))


def _write(ws: Worksheet, row: int, col: int, value: object) -> None:
    cell = ws.cell(row=row, column=col)
    if isinstance(value, str):
        _set_text(cell, value)
    else:
        cell.value = value


def _lines_needed(text: str, width: float, font_pt: float) -> int:
    per_line = max(1, int(width * _CHARS_PER_WIDTH * _DEFAULT_FONT_PT / font_pt))
    return sum(max(1, math.ceil(len(part) / per_line)) for part in text.split("\n"))


def _fit_row_height(ws: Worksheet, row: int) -> None:
    """Make ``row`` tall enough for the wrapped text of every cell in it (never lower than
    it was): spreadsheets do not grow a row for text written by a program, and a row that
    is too low is clipped on screen and overlaps its neighbours' text in print."""
    merged = {
        cell
        for rng in ws.merged_cells.ranges
        if rng.min_row <= row <= rng.max_row
        for cell in rng.cells
    }
    needed = 0.0
    for cell in ws[row]:
        if cell.value is None or (cell.row, cell.column) in merged:
            continue
        text = cell.value if isinstance(cell.value, str) else str(cell.value)
        width = ws.column_dimensions[get_column_letter(cell.column)].width
        font_pt = float(cell.font.sz or _DEFAULT_FONT_PT) if cell.font else _DEFAULT_FONT_PT
        if not cell.alignment.wrap_text:
            lines = text.count("\n") + 1
        else:
            lines = _lines_needed(text, width or _DEFAULT_COLUMN_WIDTH, font_pt)
        needed = max(needed, lines * font_pt * _LINE_HEIGHT + _ROW_PADDING_PT)
    current = ws.row_dimensions[row].height
    if needed and (current is None or needed > current):
        ws.row_dimensions[row].height = round(min(needed, _MAX_ROW_HEIGHT_PT), 1)


def _write_result(
    ws: Worksheet, row: int, columns: dict[str, int], result: CaseResult, run_by: str
) -> None:
    status_cell = ws.cell(row=row, column=columns["status"])
    status_cell.value = result.outcome.label_nb
    status_cell.fill = PatternFill("solid", fgColor=STATUS_FILLS[result.outcome])
    status_cell.font = Font(bold=True, name=status_cell.font.name, size=status_cell.font.size)
    _write(ws, row, columns["actual"], _actual_text(result) or None)
    date = _run_date(result)
    if date is not None:
        _write(ws, row, columns["date"], date)
        ws.cell(row=row, column=columns["date"]).number_format = "yyyy-mm-dd"
    _write(ws, row, columns["correlation_id"], ", ".join(result.correlation_ids) or None)
    # Who carried the row out: nobody for rows that did not run; for a manual row, only
    # the person who confirmed it.
    if result.outcome == Outcome.PENDING:
        executed_by = result.confirmed_by
    elif result.outcome in (Outcome.NOT_RUN, Outcome.NOT_AUTOMATED):
        executed_by = None
    else:
        executed_by = result.confirmed_by or run_by
        if result.performed_by and not result.manual:
            # Which party sent the row's requests: the bank's core system or the tool.
            executed_by = f"{executed_by} ({result.performed_by})" if executed_by else result.performed_by
    if executed_by:
        _write(ws, row, columns["executed_by"], executed_by)
    if result.comment:
        _write(ws, row, columns["comment"], result.comment)
    _fit_row_height(ws, row)


def _row_is_empty(ws: Worksheet, row: int) -> bool:
    if any(row in range(r.min_row, r.max_row + 1) for r in ws.merged_cells.ranges):
        return False
    return all(cell.value in (None, "") for cell in ws[row])


def _banner_above_header(ws: Worksheet, info: SheetInfo, last_col: int) -> bool:
    row = info.header_row - 1
    if row < 1 or not _row_is_empty(ws, row):
        return False
    first_col = min(info.columns.values())
    cell = ws.cell(row=row, column=first_col, value=SANDBOX_BANNER)
    cell.fill = BANNER_FILL
    cell.font = BANNER_FONT
    cell.alignment = Alignment(horizontal="center", vertical="center")
    if last_col > first_col:
        ws.merge_cells(start_row=row, start_column=first_col, end_row=row, end_column=last_col)
    return True


def _counts(results: Sequence[CaseResult]) -> dict[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for result in results:
        counts[result.outcome] += 1
    return counts


def _run_sheet(
    wb,
    info: SheetInfo,
    results: Sequence[CaseResult],
    *,
    run_by: str,
    environment: str,
    run_id: str,
    bank: dict[str, str],
) -> None:
    title = RUN_SHEET
    number = 2
    while title in wb.sheetnames:  # a sheet filled before keeps its own run sheet
        title = f"{RUN_SHEET} {number}"
        number += 1
    ws = wb.create_sheet(title)
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 70
    row = 1
    if environment != "test":
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=2)
        cell = ws.cell(row=1, column=1, value=SANDBOX_BANNER)
        cell.fill = BANNER_FILL
        cell.font = BANNER_FONT
        cell.alignment = Alignment(horizontal="center", vertical="center")
        ws.row_dimensions[1].height = 26
        row = 3
    ws.cell(row=row, column=1, value="KFR-integrasjonstest – kjøring").font = Font(
        bold=True, size=14
    )
    row += 2
    counts = _counts(results)
    lines: list[tuple[str, object]] = [
        ("Bank", bank.get("name", "")),
        ("Organisasjonsnummer", bank.get("orgnr", "")),
        ("Miljø", environment if environment == "test" else f"{environment} (SANDBOX)"),
        ("Kjøring (run id)", run_id),
        ("Utført av", run_by),
        ("Testark", info.file_name),
        ("Arkversjon", info.version or "ukjent"),
        ("Arkets SHA-256", info.sha256),
        ("Antall testtilfeller", len(results)),
    ]
    lines += [(outcome.label_nb, counts[outcome]) for outcome in Outcome]
    for label, value in lines:
        ws.cell(row=row, column=1, value=label).font = Font(bold=True)
        cell = ws.cell(row=row, column=2)
        cell.alignment = Alignment(horizontal="left", vertical="top")
        if isinstance(value, str):
            _set_text(cell, value)  # bank name, tester, file name: free text too
        else:
            cell.value = value
        _fit_row_height(ws, row)
        row += 1


def write_filled_sheet(
    info: SheetInfo,
    results: Sequence[CaseResult],
    out: Path,
    *,
    run_by: str,
    environment: str,
    run_id: str,
    bank: dict[str, str],
) -> None:
    """Write ``results`` into a copy of the sheet ``info`` was read from, at ``out``.

    Raises :class:`SheetError` when the original changed since it was read (its SHA-256
    differs) or a result's case is not in the sheet. The file appears at ``out`` whole or
    not at all.
    """
    out = Path(out)
    try:
        if _sha256(info.path) != info.sha256:
            raise SheetError(
                f"Testarket «{info.file_name}» er endret etter at det ble lest.",
                hint="Kjør testene på nytt, så resultatene hører til arket som fylles ut.",
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wb = load_workbook(info.path, keep_vba=info.path.suffix.lower() == ".xlsm")
    except OSError as exc:
        raise SheetError(f"Kan ikke lese testarket «{info.path}»: {exc.strerror or exc}.") from exc
    ws = wb[info.worksheet]
    columns = _ensure_columns(ws, info)
    rows_by_id = _rows_by_id(ws, info)
    for result in results:
        _write_result(ws, _row_for(ws, info, result, rows_by_id), columns, result, run_by)
    if environment != "test":
        _banner_above_header(ws, info, max(columns.values()))
    _run_sheet(wb, info, results, run_by=run_by, environment=environment, run_id=run_id, bank=bank)

    try:
        with atomic_file(out) as handle:
            wb.save(handle)
    except OSError as exc:
        raise SheetError(
            f"Kan ikke skrive det utfylte arket «{out}»: {exc.strerror or exc}."
        ) from exc
