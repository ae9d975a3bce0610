"""The filled sheet: results in the original layout, formatting kept, run metadata added,
sandbox runs marked, written atomically; LibreOffice can open it."""

from __future__ import annotations

import os
import shutil
import subprocess
from copy import copy
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from sheet_layouts import BUNDLED_SHEET, LAYOUTS, build_layout

from conformance.errors import SheetError
from conformance.models import CaseResult, CaseSpec, Outcome
from conformance.sheet import read_sheet
from conformance.sheet_writer import RUN_SHEET, SANDBOX_BANNER, STATUS_FILLS, write_filled_sheet

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
