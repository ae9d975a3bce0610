"""Bank-supplied test identities: validated up front, each used once, shared between workers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from stdnum.no import fodselsnummer

from conformance.errors import UsageError
from conformance.ids import IdKind, classify, synthetic_d_nummer, synthetic_orgnr
from conformance.testids import load_test_ids


def nav_synthetic(rng: random.Random) -> str:
    """A NAV-style synthetic fødselsnummer (month + 40): a real date, so python-stdnum's own
    birth-date check accepts it, yet no person has it."""
    while True:
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(50, 99)
        base = f"{day:02d}{month + 40:02d}{year:02d}{rng.randint(500, 749):03d}"
        try:
            first = fodselsnummer.calc_check_digit1(base)
            second = fodselsnummer.calc_check_digit2(base + first)
        except ValueError:
            continue
        value = base + first + second
        if len(value) == 11 and fodselsnummer.is_valid(value):
            return value


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "testids.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_line_is_validated_with_its_number(tmp_path: Path) -> None:
    rng = random.Random(1)
    good = nav_synthetic(rng)
    path = _file(tmp_path, ["# bankens testkunder", good, "12345678901", "", good, "abc"])
    with pytest.raises(UsageError) as caught:
        load_test_ids(path)
    text = caught.value.message
    assert "linje 3" in text and "12345678901" in text
    assert "linje 5" in text and "også på linje 2" in text
    assert "linje 6" in text


def test_pools_per_kind_and_each_identity_once_across_runs(tmp_path: Path) -> None:
    rng = random.Random(2)
    people = [nav_synthetic(rng) for _ in range(3)]
    dnr, org = synthetic_d_nummer(rng), synthetic_orgnr(rng)
    assert classify(people[0]) is IdKind.FODSELSNUMMER and fodselsnummer.is_valid(people[0])
    path = _file(tmp_path, ["kunde_id;navn", *(f"{p};Test Person" for p in people), dnr, org])
    ledger = tmp_path / "used.txt"
    ids = load_test_ids(path, ledger=ledger)
    assert ids.counts() == {"fødselsnummer": 3, "D-nummer": 1, "organisasjonsnummer": 1}
    assert ids.take("fodselsnummer") == people[0]
    assert ids.take("orgnr") == org
    with pytest.raises(UsageError, match="ikke flere ubrukte organisasjonsnummer"):
        ids.take("orgnr")
    again = load_test_ids(path, ledger=ledger)  # a later run: what was sent is not offered again
    assert again.counts() == {"fødselsnummer": 2, "D-nummer": 1, "organisasjonsnummer": 0}


def test_workers_take_disjoint_shares(tmp_path: Path) -> None:
    rng = random.Random(3)
    people = [nav_synthetic(rng) for _ in range(6)]
    ids = load_test_ids(_file(tmp_path, people))
    shares = [ids.share(i, 3).pools[IdKind.FODSELSNUMMER] for i in range(3)]
    assert sorted(value for share in shares for value in share) == sorted(people)
    assert all(len(s) == 2 for s in shares)
