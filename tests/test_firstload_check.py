"""``batch check``: files from elsewhere, judged by the rules ``build`` follows."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from conformance import ids
from conformance.errors import UsageError
from conformance.firstload.batchfile import expand_batch_paths
from conformance.firstload.build import BuildOptions, build_first_load
from conformance.firstload.check import check_files

TODAY = dt.date(2026, 6, 15)


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


def test_what_build_writes_passes(tmp_path: Path) -> None:
    rng = random.Random(3)
    numbers = [ids.synthetic_fodselsnummer(rng) for _ in range(400)]
    numbers += [ids.synthetic_d_nummer(rng) for _ in range(100)]
    numbers += [ids.synthetic_orgnr(rng) for _ in range(100)]
    export = tmp_path / "eksport.csv"
    export.write_text("fnr,start\n" + "\n".join(f"{n},2019-0{i % 9 + 1}-01" for i, n in enumerate(numbers)))
    summary = build_first_load(export, tmp_path / "ut",
                               BuildOptions(allow_synthetic=True, max_bytes=3000, today=TODAY))
    report = check_files(expand_batch_paths([tmp_path / "ut"]), allow_synthetic=True, today=TODAY)
    assert report.ok and report.errors == report.warnings == 0
    assert report.ids == len(set(numbers)) == summary.unique
    assert [f.sha256 for f in report.files] == [f.sha256 for f in summary.files]
    assert report.by_kind[ids.IdKind.D_NUMMER] == len({n for n in numbers if int(n[0]) >= 4})


def test_every_problem_is_found_with_its_position(tmp_path: Path) -> None:
    rng = random.Random(5)
    a, b, c, d = (ids.synthetic_fodselsnummer(rng) for _ in range(4))
    org = ids.synthetic_orgnr(rng)
    first = _write(tmp_path / "a.txt", ",".join([
        a,                                   # 1 ok
        ids.invalid_check_digit(b),          # 2 check digit
        "",                                  # 3 empty element
        f"{c}#2019-02-30",                   # 4 no such date
        f"{c}#19.02.2019",                   # 5 wrong date format
        f" {d}",                             # 6 space
        f"{org}#2026-06-16",                 # 7 after today
        a,                                   # 8 duplicate of 1
        "1234567890",                        # 9 ten digits
        f"{b}#2019-01-01",                   # 10 ok
    ]))
    second = _write(tmp_path / "b.txt", f"{b},{org}\n")  # b again (other file); trailing newline
    report = check_files([first, second], allow_synthetic=True, today=TODAY)

    found = {(p.file, p.element): p for p in report.problems}
    assert not report.ok
    assert found["a.txt", 2].reason == "ugyldig kontrollsiffer"
    assert found["a.txt", 3].reason.startswith("tomt element")
    assert "ikke finnes" in found["a.txt", 4].reason
    assert "YYYY-MM-DD" in found["a.txt", 5].reason
    assert found["a.txt", 6].reason.startswith("mellomrom")
    assert "etter i dag" in found["a.txt", 7].reason
    assert found["a.txt", 8].reason == "duplikat: står også som element 1 i samme fil"
    assert "ledende null" in found["a.txt", 9].reason
    assert found["b.txt", 1].reason == "duplikat: står også som element 10 i a.txt"
    assert found["b.txt", 2].warning and "linjeskift" in found["b.txt", 2].reason
    assert report.errors == 9 and report.warnings == 1 and report.duplicates == 2
    assert report.ids == 5  # a, a, b, b, org (duplicates are valid IDs, counted where they stand)


def test_duplicates_count_only_elements_that_passed(tmp_path: Path) -> None:
    org = "988077917"
    path = _write(tmp_path / "a.txt", f"{org}#2019-02-30,{org},{org}#2020-01-01")
    report = check_files([path], today=TODAY)
    problems = [(p.element, p.reason) for p in report.problems]
    assert problems == [(1, "dato som ikke finnes: «2019-02-30»"),
                        (3, "duplikat: står også som element 2 i samme fil")]
    assert report.duplicates == 1 and report.ids == 2


def test_synthetic_ids_are_errors_unless_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", f"{ids.synthetic_fodselsnummer(random.Random(1))},988077917")
    refused = check_files([path], today=TODAY)
    assert refused.errors == 1 and refused.reasons == {"syntetisk test-ID": 1}
    assert check_files([path], allow_synthetic=True, today=TODAY).ok


def test_size_and_emptiness(tmp_path: Path) -> None:
    big = _write(tmp_path / "big.txt", ",".join(["988077917"] * 30))
    report = check_files([big], today=TODAY, max_bytes=100)
    assert any(p.element == 0 and "byte" in p.reason for p in report.problems)
    empty = _write(tmp_path / "empty.txt", "")
    assert check_files([empty], today=TODAY).problems[0].reason == "filen er tom"
    blank = _write(tmp_path / "blank.txt", "\n")
    assert check_files([blank], today=TODAY).problems[0].reason == "filen har ingen ID-er"


def test_non_ascii_and_bom_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff988077917,98807791Ø".encode())
    reasons = [p.reason for p in check_files([path], today=TODAY).problems]
    assert reasons[0].startswith("starter med en byte order mark (BOM)")
    assert reasons[1] == "inneholder andre tegn enn sifre"


def test_elements_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Elements cut in two by the 1 MiB reads are put back together (small reads here)."""
    import conformance.firstload.check as check_module

    monkeypatch.setattr(check_module, "READ_CHUNK", 7)
    rng = random.Random(9)
    numbers = [ids.synthetic_fodselsnummer(rng) for _ in range(50)]
    path = _write(tmp_path / "a.txt", ",".join(f"{n}#2020-01-01" for n in numbers))
    report = check_files([path], allow_synthetic=True, today=TODAY)
    assert report.ok and report.ids == 50


def test_missing_paths_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="finnes ikke"):
        expand_batch_paths([tmp_path / "nope.txt"])
    (tmp_path / "tom").mkdir()
    with pytest.raises(UsageError, match="ingen batchfiler"):
        expand_batch_paths([tmp_path / "tom"])
