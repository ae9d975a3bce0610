"""The plan per day and the announcement draft to DSOP@bits.no."""

from __future__ import annotations

import datetime as dt
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from conformance.errors import UsageError
from conformance.firstload.announce import (
    announcement_email,
    next_working_day,
    plan_days,
    write_announcement,
)
from conformance.firstload.batchfile import BatchFile


def _files(*sizes: int) -> list[BatchFile]:
    return [BatchFile(f"kfr-batch-{i:04d}.txt", Path(f"kfr-batch-{i:04d}.txt"), n, n * 12, "0" * 64)
            for i, n in enumerate(sizes, start=1)]


def test_whole_files_on_working_days() -> None:
    saturday = dt.date(2026, 12, 5)
    plan = plan_days(_files(40, 40, 40, 90, 10), saturday, per_day=100)
    assert [(d.day.isoformat(), d.ids, d.files) for d in plan] == [
        ("2026-12-07", 80, ("kfr-batch-0001.txt", "kfr-batch-0002.txt")),   # Monday
        ("2026-12-08", 40, ("kfr-batch-0003.txt",)),
        ("2026-12-09", 100, ("kfr-batch-0004.txt", "kfr-batch-0005.txt")),
    ]
    # A file larger than a day's volume still gets a day of its own.
    assert [d.ids for d in plan_days(_files(150, 10), saturday, per_day=100)] == [150, 10]
    assert next_working_day(dt.date(2026, 12, 4)) == dt.date(2026, 12, 7)  # Friday → Monday
    with pytest.raises(UsageError):
        plan_days(_files(1), saturday, per_day=0)


def test_announcement_says_who_when_and_how_many(tmp_path: Path) -> None:
    files = _files(150_000, 150_000, 20_000)
    plan = plan_days(files, dt.date(2027, 1, 11), per_day=200_000)
    message = announcement_email(
        bank_name="Eksempelbanken ASA", orgnr="311000004", contact="Kari <kari@eksempelbanken.no>",
        plan=plan, by_kind={"fødselsnummer": 300_000, "D-nummer": 5_000, "organisasjonsnummer": 15_000},
        files=files, ended_left_out=4_321, now=dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC),
    )
    path = write_announcement(tmp_path, message)
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert parsed["To"] == "DSOP@bits.no"
    assert parsed["Subject"] == "KFR førstegangslast (D-3) fra 2027-01-11 – Eksempelbanken ASA (311000004)"
    assert parsed["Message-ID"].endswith("@eksempelbanken.no>")
    body = parsed.get_content()
    for line in (
        "Totalt 320 000 kundeforhold i 3 batchfiler (hver under 10 MB)",
        "fødselsnummer: 300 000, D-nummer: 5 000, organisasjonsnummer: 15 000",
        "Avsluttede kundeforhold er ikke med (4 321 utelatt).",
        "mandag 2027-01-11: 150 000 kundeforhold, fil 1 (over 100 000)",
        "tirsdag 2027-01-12: 170 000 kundeforhold, filene 2–3 (over 100 000)",
        "Dager over 100 000: 2 av 2.",
        "Kontaktperson: Kari <kari@eksempelbanken.no>",
    ):
        assert line in body, line
    assert "21 min 20 s i alt" in body  # 320 000 at 250 per second
