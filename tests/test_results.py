"""Writing a results folder: the filled sheet from the sheet the run already read.

The plugin reads the sheet before row 1; ``write_outputs`` reuses that reading for the
filled sheet instead of parsing the sheet again, but only for the very bytes in the
folder's ``original/`` copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook
from pack_support import make_results_dir
from real_run import supplied_sheet

import conformance.sheet
from conformance.models import RunRecord
from conformance.results import ORIGINAL_DIR, RUN_FILE, filled_sheet_name, write_outputs
from conformance.sheet import read_sheet


def _folder(tmp_path: Path) -> tuple[Path, RunRecord, Path]:
    folder = make_results_dir(tmp_path / "reports")
    record = RunRecord.from_json((folder / RUN_FILE).read_bytes())
    original = folder / ORIGINAL_DIR / record.sheet["file_name"]
    return folder, record, original


def _cell_values(path: Path) -> dict[str, list[tuple]]:
    workbook = load_workbook(path)
    return {ws.title: [tuple(row) for row in ws.iter_rows(values_only=True)]
            for ws in workbook.worksheets}


def test_the_filled_sheet_is_written_from_the_reading_the_run_already_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, record, original = _folder(tmp_path)
    filled = folder / filled_sheet_name(record.sheet["file_name"])
    assert write_outputs(folder, record).problems == []
    reread = _cell_values(filled)
    info, _ = read_sheet(original)
    filled.unlink()

    def no_second_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sheet was read a second time")

    monkeypatch.setattr(conformance.sheet, "read_sheet", no_second_reading)
    written = write_outputs(folder, record, sheet_info=info)
    assert written.problems == []
    assert filled in written.written
    assert _cell_values(filled) == reread  # the same filled sheet as from a fresh reading


def test_a_reading_of_other_bytes_is_not_used_for_the_filled_sheet(tmp_path: Path) -> None:
    folder, record, _ = _folder(tmp_path)
    other = supplied_sheet(tmp_path / "annet" / record.sheet["file_name"], "9.9")
    stale, _ = read_sheet(other)
    written = write_outputs(folder, record, sheet_info=stale)
    # The folder's own copy was read instead: the writer, which refuses a reading of
    # other bytes, wrote the filled sheet without complaint.
    assert written.problems == []
    assert folder / filled_sheet_name(record.sheet["file_name"]) in written.written
