"""Norwegian identifiers: validate, classify and generate synthetic ones.

Check digits come from python-stdnum. Its ``fodselsnummer.is_valid`` checks the birth date
and so rejects Skatteetaten's synthetic Tenor numbers (month + 80); KFR's test environment
is fed exactly such numbers, so the date check here knows the synthetic month offsets.
"""

from __future__ import annotations

import datetime as dt
import random
from enum import StrEnum

from stdnum.no import fodselsnummer as _fnr
from stdnum.no import orgnr as _orgnr

from conformance.errors import IdentifierError

# Month offsets in use for person numbers: real, NAV synthetic / H-number (+40), Tenor (+80).
_MONTH_OFFSETS = (0, 40, 80)
TENOR_MONTH_OFFSET = 80


class IdKind(StrEnum):
    FODSELSNUMMER = "fodselsnummer"
    D_NUMMER = "d-nummer"
    ORGNR = "orgnr"


def is_valid_orgnr(value: str) -> bool:
    return isinstance(value, str) and len(value) == 9 and value.isdigit() and _orgnr.is_valid(value)


def _check_digits_ok(value: str) -> bool:
    k1 = _fnr.calc_check_digit1(value[:9])
    if k1 == "10" or k1 != value[9]:
        return False
    k2 = _fnr.calc_check_digit2(value[:10])
    return k2 != "10" and k2 == value[10]


def _date_plausible(day: int, month: int) -> bool:
    for offset in _MONTH_OFFSETS:
        m = month - offset
        if 1 <= m <= 12:
            # 2000 is a leap year, so 29 February is allowed for any century here.
            try:
                dt.date(2000, m, day)
            except ValueError:
                return False
            return True
    return False


def classify(value: str) -> IdKind | None:
    """The kind of a customer identifier, or None when it is not a valid one."""
    if not isinstance(value, str) or not value.isdigit():
        return None
    if len(value) == 9:
        return IdKind.ORGNR if _orgnr.is_valid(value) else None
    if len(value) != 11 or not _check_digits_ok(value):
        return None
    day, month = int(value[0:2]), int(value[2:4])
    kind = IdKind.FODSELSNUMMER
    if day > 40:
        day -= 40
        kind = IdKind.D_NUMMER
    return kind if _date_plausible(day, month) else None


def is_valid_customer_id(value: str) -> bool:
    return classify(value) is not None


def require_orgnr(value: str) -> str:
    """Return ``value`` stripped if it is a valid organisasjonsnummer, else raise IdentifierError."""
    cleaned = (value or "").strip().replace(" ", "")
    if not is_valid_orgnr(cleaned):
        raise IdentifierError(
            f"«{value}» er ikke et gyldig organisasjonsnummer (9 siffer med gyldig kontrollsiffer).",
            hint="Bruk bankens organisasjonsnummer fra Brønnøysundregistrene, f.eks. --bank=910000004.",
        )
    return cleaned


def _person_number(rng: random.Random, *, d_number: bool) -> str:
    while True:
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 60))
        day = birth.day + (40 if d_number else 0)
        month = birth.month + TENOR_MONTH_OFFSET
        # Individual numbers 000-499 cover births 1900-1999, which all our dates fall in
        # except those from 2000 on; 500-999 cover 2000-2039.
        individual = rng.randrange(0, 500) if birth.year < 2000 else rng.randrange(500, 1000)
        base = f"{day:02d}{month:02d}{birth.year % 100:02d}{individual:03d}"
        k1 = _fnr.calc_check_digit1(base)
        if k1 == "10":
            continue
        k2 = _fnr.calc_check_digit2(base + k1)
        if k2 == "10":
            continue
        return base + k1 + k2


def synthetic_fodselsnummer(rng: random.Random | None = None) -> str:
    """A Tenor-style synthetic fødselsnummer (month + 80): never a real person's number."""
    return _person_number(rng or random.SystemRandom(), d_number=False)


def synthetic_d_nummer(rng: random.Random | None = None) -> str:
    """A synthetic D-nummer (day + 40) with the Tenor month offset."""
    return _person_number(rng or random.SystemRandom(), d_number=True)


def synthetic_orgnr(rng: random.Random | None = None) -> str:
    """A 9-digit organisation number with a valid check digit, in a range Brønnøysund has
    not handed out (starting with 3), so it never names a real company."""
    rng = rng or random.SystemRandom()
    while True:
        # 30–37: 38 and 39 are kept for bulk files (the over-10 MB row), so a file an
        # environment wrongly accepts never collides with the rows' own customers.
        base = "3" + str(rng.randrange(8)) + "".join(str(rng.randrange(10)) for _ in range(6))
        # stdnum's checksum() is 0 for a valid number; one check digit at most fits.
        for check in "0123456789":
            if _orgnr.checksum(base + check) == 0:
                return base + check


def invalid_check_digit(value: str) -> str:
    """``value`` with its last check digit changed so that it no longer validates."""
    last = int(value[-1])
    for delta in range(1, 10):
        candidate = value[:-1] + str((last + delta) % 10)
        if classify(candidate) is None:
            return candidate
    raise IdentifierError(f"cannot make an invalid variant of {value}")
