"""Reading core-system exports: formats, headers, line numbers, dates and status."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conformance.errors import UsageError
from conformance.firstload.export import ColumnMapping, DateReader, ExportReader, StatusReader


def _rows(path: Path, **options) -> list[tuple]:
    return list(ExportReader(path, **options))


def test_one_id_per_line_with_or_without_a_header(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("311000004\n\n  988077917  \r\n")
    assert _rows(plain) == [(1, "311000004", "", "", ""), (3, "988077917", "", "", "")]
    headed = tmp_path / "b.txt"
    headed.write_text("fnr\n311000004\n")
    reader = ExportReader(headed)
    assert reader.fmt == "list" and list(reader) == [(2, "311000004", "", "", "")]


def test_csv_line_numbers_survive_quoted_line_breaks(tmp_path: Path) -> None:
    export = tmp_path / "e.csv"
    export.write_text('id;kommentar;start\n311000004;"to\nlinjer";2020-01-01\n988077917;;\n')
    assert _rows(export, mapping=ColumnMapping.parse("id=id,start=start")) == [
        (2, "311000004", "2020-01-01", "", ""),
        (4, "988077917", "", "", ""),
    ]


def test_delimiter_and_header_detection(tmp_path: Path) -> None:
    tabbed = tmp_path / "t.tsv"
    tabbed.write_text("Organisasjonsnummer\tStatus\n988077917\tAktiv\n")
    reader = ExportReader(tabbed)
    assert (reader.fmt, reader.delimiter) == ("csv", "\t")
    assert list(reader) == [(2, "988077917", "", "", "Aktiv")]
    data_first = tmp_path / "d.csv"
    data_first.write_text("988077917;2020-01-01\n")
    with pytest.raises(UsageError, match="ser ut som data"):
        ExportReader(data_first)
    reader = ExportReader(data_first, has_header=False, mapping=ColumnMapping.parse("id=1,start=2"))
    assert list(reader) == [(1, "988077917", "2020-01-01", "", "")]


def test_mapping_errors_are_plain(tmp_path: Path) -> None:
    export = tmp_path / "e.csv"
    export.write_text("a;b\n1;2\n")
    for text, expected in (("id", "forstås ikke"), ("id=0", "begynner på 1"),
                           ("id=9", "bare 2 kolonner"), ("id=a,start=a", "samme kolonne"),
                           ("id=zzz", "Fant ingen kolonne")):
        with pytest.raises(UsageError, match=expected):
            ExportReader(export, mapping=ColumnMapping.parse(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2020-03-01", dt.date(2020, 3, 1)), ("01.03.2020", dt.date(2020, 3, 1)),
     ("1.3.2020", dt.date(2020, 3, 1)), ("20200301", dt.date(2020, 3, 1)),
     ("01/03/2020", dt.date(2020, 3, 1)), ("01-03-2020", dt.date(2020, 3, 1)),
     ("2020/03/01", dt.date(2020, 3, 1)), ("2020-03-01T13:45:00+01:00", dt.date(2020, 3, 1)),
     ("2020-03-01 13:45", dt.date(2020, 3, 1)), ("", None)],
)
def test_common_date_formats(text: str, expected) -> None:
    assert DateReader().read(text) == expected


def test_unreadable_dates_say_why() -> None:
    assert "finnes" in DateReader().read("30.02.2020")
    assert "ukjent datoformat" in DateReader().read("1/3/20")  # two-digit years are ambiguous
    assert DateReader("%m/%d/%Y").read("03/01/2020") == dt.date(2020, 3, 1)
    assert "--date-format" in DateReader("%m/%d/%Y").read("2020-03-01")


def test_status_words() -> None:
    statuses = StatusReader(ended={"Frosset"})
    assert statuses.is_ended("Avsluttet") is True and statuses.is_ended("closed") is True
    assert statuses.is_ended("Aktiv") is False and statuses.is_ended("") is False
    assert statuses.is_ended("frosset") is True
    assert statuses.is_ended("Ukjent") is None
