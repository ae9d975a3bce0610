"""Identifiers: the sandbox and the runner must agree on what a valid customer ID is."""

from __future__ import annotations

import random

import pytest
from stdnum.no import fodselsnummer, orgnr

from conformance import ids
from conformance.errors import IdentifierError


def test_tenor_number_is_accepted_although_stdnum_rejects_it() -> None:
    # The domain brief's example: python-stdnum checks the birth date and says no.
    assert not fodselsnummer.is_valid("05909803219")
    assert ids.classify("05909803219") is ids.IdKind.FODSELSNUMMER


@pytest.mark.parametrize("seed", range(50))
def test_synthetic_numbers_classify_as_their_kind(seed: int) -> None:
    rng = random.Random(seed)
    fnr = ids.synthetic_fodselsnummer(rng)
    dnr = ids.synthetic_d_nummer(rng)
    org = ids.synthetic_orgnr(rng)
    assert ids.classify(fnr) is ids.IdKind.FODSELSNUMMER
    assert int(fnr[2:4]) > 80, "synthetic persons carry the Tenor month offset"
    assert ids.classify(dnr) is ids.IdKind.D_NUMMER
    assert int(dnr[0]) >= 4
    assert ids.classify(org) is ids.IdKind.ORGNR and orgnr.is_valid(org)
    assert org.startswith("3"), "orgnr range not handed out by Brønnøysund"


@pytest.mark.parametrize("seed", range(20))
def test_invalid_check_digit_is_rejected(seed: int) -> None:
    rng = random.Random(seed)
    for good in (ids.synthetic_fodselsnummer(rng), ids.synthetic_d_nummer(rng), ids.synthetic_orgnr(rng)):
        bad = ids.invalid_check_digit(good)
        assert bad != good and len(bad) == len(good)
        assert ids.classify(bad) is None


@pytest.mark.parametrize(
    "value",
    ["", "abc", "1234567890", "123456789012", "00000000000", "32139912345", "0590980321x", None],
)
def test_garbage_is_not_an_identifier(value) -> None:
    assert ids.classify(value) is None


def _with_check_digits(base: str) -> str | None:
    k1 = fodselsnummer.calc_check_digit1(base)
    k2 = fodselsnummer.calc_check_digit2(base + k1) if k1 != "10" else "10"
    return None if "10" in (k1, k2) else base + k1 + k2


@pytest.mark.parametrize("month_offset", [0, 40, 80])
def test_month_offsets_real_nav_and_tenor(month_offset: int) -> None:
    numbers = [
        _with_check_digits(f"0101{90:02d}{individual:03d}".replace("0101", f"01{1 + month_offset:02d}"))
        for individual in range(100, 130)
    ]
    numbers = [n for n in numbers if n]
    assert numbers
    assert all(ids.classify(n) is ids.IdKind.FODSELSNUMMER for n in numbers)


def test_impossible_dates_are_rejected() -> None:
    # 31 February and month 13 (no offset explains it) with valid check digits.
    for base in ("310290123", "311390123", "011390124"):
        for individual in range(100, 160):
            number = _with_check_digits(base[:6] + f"{individual:03d}")
            if number:
                assert ids.classify(number) is None, number


def test_require_orgnr_explains_bad_input() -> None:
    assert ids.require_orgnr(" 311000004 ") == "311000004"
    with pytest.raises(IdentifierError) as err:
        ids.require_orgnr("311000005")
    assert "organisasjonsnummer" in err.value.diagnostics()
