"""``batch build``: an export with bad IDs, duplicates and ended relationships gives exact
counts, and the files hold exactly the valid, current set — each ID once, earliest date."""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import pytest
from stdnum.no import fodselsnummer

from conformance import ids
from conformance.errors import UsageError
from conformance.firstload.build import BuildOptions, build_first_load
from conformance.firstload.dedup import DuplicateFinder, EarliestByKey
from conformance.firstload.export import ColumnMapping
from conformance.firstload.rules import ENVELOPE_BYTES, MAX_CUSTOMERS_BYTES, MAX_REQUEST_BYTES
from conformance.kfr import DSOPBANK, build_multipart

TODAY = dt.date(2026, 6, 15)


def read_back(out_dir: Path) -> dict[str, str | None]:
    """Every entry of every built file: id → start date (None when undated). Fails on an
    ID that occurs twice."""
    entries: dict[str, str | None] = {}
    for path in sorted(out_dir.glob("kfr-batch-*.txt")):
        for element in path.read_text(encoding="ascii").split(","):
            customer, _, day = element.partition("#")
            assert customer not in entries, f"{customer} twice"
            entries[customer] = day or None
    return entries


def _impossible_date_number() -> str:
    for individual in range(100, 999):
        base = f"310290{individual:03d}"  # 31 February
        k1 = fodselsnummer.calc_check_digit1(base)
        if k1 != "10":
            k2 = fodselsnummer.calc_check_digit2(base + k1)
            if k2 != "10":
                return base + k1 + k2
    raise AssertionError


@pytest.fixture
def messy_export(tmp_path: Path) -> tuple[Path, dict[str, str | None], dict[str, int]]:
    """A semicolon CSV as a core system writes it, with known numbers of each problem."""
    rng = random.Random(7)
    rows: list[list[str]] = []
    expected: dict[str, str | None] = {}
    fresh = set()

    def new(kind: str) -> str:
        while True:
            value = {"f": ids.synthetic_fodselsnummer, "d": ids.synthetic_d_nummer,
                     "o": ids.synthetic_orgnr}[kind](rng)
            if value not in fresh:
                fresh.add(value)
                return value

    # 40 fødselsnummer, 10 D-nummer, 10 orgnr: valid, current, each once, dates in many formats.
    formats = ["%Y-%m-%d", "%d.%m.%Y", "%Y%m%d", "%d/%m/%Y", "%Y-%m-%dT08:30:00"]
    for index, kind in enumerate("f" * 40 + "d" * 10 + "o" * 10):
        customer = new(kind)
        start = dt.date(2010, 1, 1) + dt.timedelta(days=index * 37)
        rows.append([customer, start.strftime(formats[index % len(formats)]), "", "Aktiv"])
        expected[customer] = start.isoformat()
    # 3 without a start date (KFR uses today).
    for _ in range(3):
        customer = new("f")
        rows.append([customer, "", "", ""])
        expected[customer] = None
    # Duplicates: A three times, B twice, C dated + undated; the earliest date is kept.
    a, b, c = new("f"), new("o"), new("d")
    rows += [[a, "2015-05-05", "", "Aktiv"], [a, "01.01.2012", "", "Aktiv"], [a, "20200101", "", ""]]
    rows += [[b, "2019-09-09", "", ""], [b, "2019-09-09", "", ""]]
    rows += [[c, "", "", ""], [c, "2001-02-03", "", ""]]
    expected.update({a: "2012-01-01", b: "2019-09-09", c: "2001-02-03"})
    duplicate_rows = 2 + 1 + 1
    # Ended: end date in the past or today, or status says so; a future end date is current.
    ended = 0
    for end in ("2020-01-01", "14.06.2026", "2026-06-15"):
        rows.append([new("f"), "2011-01-01", end, ""])
        ended += 1
    for status in ("Avsluttet", "closed"):
        rows.append([new("o"), "2011-01-01", "", status])
        ended += 1
    current = new("f")
    rows.append([current, "2011-01-01", "2026-06-16", "Aktiv"])
    expected[current] = "2011-01-01"
    # The same customer ended once and current again: counted as ended once, kept once.
    again = new("d")
    rows += [[again, "2005-01-01", "2006-01-01", ""], [again, "2018-03-03", "", ""]]
    ended += 1
    expected[again] = "2018-03-03"
    # Rejected: every reason once (some twice).
    good = ids.synthetic_fodselsnummer(rng)
    rejected_rows = [
        [ids.invalid_check_digit(new("f")), "2011-01-01", "", ""],
        [ids.invalid_check_digit(new("o")), "2011-01-01", "", ""],
        [_impossible_date_number(), "2011-01-01", "", ""],
        ["1234567", "2011-01-01", "", ""],
        [new("f")[1:], "2011-01-01", "", ""],            # leading zero lost
        ["0101901234x", "2011-01-01", "", ""],
        ["", "2011-01-01", "", "Aktiv"],
        [new("f"), "2099-01-01", "", ""],               # starts in the future
        [new("f"), "31.02.2011", "", ""],               # no such date
        [new("f"), "next week", "", ""],
        [new("f"), "2011-01-01", "someday", ""],
        [new("o"), "2011-01-01", "", "Frosset"],        # unknown status
        [ids.invalid_check_digit(good), "2011-01-01", "2012-01-01", ""],  # ended *and* invalid
    ]
    rows += rejected_rows
    rng.shuffle(rows)
    path = tmp_path / "kjerne-eksport.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Kunde-ID", "Startdato", "Sluttdato", "Status"])
        writer.writerow([])  # a blank line is not a row
        writer.writerows(rows)
    counts = {"rows": len(rows), "rejected": len(rejected_rows), "ended": ended,
              "duplicates": duplicate_rows, "unique": len(expected)}
    return path, expected, counts


def test_exact_counts_and_round_trip(messy_export, tmp_path: Path) -> None:
    export, expected, counts = messy_export
    out = tmp_path / "ut"
    summary = build_first_load(export, out, BuildOptions(allow_synthetic=True, today=TODAY))

    assert summary.rows == counts["rows"]
    assert summary.rejected == counts["rejected"]
    assert summary.ended == counts["ended"]
    assert summary.duplicate_rows == counts["duplicates"]
    assert summary.unique == counts["unique"]
    assert summary.kept_rows == counts["unique"] + counts["duplicates"]
    assert summary.rows == summary.rejected + summary.ended + summary.kept_rows
    assert summary.undated == 3
    assert summary.by_kind == {
        ids.IdKind.FODSELSNUMMER: 40 + 3 + 1 + 1,
        ids.IdKind.D_NUMMER: 10 + 1 + 1,
        ids.IdKind.ORGNR: 10 + 1,
    }
    assert read_back(out) == expected
    assert sum(f.ids for f in summary.files) == counts["unique"]

    reasons = summary.rejected_by_reason
    assert reasons["ugyldig kontrollsiffer"] == 2
    assert reasons["ugyldig kontrollsiffer (organisasjonsnummer)"] == 1
    assert reasons["ugyldig fødselsdato i nummeret"] == 1
    assert reasons["startdato etter i dag"] == 1
    assert reasons["ugyldig startdato"] == 2
    assert reasons["ugyldig sluttdato"] == 1
    assert reasons["ukjent status"] == 1
    assert sum(reasons.values()) == counts["rejected"]

    with open(out / "avviste-linjer.csv", encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.reader(handle, delimiter=";"))
    assert lines[0] == ["linje", "id", "årsak"]
    assert len(lines) - 1 == counts["rejected"]
    # Line numbers point at the export's physical lines (header 1, blank 2).
    source = export.read_text(encoding="utf-8").splitlines()
    for line, raw, _reason in lines[1:]:
        assert source[int(line) - 1].split(";")[0] == raw


def test_synthetic_ids_are_refused_unless_allowed(messy_export, tmp_path: Path) -> None:
    export, _, counts = messy_export
    summary = build_first_load(export, tmp_path / "ut", BuildOptions(today=TODAY))
    # Every valid ID in the fixture is synthetic (Tenor persons, orgnr starting with 3), and
    # the ID is judged first: all rows are rejected, 8 of them for an invalid ID.
    assert summary.unique == 0 and summary.files == [] and summary.ended == 0
    assert summary.rejected == counts["rows"]
    synthetic = summary.rejected_by_reason["syntetisk test-ID (tillatt bare med --allow-synthetic)"]
    assert synthetic == counts["rows"] - 8


def test_files_stay_under_the_limit_and_round_trip(tmp_path: Path) -> None:
    rng = random.Random(11)
    numbers = {ids.synthetic_fodselsnummer(rng) for _ in range(3000)}
    numbers |= {ids.synthetic_orgnr(rng) for _ in range(500)}
    export = tmp_path / "liste.txt"
    export.write_text("\n".join(sorted(numbers)) + "\n")
    summary = build_first_load(export, tmp_path / "ut",
                               BuildOptions(allow_synthetic=True, max_bytes=2000, today=TODAY))
    assert summary.export_format == "list"
    sizes = [p.stat().st_size for p in sorted((tmp_path / "ut").glob("kfr-batch-*.txt"))]
    assert len(sizes) == len(summary.files) > 10
    assert max(sizes) <= 2000 and min(sizes) > 0
    assert [f.bytes for f in summary.files] == sizes
    assert read_back(tmp_path / "ut") == dict.fromkeys(numbers)


def test_ten_megabytes_include_the_multipart_envelope() -> None:
    # The largest file build writes, sent the way KfrClient.batch sends it, is 10 000 000 bytes.
    body = build_multipart("1" * 24, DSOPBANK, b"0" * MAX_CUSTOMERS_BYTES)
    assert len(body) == MAX_REQUEST_BYTES == MAX_CUSTOMERS_BYTES + ENVELOPE_BYTES
    assert MAX_REQUEST_BYTES <= 10 * 1024 * 1024  # also under the sandbox's 10 MiB


def test_an_earlier_build_is_never_overwritten(tmp_path: Path) -> None:
    export = tmp_path / "liste.txt"
    export.write_text("311000004\n")
    out = tmp_path / "ut"
    build_first_load(export, out, BuildOptions(allow_synthetic=True, today=TODAY))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    export.write_text("988077917\n")
    with pytest.raises(UsageError, match="tidligere bygging"):
        build_first_load(export, out, BuildOptions(allow_synthetic=True, today=TODAY))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_column_mapping_by_name_and_number(tmp_path: Path) -> None:
    export = tmp_path / "eksport.csv"
    export.write_text(
        "Kundenr,Navn,Fnr/Orgnr,Kunde siden,Opphørt\n"
        "1,Ola,311000004,2019-01-01,\n"
        "2,Kari,988077917,2018-01-01,2020-01-01\n", encoding="utf-8")
    by_name = build_first_load(export, tmp_path / "a", BuildOptions(
        allow_synthetic=True, today=TODAY,
        mapping=ColumnMapping.parse("id=Fnr/Orgnr,start=Kunde siden,end=Opphørt")))
    by_number = build_first_load(export, tmp_path / "b", BuildOptions(
        allow_synthetic=True, today=TODAY, mapping=ColumnMapping.parse("id=3,start=4,end=5")))
    for summary, folder in ((by_name, "a"), (by_number, "b")):
        assert (summary.unique, summary.ended) == (1, 1)
        assert read_back(tmp_path / folder) == {"311000004": "2019-01-01"}


def test_unknown_id_column_names_the_headers(tmp_path: Path) -> None:
    export = tmp_path / "eksport.csv"
    export.write_text("Kundenr;Navn\n1;Ola\n", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        build_first_load(export, tmp_path / "ut", BuildOptions(today=TODAY))
    assert "--columns id=" in err.value.diagnostics() and "Kundenr, Navn" in err.value.diagnostics()
    assert not (tmp_path / "ut").exists()


def test_windows_1252_export_needs_the_encoding_option(tmp_path: Path) -> None:
    export = tmp_path / "eksport.csv"
    export.write_bytes("Fødselsnummer;Status\n311000004;Løpende\n".encode("cp1252"))
    with pytest.raises(UsageError) as err:
        build_first_load(export, tmp_path / "a", BuildOptions(allow_synthetic=True, today=TODAY))
    assert "--encoding cp1252" in err.value.diagnostics()
    assert not (tmp_path / "a").exists()
    summary = build_first_load(export, tmp_path / "b", BuildOptions(
        allow_synthetic=True, today=TODAY, encoding="cp1252"))
    assert summary.unique == 1 and summary.rejected == 0


@pytest.mark.parametrize("spill_at", [500, 10**9])
def test_bounded_dedup_keeps_the_earliest_value(tmp_path: Path, spill_at: int) -> None:
    rng = random.Random(spill_at)
    pairs = [(rng.randrange(2000), rng.randrange(10_000)) for _ in range(20_000)]
    want: dict[int, int] = {}
    for key, value in pairs:
        want[key] = min(value, want.get(key, value))
    table = EarliestByKey(partitions=8, spill_at=spill_at, work_dir=tmp_path / "tmp")
    for start in range(0, len(pairs), 999):
        chunk = pairs[start : start + 999]
        table.add_many([k for k, _ in chunk], [v for _, v in chunk])
    assert (table.spills > 0) == (spill_at == 500)
    assert dict(table.unique()) == want
    assert not list((tmp_path / "tmp").glob("*/*")), "spill files are removed"


def test_duplicate_finder_counts_repeated_keys_across_spills(tmp_path: Path) -> None:
    keys = [5, 7, 5, 9, 7, 5, 11, 10**10 + 5]
    finder = DuplicateFinder(partitions=3, spill_at=2, work_dir=tmp_path / "tmp")
    finder.add_keys(keys[:3])
    finder.add_keys(keys[3:])
    assert finder.spills == 2
    assert dict(finder.duplicates()) == {5: 3, 7: 2}
    assert not list((tmp_path / "tmp").glob("*/*"))
