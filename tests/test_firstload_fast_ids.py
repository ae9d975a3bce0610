"""The fast identifier check gives python-stdnum's answers, only faster.

``classify_fast`` is what ``batch build`` and ``batch check`` run millions of times; these
tests hold it to the reference (``classify``, built on python-stdnum's check digits) and to
python-stdnum itself, on a large random sample of every kind of number a core system's
export can hold, and on every DDMM prefix there is.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from stdnum.exceptions import InvalidComponent
from stdnum.no import fodselsnummer, orgnr

from conformance import ids

SAMPLE_PER_KIND = 30_000  # about 120 000 values in all


def _with_check_digits(base: str) -> str | None:
    k1 = fodselsnummer.calc_check_digit1(base)
    if k1 == "10":
        return None
    k2 = fodselsnummer.calc_check_digit2(base + k1)
    return None if k2 == "10" else base + k1 + k2


def _person(rng: random.Random, *, day_offset: int, month_offset: int, valid_date: bool = True) -> str:
    while True:
        if valid_date:
            birth = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 125))
            day, month = birth.day, birth.month
            year = birth.year % 100
        else:  # impossible dates: 31 February, 31 April, day 0, month 13
            day, month = rng.choice([(31, 2), (30, 2), (31, 4), (0, 5), (12, 13), (32, 1)])
            year = rng.randrange(100)
        base = f"{day + day_offset:02d}{month + month_offset:02d}{year:02d}{rng.randrange(1000):03d}"
        number = _with_check_digits(base)
        if number:
            return number


def _sample(seed: int) -> list[str]:
    rng = random.Random(seed)
    values: list[str] = []
    for day_offset in (0, 40):                 # fødselsnummer, D-nummer
        for month_offset in (0, 40, 80):       # real, H-number/NAV, Tenor
            values += [_person(rng, day_offset=day_offset, month_offset=month_offset)
                       for _ in range(SAMPLE_PER_KIND // 6)]
            values += [_person(rng, day_offset=day_offset, month_offset=month_offset, valid_date=False)
                       for _ in range(SAMPLE_PER_KIND // 30)]
    good = list(values)
    # Wrong check digits: each position's digit changed, as typing errors do.
    for number in rng.sample(good, SAMPLE_PER_KIND // 2):
        position = rng.randrange(11)
        digit = str((int(number[position]) + rng.randrange(1, 10)) % 10)
        values.append(number[:position] + digit + number[position + 1 :])
    # Organisation numbers, valid and not, and random digit strings of every nearby length.
    values += [ids.synthetic_orgnr(rng) for _ in range(SAMPLE_PER_KIND // 4)]
    values += [f"{rng.randrange(10**9):09d}" for _ in range(SAMPLE_PER_KIND)]
    values += ["".join(rng.choice("0123456789") for _ in range(rng.choice((8, 10, 11, 12))))
               for _ in range(SAMPLE_PER_KIND)]
    return values


@pytest.fixture(scope="module")
def sample() -> list[str]:
    return _sample(20261130)


@pytest.fixture(scope="module")
def reference(sample: list[str]) -> list[ids.IdKind | None]:
    return [ids.classify(v) for v in sample]


def test_sample_covers_every_kind_and_failure(sample: list[str], reference: list) -> None:
    assert reference.count(ids.IdKind.FODSELSNUMMER) > 7_000
    assert reference.count(ids.IdKind.D_NUMMER) > 7_000
    assert reference.count(ids.IdKind.ORGNR) > 7_000
    assert reference.count(None) > 40_000
    tenor = [v for v, k in zip(sample, reference, strict=True) if k and len(v) == 11 and v[2] in "89"]
    assert len(tenor) > 3000


def test_fast_equals_reference_on_random_sample(sample: list[str], reference: list) -> None:
    assert ids.classify_fast_many(sample) == reference  # the bulk path batch check uses
    differing = [v for v, want in zip(sample, reference, strict=True) if ids.classify_fast(v) != want]
    assert differing == []


def test_fast_agrees_with_stdnum_itself(sample: list[str]) -> None:
    """python-stdnum as the oracle: the same organisation numbers, the same check digits,
    and where stdnum also judges the date (real and H-number months), it refuses only
    what its stricter century and not-yet-born rules refuse."""
    for value in sample:
        fast = ids.classify_fast(value)
        if len(value) == 9:
            assert (fast is ids.IdKind.ORGNR) == orgnr.is_valid(value), value
            continue
        if len(value) != 11:
            assert fast is None
            continue
        digits_ok = (fodselsnummer.calc_check_digit1(value) == value[9]
                     and fodselsnummer.calc_check_digit2(value) == value[10])
        if fast is not None:
            assert digits_ok, value
        if int(value[2:4]) > 80 or value[0] == "8" or value[0] == "9":
            continue  # Tenor months and FH numbers: stdnum has no date rule for them
        if fodselsnummer.is_valid(value):
            assert fast is not None, value
        elif fast is not None:
            try:
                born = fodselsnummer.get_birth_date(value)
            except InvalidComponent:
                continue  # stdnum cannot place the century; KFR's rule does not ask
            assert born > dt.date.today(), value  # stdnum: "not born yet"


def test_every_prefix_and_check_digit_position() -> None:
    """All 10 000 DDMM prefixes with a fixed tail, and every single-digit change of one
    number: the table-driven sums must match stdnum's for every weight."""
    values = []
    for prefix in range(10_000):
        number = _with_check_digits(f"{prefix:04d}90123")
        values.append(number or f"{prefix:04d}9012345")
    base = "01019012345"
    for position in range(11):
        for digit in "0123456789":
            values.append(base[:position] + digit + base[position + 1 :])
    for org in range(0, 10**9, 7_777_777):
        values.append(f"{org:09d}")
    assert [ids.classify_fast(v) for v in values] == [ids.classify(v) for v in values]


@pytest.mark.parametrize(
    "value",
    ["", " 05909803219", "05909803219 ", "0590980321x", "+0590980321", "0590_980321", "٠٥٩٠٩٨٠٣٢١٩",
     "311 000 004", "3110000-04", None, 5909803219],
)
def test_not_digits_are_refused(value) -> None:
    assert ids.classify_fast(value) is None


def test_synthetic_numbers_are_recognised() -> None:
    rng = random.Random(4)
    assert ids.is_synthetic(ids.synthetic_fodselsnummer(rng))
    assert ids.is_synthetic(ids.synthetic_d_nummer(rng))
    assert ids.is_synthetic(ids.synthetic_orgnr(rng))
    real_style = _person(rng, day_offset=0, month_offset=0)
    assert not ids.is_synthetic(real_style)
    assert not ids.is_synthetic("988077917")  # a number in Brønnøysund's range
