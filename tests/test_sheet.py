"""Reading the integration-test sheet: the bundled sheet, header detection, expectations,
versions, and clear errors for files that are not a usable sheet."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook
from sheet_layouts import BUNDLED_SHEET, ROOT

from conformance.errors import SheetError
from conformance.sheet import cell_text, parse_expectation, read_sheet

# --------------------------------------------------------------------------- expectations


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("HTTP 404 Not Found med feilkode KFR-008", 404, "KFR-008"),
        ("400 Bad Request with error code KFR-010", 400, "KFR-010"),
        ("Responskode 201 Created", 201, None),
        ("Status: 204", 204, None),
        ("Status:204", 204, None),
        ("HTTP-201", 201, None),
        ("HTTP/1.1 204", 204, None),
        ("KFR returnerer 204 og kundeforholdet er borte", 204, None),
        ("The API returns 404 with KFR-008", 404, "KFR-008"),
        ("201 (Created)", 201, None),
        ("HTTP/1.1 413 Payload Too Large", 413, None),
        ("HTTP-statuskode: 401, feilkode kfr-001", 401, "KFR-001"),
        ("Response code = 403 and errorCode KFR-003", 403, "KFR-003"),
        ("201", 201, None),
        ("404, KFR-008", 404, "KFR-008"),
        ("Feilkode ERR-002 og HTTP-status 400", 400, "ERR-002"),
        ("invalid_grant (MP-110), HTTP 400", 400, "MP-110"),
        ("HTTP 201 Created, deretter HTTP 200 ved oppslag", 201, None),
        ("Svar innen 30 sekunder med statuskode 200", 200, None),
        ("HTTP 200 OK. Svaret har access_token", 200, None),
    ],
)
def test_status_and_error_code_are_read_from_prose(
    text: str, status: int, code: str | None
) -> None:
    expectation = parse_expectation(text)
    assert (expectation.status, expectation.error_code) == (status, code)
    assert expectation.text == text


@pytest.mark.parametrize(
    "text",
    [
        "Kundeforholdet registreres 2019-11-08 for orgnr 910000004",
        "Filen er større enn 10 MB og avvises",
        "250 per sekund leses inn",
        "Maks 200 kunde-ID-er i batchen, over 100 000 per dag meldes til Bits",
        "Innlest kl. 12:00, 08.11.2019, 1.200 kunder",
        "HTTP 600",
        "Banken bekrefter med navn og dato",
        "",
    ],
)
def test_dates_orgnrs_sizes_and_rates_are_never_a_status(text: str) -> None:
    assert parse_expectation(text).status is None


@settings(max_examples=150, deadline=None)
@given(
    day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
    number=st.integers(min_value=100_000_000, max_value=999_999_999),
    size=st.integers(min_value=1, max_value=99),
)
def test_no_status_is_ever_read_from_dates_orgnrs_or_sizes(
    day: dt.date, number: int, size: int
) -> None:
    text = (
        f"Startdato {day.isoformat()} ({day:%d.%m.%Y}) for fid {number}, "
        f"filen er {size} MB, {size}.{size:02d} sekunder"
    )
    expectation = parse_expectation(text)
    assert expectation.status is None
    assert parse_expectation(f"HTTP 201 Created. {text}").status == 201


def test_cell_values_become_text_like_a_person_reads_them() -> None:
    assert cell_text(1) == "1"
    assert cell_text(1.0) == "1"
    assert cell_text(1.5) == "1.5"
    assert cell_text(None) == ""
    assert cell_text(dt.datetime(2026, 11, 23)) == "2026-11-23"
    assert cell_text("  KFR-01 \n") == "KFR-01"


# --------------------------------------------------------------------------- bundled sheet

# The cases and expectations the issue lists, in order.
BUNDLED_EXPECTATIONS = [
    (200, None),
    (201, None),
    (201, None),
    (201, None),
    (200, None),
    (200, None),
    (204, None),
    (200, None),
    (404, "KFR-008"),
    (201, None),
    (201, None),
    (400, "KFR-010"),
    (400, "KFR-005"),
    (400, "KFR-009"),
    (400, "KFR-004"),
    (403, "KFR-003"),
    (401, "KFR-001"),
    (403, "KFR-002"),
    (403, None),
    (413, None),
    (None, None),
    (None, None),
]


def test_bundled_sheet_reads_to_the_22_kfr_cases() -> None:
    info, cases = read_sheet(BUNDLED_SHEET)
    assert [c.case_id for c in cases] == [f"KFR-{n:02d}" for n in range(1, 23)]
    assert [(c.expected.status, c.expected.error_code) for c in cases] == BUNDLED_EXPECTATIONS
    assert [c.case_id for c in cases if c.manual] == ["KFR-21", "KFR-22"]
    assert info.version == "1.0"
    assert (info.worksheet, info.header_row) == ("Testtilfeller", 4)
    assert info.sha256 == hashlib.sha256(BUNDLED_SHEET.read_bytes()).hexdigest()
    assert set(info.columns) == {
        "id",
        "category",
        "description",
        "preconditions",
        "test_data",
        "expected",
        "actual",
        "status",
        "comment",
        "date",
        "executed_by",
        "correlation_id",
    }
    first = cases[0]
    assert first.title == "Token fra Maskinporten"
    assert "bits:kundeforhold.write" in first.expected.text
    assert first.sheet_name == "Testtilfeller" and first.row == 6  # row 5 is a section
    assert all(c.description and c.category for c in cases)


def test_bundled_sheet_has_cover_title_block_formatting_and_status_list() -> None:
    wb = load_workbook(BUNDLED_SHEET)
    assert wb.sheetnames == ["Forside", "Testtilfeller"]
    cover = [c for row in wb["Forside"].iter_rows(values_only=True) for c in row if c]
    assert "KFR – Integrasjonstester" in cover and "Versjon: 1.0" in cover
    assert any(str(c).startswith("Dato: ") for c in cover)
    ws = wb["Testtilfeller"]
    assert "A1:L1" in {str(r) for r in ws.merged_cells.ranges}
    headers = [ws.cell(row=4, column=c).value for c in range(1, 13)]
    assert headers == [
        "Testcase-ID",
        "Kategori",
        "Beskrivelse",
        "Forutsetninger",
        "Testdata",
        "Forventet resultat",
        "Faktisk resultat",
        "Status",
        "Kommentar",
        "Dato",
        "Utført av",
        "CorrelationID",
    ]
    assert all(ws.cell(row=4, column=c).font.b for c in range(1, 13))
    assert ws.column_dimensions["C"].width > 30
    sections = [
        ws.cell(row=r, column=1).value
        for r in range(5, ws.max_row + 1)
        if ws.cell(row=r, column=2).value is None and ws.cell(row=r, column=1).value
    ]
    assert sections == ["Enkeltregistrering", "Batch", "Feilhåndtering", "Manuelle kontroller"]
    (validation,) = ws.data_validations.dataValidation
    for status in ("OK", "Feilet", "Feil i miljø", "Ikke automatisert", "Ikke utført"):
        assert status in validation.formula1
    assert str(validation.sqref).startswith("H")


def test_bundled_sheet_is_what_the_generator_builds(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_bundled_sheet", ROOT / "tools" / "make_bundled_sheet.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    rebuilt = module.write_bundled_sheet(tmp_path / "KFR-Integrasjonstester.xlsx")
    assert rebuilt.read_bytes() == BUNDLED_SHEET.read_bytes(), "run tools/make_bundled_sheet.py"


# --------------------------------------------------------------------------- other layouts


def _workbook(path: Path, rows: list[list[object]], *, title: str = "Ark1") -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


@pytest.mark.parametrize(
    ("headers", "roles"),
    [
        (
            ["Nr", "Testbeskrivelse", "Forventet resultat (HTTP-status og feilkode)"],
            ["id", "description", "expected"],
        ),
        (
            ["Test ID", "Title", "Description", "Expected result", "Actual result", "Status"],
            ["id", "title", "description", "expected", "actual", "status"],
        ),
        (
            ["Testtilfelle", "Beskrivelse", "Forventet", "Faktisk", "Testet av", "Correlation-ID"],
            ["id", "description", "expected", "actual", "executed_by", "correlation_id"],
        ),
        (
            ["ID", "Type", "Description", "Expected Outcome", "Comments", "Date"],
            ["id", "type", "description", "expected", "comment", "date"],
        ),
    ],
)
def test_header_names_in_norwegian_or_english_are_recognised(
    tmp_path: Path, headers, roles
) -> None:
    row = ["1", "Manuell", "Registrer kundeforhold", "HTTP 201 Created", "", ""][: len(headers)]
    row[headers.index(next(h for h, r in zip(headers, roles, strict=True) if r == "expected"))] = (
        "HTTP 201 Created"
    )
    path = _workbook(tmp_path / "ark.xlsx", [headers, row])
    info, cases = read_sheet(path)
    assert {role: info.columns[role] for role in roles} == {
        r: i for i, r in enumerate(roles, start=1)
    }
    assert cases[0].case_id == "1" and cases[0].expected.status == 201


def test_section_blank_footer_and_repeated_header_rows_are_not_cases_but_reported(
    tmp_path: Path,
) -> None:
    path = _workbook(
        tmp_path / "ark.xlsx",
        [
            ["Testcase-ID", "Beskrivelse", "Forventet resultat"],
            ["Enkeltregistrering"],
            [],
            [1, "Registrer kundeforhold for fødselsnummer", "HTTP 201 Created"],
            [None, "En merknad uten ID", "HTTP 200 OK"],
            [2.0, "Rad uten forventning", None],
            ["Testcase-ID", "Beskrivelse", "Forventet resultat"],
            [3, "Avslutt et kundeforhold", "HTTP 204 No Content"],
            [3, "Samme ID en gang til", "HTTP 204 No Content"],
            ["Signatur: ________"],
        ],
    )
    info, cases = read_sheet(path)
    # A row with an expectation but no id, and one with an id but no expectation, are
    # read (under a made-up id, or to be shown as not automated), never skipped.
    assert [(c.case_id, c.row) for c in cases] == [
        ("1", 4),
        ("Rad 5", 5),
        ("2", 6),
        ("3", 8),
        ("3 (rad 9)", 9),
    ]
    assert sorted((n.row, n.kind, n.warning) for n in info.notices) == [
        (2, "section", False),
        (5, "no_id", True),
        (6, "empty_expectation", True),
        (7, "repeated_header", False),
        (9, "duplicate_id", True),
        (10, "section", False),
    ]


def test_manual_rows_are_recognised_by_type_column_or_text(tmp_path: Path) -> None:
    path = _workbook(
        tmp_path / "ark.xlsx",
        [
            ["ID", "Type", "Beskrivelse", "Forventet resultat"],
            ["A", "Manuell", "Kjernesystemet holder KFR oppdatert", "Bekreftet av banken"],
            ["B", "Automatisk", "Registrer kundeforhold", "HTTP 201"],
            ["C", "", "Manual check: deletes wait for the batch", "Confirmed by the bank"],
            ["D", "Manual", "Something", "Confirmed"],
        ],
    )
    _, cases = read_sheet(path)
    assert {c.case_id: c.manual for c in cases} == {"A": True, "B": False, "C": True, "D": True}


def test_the_best_header_wins_over_a_cover_sheet_that_mentions_columns(tmp_path: Path) -> None:
    wb = Workbook()
    cover = wb.active
    cover.title = "Forside"
    cover.append(["ID", "Forventet"])  # a two-column glossary, weaker than the real header
    cover.append(["Versjon", 2.1])  # the value in the next cell, typed as a number
    cases = wb.create_sheet("Tester")
    cases.append(["Testcase-ID", "Beskrivelse", "Forventet resultat", "Status", "Kommentar"])
    cases.append(["KFR-01", "Token fra Maskinporten", "HTTP 200 OK", None, None])
    path = tmp_path / "ark.xlsx"
    wb.save(path)
    info, found = read_sheet(path)
    assert (info.worksheet, info.header_row, info.version) == ("Tester", 1, "2.1")
    assert [c.case_id for c in found] == ["KFR-01"]


@pytest.mark.parametrize(
    ("cells", "properties_version", "file_name", "version"),
    [
        (["Version 2.1"], None, "ark.xlsx", "2.1"),
        (["Testark v1.3"], None, "ark.xlsx", None),  # a "v" inside prose is not a version
        (["v1.3"], None, "ark.xlsx", "1.3"),
        (["Versjon nr. 4"], None, "ark.xlsx", "4"),
        (["Testark for KFR API v1.1.2"], "3.2", "ark.xlsx", "3.2"),
        ([], None, "KFR-Integrasjonstester v1.4.xlsx", "1.4"),
        ([], None, "ark.xlsx", None),
    ],
)
def test_version_comes_from_a_cell_the_properties_or_the_file_name(
    tmp_path: Path, cells, properties_version, file_name, version
) -> None:
    wb = Workbook()
    ws = wb.active
    for value in cells:
        ws.append([value])
    ws.append(["Testcase-ID", "Beskrivelse", "Forventet resultat"])
    ws.append(["KFR-01", "Beskrivelse som nevner API v2.9.9 og versjon 7", "HTTP 200 OK"])
    wb.properties.version = properties_version
    path = tmp_path / file_name
    wb.save(path)
    assert read_sheet(path)[0].version == version


# --------------------------------------------------------------------------- bad files


def _assert_plain(exc: SheetError, *needles: str) -> None:
    text = exc.diagnostics()
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text


def test_missing_file_and_directory_give_plain_errors(tmp_path: Path) -> None:
    with pytest.raises(SheetError) as missing:
        read_sheet(tmp_path / "finnes-ikke.xlsx")
    _assert_plain(missing.value, "Finner ikke arket", "finnes-ikke.xlsx")
    with pytest.raises(SheetError) as folder:
        read_sheet(tmp_path)
    _assert_plain(folder.value, "er ikke en fil")


def test_text_file_named_xlsx_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "ark.xlsx"
    path.write_text("Testcase-ID;Forventet\nKFR-01;200\n")
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, "ikke en Excel-arbeidsbok", "ark.xlsx")


def test_zip_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ark.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hei.txt", "ikke et regneark")
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, "kan ikke leses som .xlsx")


def test_truncated_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ark.xlsx"
    path.write_bytes(BUNDLED_SHEET.read_bytes()[:3000])
    with pytest.raises(SheetError):
        read_sheet(path)


def _compound_file(*streams: str) -> bytes:
    """The start of an OLE compound file (what Excel writes for .xls and encrypted .xlsx),
    with directory entry names as UTF-16 like the real format."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    return (
        header
        + b"".join(name.encode("utf-16-le") + b"\x00\x00" for name in streams)
        + b"\x00" * 512
    )


def test_encrypted_workbook_says_so(tmp_path: Path) -> None:
    path = tmp_path / "ark.xlsx"
    path.write_bytes(_compound_file("EncryptionInfo", "EncryptedPackage"))
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, "passordbeskyttet")


def test_old_xls_format_says_so(tmp_path: Path) -> None:
    path = tmp_path / "ark.xls"
    path.write_bytes(_compound_file("Workbook", "SummaryInformation"))
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, ".xls", "lagre det som")


def test_workbook_without_header_row(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "ark.xlsx", [["Budsjett", "2026"], ["Husleie", 12000]])
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, "Fant ingen overskriftsrad", "Forventet resultat")


def test_header_without_cases(tmp_path: Path) -> None:
    path = _workbook(
        tmp_path / "ark.xlsx", [["Testcase-ID", "Beskrivelse", "Forventet resultat"], ["Seksjon"]]
    )
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    _assert_plain(err.value, "Fant ingen testtilfeller", "rad 1")
