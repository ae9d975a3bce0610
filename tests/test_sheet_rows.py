"""The reader never drops a row silently.

Every filled row below the header either becomes a case (run, or shown as "Ikke
automatisert" when nothing can judge it) or gets a notice with its row number and why —
shown by ``kfr-conformance sheet`` and at the start of a run. One test per way a row used
to vanish (row caps, long blank runs, merged cells, empty or merged ids, empty
expectations, hidden rows, rows on other worksheets), then the invariant over random
sheets, then the whole path: run header, run record and filled sheet.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sheet_layouts import BUNDLED_SHEET, kfr_like_registry

from conformance.binding import bind_cases
from conformance.cli import main
from conformance.errors import SheetError
from conformance.models import RunRecord
from conformance.sheet import MAX_DATA_ROWS, read_sheet, row_in_case_id

HEADER = ["Testcase-ID", "Beskrivelse", "Forventet resultat"]


def _save(wb: Workbook, path: Path) -> Path:
    wb.save(path)
    return path


def _sheet(path: Path, rows: dict[int, list[object]], *, header: list[str] = HEADER) -> Path:
    """A workbook with ``header`` in row 1 and each of ``rows`` at its row number."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Tester"
    ws.append(header)
    for number, values in rows.items():
        for col, value in enumerate(values, start=1):
            if value is not None:
                ws.cell(row=number, column=col, value=value)
    return _save(wb, path)


def _kinds(info) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for notice in info.notices:
        found.setdefault(notice.row, set()).add(notice.kind)
    return found


# --------------------------------------------------------------------------- caps and gaps


def test_rows_after_a_long_blank_run_and_beyond_the_old_row_cap_are_read(tmp_path: Path) -> None:
    # The old reader stopped after 500 blank rows and after 5 000 rows below the header.
    path = _sheet(
        tmp_path / "ark.xlsx",
        {
            2: ["KFR-01", "Token fra Maskinporten", "HTTP 200 OK"],
            1_500: ["KFR-02", "Registrer kundeforhold for fødselsnummer", "HTTP 201 Created"],
            7_000: ["KFR-07", "Avslutt et kundeforhold", "HTTP 204 No Content"],
        },
    )
    info, cases = read_sheet(path)
    assert [(c.case_id, c.row) for c in cases] == [
        ("KFR-01", 2),
        ("KFR-02", 1500),
        ("KFR-07", 7000),
    ]
    assert info.notices == ()


def test_a_sheet_with_more_filled_rows_than_the_cap_is_refused_not_cut(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    for n in range(MAX_DATA_ROWS + 1):
        ws.append([f"T-{n}", "Oppslag på egen bank", "HTTP 200 OK"])
    path = _save(wb, tmp_path / "stort.xlsx")
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    text = err.value.diagnostics()
    assert f"{MAX_DATA_ROWS + 1} utfylte rader" in text and "delvis" in text


# --------------------------------------------------------------------------- merged cells


def test_an_expectation_merged_over_several_rows_belongs_to_each_row(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["A1", "Registrer med ugyldig kunde-ID", "HTTP 400 Bad Request med KFR-005"])
    ws.append(["A2", "Registrer med feil kontrollsiffer i fødselsnummeret", None])
    ws.append(["A3", "Registrer med et for kort organisasjonsnummer", None])
    ws.merge_cells("C2:C4")
    info, cases = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    assert [(c.case_id, c.expected.status, c.expected.error_code) for c in cases] == [
        ("A1", 400, "KFR-005"),
        ("A2", 400, "KFR-005"),
        ("A3", 400, "KFR-005"),
    ]
    assert _kinds(info) == {3: {"merged_expected"}, 4: {"merged_expected"}}
    assert "rad 2–4" in info.notices[0].message


def test_an_id_merged_over_rows_with_their_own_expectations_gives_one_case_per_row(
    tmp_path: Path,
) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["KFR-08", "Avslutt kundeforholdet", "HTTP 204 No Content"])
    ws.append([None, "Slå opp perioden før avslutningen", "HTTP 200 OK"])
    ws.merge_cells("A2:A3")
    info, cases = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    assert [(c.case_id, c.row, c.expected.status) for c in cases] == [
        ("KFR-08", 2, 204),
        ("KFR-08 (rad 3)", 3, 200),
    ]
    assert _kinds(info) == {3: {"merged_id", "duplicate_id"}}
    assert row_in_case_id("KFR-08 (rad 3)") == 3 and row_in_case_id("KFR-08") is None


def test_a_row_under_a_merged_id_without_an_expectation_continues_the_case_above(
    tmp_path: Path,
) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["KFR-10", "Last opp en batchfil med startdato per kunde.", "HTTP 201 Created"])
    ws.append([None, "Slå opp kundene når batchen er lest inn.", None])
    ws.merge_cells("A2:A3")
    info, cases = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    (case,) = cases
    assert case.description.endswith("Slå opp kundene når batchen er lest inn.")
    (notice,) = info.notices
    assert (notice.row, notice.kind, notice.case_id) == (3, "continuation", "KFR-10")


def test_a_section_title_merged_across_the_row_is_reported_not_read(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["Batch"])
    ws.merge_cells("A2:C2")
    ws.append(["KFR-11", "Batch uten startdatoer", "HTTP 201 Created"])
    info, cases = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    assert [c.case_id for c in cases] == ["KFR-11"]
    (notice,) = info.notices
    assert (notice.row, notice.kind, notice.warning) == (2, "section", False)


# --------------------------------------------------------------------------- ids and expectations


def test_a_row_without_an_id_is_read_under_its_row_number_and_binds_by_text(
    tmp_path: Path,
) -> None:
    path = _sheet(
        tmp_path / "ark.xlsx",
        {2: [None, "Avslutt et kundeforhold som ikke finnes", "HTTP 404 med KFR-008"]},
    )
    info, cases = read_sheet(path)
    assert [(c.case_id, c.row) for c in cases] == [("Rad 2", 2)]
    assert _kinds(info) == {2: {"no_id"}}
    (bound,) = bind_cases(cases, kfr_like_registry(with_ids=False))
    assert bound.binding == "end_missing"


def test_a_row_without_an_expectation_is_read_and_never_run(tmp_path: Path) -> None:
    # KFR-02 is a step's own id: an empty expectation must still not run it.
    path = _sheet(
        tmp_path / "ark.xlsx",
        {
            2: ["KFR-02", "Registrer kundeforhold for fødselsnummer", None],
            3: ["KFR-21", "Manuell kontroll: sletting venter til batchen er lest inn", None],
        },
    )
    info, cases = read_sheet(path)
    assert [c.case_id for c in cases] == ["KFR-02", "KFR-21"]
    assert _kinds(info) == {2: {"empty_expectation"}}  # a manual row needs no status
    bound = {c.case_id: c for c in bind_cases(cases, kfr_like_registry())}
    assert (bound["KFR-02"].binding, bound["KFR-02"].binding_source) == (None, None)
    assert bound["KFR-21"].binding == "manual_d3"


def test_an_id_standing_alone_is_a_case_a_word_standing_alone_is_a_section(
    tmp_path: Path,
) -> None:
    path = _sheet(
        tmp_path / "ark.xlsx",
        {2: ["Feilhåndtering"], 3: ["KFR-23"], 4: ["KFR-09", "Avslutt ukjent", "404"]},
    )
    info, cases = read_sheet(path)
    assert [c.case_id for c in cases] == ["KFR-23", "KFR-09"]
    assert _kinds(info) == {2: {"section"}, 3: {"empty_expectation"}}


def test_text_without_id_or_expectation_and_text_outside_the_columns_are_reported(
    tmp_path: Path,
) -> None:
    path = _sheet(
        tmp_path / "ark.xlsx",
        {
            2: ["KFR-01", "Token fra Maskinporten", "HTTP 200 OK"],
            3: [None, "Forklaring til testeren", None, None, "se vedlegg"],
            4: [None, None, None, None, "Notat i en kolonne uten overskrift"],
            5: [None, None, "HTTP 201 Created"],
        },
    )
    info, _ = read_sheet(path)
    assert _kinds(info) == {3: {"no_id_no_expected"}, 4: {"outside_columns"}, 5: {"expected_only"}}
    assert all(n.warning for n in info.notices)


def test_a_hidden_row_is_read_and_said_to_be_hidden(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["KFR-06", "Oppslag på egen bank", "HTTP 200 OK"])
    ws.append(["KFR-07", "Avslutt et kundeforhold", "HTTP 204 No Content"])
    ws.row_dimensions[3].hidden = True
    info, cases = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    assert [c.case_id for c in cases] == ["KFR-06", "KFR-07"]
    assert _kinds(info) == {3: {"hidden_row"}}


# --------------------------------------------------------------------------- other worksheets


def test_case_rows_on_other_worksheets_are_reported_by_row(tmp_path: Path) -> None:
    wb = Workbook()
    cover = wb.active
    cover.title = "Forside"
    cover.append(["KFR – Integrasjonstester"])
    cover.append(["Versjon", 2.1])
    cases = wb.create_sheet("Testtilfeller")
    cases.append(["Testcase-ID", "Tittel", "Beskrivelse", "Forventet resultat"])
    cases.append(["KFR-01", "Token", "Token fra Maskinporten", "HTTP 200 OK"])
    extra = wb.create_sheet("Tillegg")
    extra.append(["ID", "Forventet"])
    extra.append(["KFR-30", "HTTP 201 Created"])
    extra.append(["KFR-31", "HTTP 404, KFR-008"])
    loose = wb.create_sheet("Utkast")
    loose.sheet_state = "hidden"
    loose.append(["Ny test"])
    loose.append(["KFR-40", "Registrer kunde med D-nummer", "svarer 201"])
    info, read = read_sheet(_save(wb, tmp_path / "ark.xlsx"))
    assert [c.case_id for c in read] == ["KFR-01"]
    elsewhere = [(n.worksheet, n.row) for n in info.notices if n.kind == "other_worksheet"]
    assert elsewhere == [("Tillegg", 2), ("Tillegg", 3), ("Utkast", 2)]
    hidden = next(n for n in info.notices if n.worksheet == "Utkast")
    assert "KFR-40" in hidden.message and "skjult ark" in hidden.message
    assert not [n for n in info.notices if n.worksheet == "Forside"]


# --------------------------------------------------------------------------- the invariant


def _random_sheet(path: Path, seed: int) -> tuple[Path, set[int]]:
    """Rows of every kind, in random order and with random gaps and merges; returns the
    numbers of the rows that hold text of their own."""
    rnd = random.Random(seed)
    wb = Workbook()
    ws = wb.active
    ws.append(["Nr", "Tittel", "Beskrivelse", "Forventet resultat", "Kommentar"])
    row = 2
    kinds = ["case", "no_id", "no_expected", "section", "note", "id_only", "loose", "merged"]
    for _ in range(rnd.randint(5, 40)):
        row += rnd.choice([0, 0, 0, 1, 3, 700])
        kind = rnd.choice(kinds)
        number = rnd.randint(1, 60)
        values: list[object] = {
            "case": [f"T-{number}", "Oppslag", "Oppslag på egen bank", "HTTP 200 OK"],
            "no_id": [None, "Avslutt", "Avslutt et kundeforhold", "204"],
            "no_expected": [number, "Batch", "Batch uten startdatoer", None],
            "section": ["Feilhåndtering"],
            "note": [None, None, "Se vedlegg"],
            "id_only": [f"KFR-{number}"],
            "loose": [None, None, None, None, "kommentar"],
            "merged": [f"M-{number}", "Registrer", "Registrer kundeforhold", "HTTP 201"],
        }[kind]
        for col, value in enumerate(values, start=1):
            if value is not None:
                ws.cell(row=row, column=col, value=value)
        if kind == "merged":
            ws.cell(row=row + 1, column=3, value="Neste steg i samme test")
            if rnd.random() < 0.5:
                ws.cell(row=row + 1, column=4, value="HTTP 200 OK")
            ws.merge_cells(start_row=row, start_column=1, end_row=row + 1, end_column=1)
            row += 1
        if rnd.random() < 0.1:
            ws.row_dimensions[row].hidden = True
        row += 1
    filled = {
        cell.row for line in ws.iter_rows(min_row=2) for cell in line if cell.value is not None
    }
    return _save(wb, path), filled


@pytest.mark.parametrize("seed", range(12))
def test_every_filled_row_is_a_case_or_has_a_notice(tmp_path: Path, seed: int) -> None:
    path, filled = _random_sheet(tmp_path / f"ark{seed}.xlsx", seed)
    try:
        info, cases = read_sheet(path)
    except SheetError as exc:  # only "no cases at all" may stop a sheet this small
        assert "Fant ingen testtilfeller" in exc.message
        return
    accounted = {c.row for c in cases} | {n.row for n in info.notices}
    assert filled <= accounted, sorted(filled - accounted)
    assert len({c.case_id for c in cases}) == len(cases)  # ids stay unique


# --------------------------------------------------------------------------- sheet command


def test_sheet_command_lists_each_notice_with_its_row(tmp_path: Path, capsys) -> None:
    path = _sheet(
        tmp_path / "ark.xlsx",
        {2: ["KFR-01", "Token fra Maskinporten", "HTTP 200 OK"], 3: [None, "Uten ID", "HTTP 201"]},
    )
    assert main(["sheet", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Rader som ikke leses som de står (1):" in out
    assert "arket «Tester», rad 3: raden har forventet resultat, men ingen ID" in out
    assert main(["sheet", str(path), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert [(n["row"], n["kind"], n["case_id"]) for n in data["sheet"]["notices"]] == [
        (3, "no_id", "Rad 3")
    ]


def test_the_bundled_sheet_reports_only_its_section_titles() -> None:
    info, _ = read_sheet(BUNDLED_SHEET)
    assert {(n.kind, n.warning) for n in info.notices} == {("section", False)}
    assert info.notice_lines() == [
        "ark: ikke testtilfeller (seksjonstitler, merknader o.l.): «Testtilfeller» rad 5, 15, 19, 28"
    ]


# --------------------------------------------------------------------------- at run start


def test_a_run_reports_the_rows_at_start_runs_them_and_writes_them_back(
    pytester: pytest.Pytester, sandbox, tmp_path: Path
) -> None:
    from conformance.models import Outcome

    wb = Workbook()
    ws = wb.active
    ws.title = "Tester"
    ws.append(["Testcase-ID", "Beskrivelse", "Forventet resultat", "Status"])
    ws.append(["Enkeltregistrering"])
    ws.append([None, "Registrer kundeforhold for en person med D-nummer.", "svarer 201"])
    ws.append(["KFR-07", "Avslutt et kundeforhold.", None])
    ws.append(["K-2", "Ny kunde med fødselsnummer.", "Kunden er registrert"])
    sheet = _save(wb, tmp_path / "ark.xlsx")
    reports = tmp_path / "r"
    result = pytester.runpytest_inprocess(
        "--bank=311000004",
        f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}",
        f"--sandbox-data-dir={sandbox.data_dir}",
        f"--reports-dir={reports}",
        f"--sheet={sheet}",
        "-p",
        "no:cacheprovider",
    )
    header = result.outlines[
        : next(i for i, line in enumerate(result.outlines) if "collected" in line)
    ]
    text = "\n".join(header)
    assert (
        "rad 3: raden har forventet resultat, men ingen ID; lest som testtilfellet «Rad 3»" in text
    )
    assert "rad 4: «Forventet resultat» er tomt" in text
    assert "«Tester» rad 2" in text  # the section title, on the summary line
    # A claim is checked against the step's usual answer, and the run says so up front.
    assert "rad 5 (K-2): arket sier «Kunden er registrert»; kontrolleres som HTTP 201" in text
    (run_dir,) = (reports / "311000004").iterdir()
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    got = {c.case_id: (c.row, c.outcome) for c in record.cases}
    assert got == {
        "Rad 3": (3, Outcome.PASSED),
        "KFR-07": (4, Outcome.NOT_AUTOMATED),
        "K-2": (5, Outcome.PASSED),
    }
    claim = next(c for c in record.cases if c.case_id == "K-2")
    assert (claim.expected.status, claim.actual_status) == (201, 201)
    filled = load_workbook(next(run_dir.glob("*-utfylt.xlsx")))["Tester"]
    assert [filled[f"D{r}"].value for r in (3, 4, 5)] == ["OK", "Ikke automatisert", "OK"]
