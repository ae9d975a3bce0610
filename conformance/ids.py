"""Norwegian identifiers: validate, classify and generate synthetic ones.

Check digits come from python-stdnum. Its ``fodselsnummer.is_valid`` checks the birth date
and so rejects Skatteetaten's synthetic Tenor numbers (month + 80); KFR's test environment
is fed exactly such numbers, so the date check here knows the synthetic month offsets.

:func:`classify` is the reference (python-stdnum's check digits, one call per digit).
:func:`classify_fast_many` (and :func:`classify_fast` for one value) gives the same answer
for every ASCII string many times faster, from tables built once out of the same weights
and the same date rule; the D-3 file tools use it for millions of IDs, and
``tests/test_firstload_fast_ids.py`` proves it equal to :func:`classify` and to
python-stdnum on a large random sample.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
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


def is_synthetic(value: str) -> bool:
    """True for a valid identifier that no real customer can have: a person number with
    Skatteetaten's Tenor month offset (+80), or an organisation number outside the ranges
    Brønnøysund hands out (every real one starts with 8 or 9). NAV's synthetic numbers
    (+40) share their offset with real H-numbers and are not counted here."""
    if len(value) == 11:
        return value[2] in "89"
    if len(value) == 9:
        return value[0] not in "89"
    return False


# ---------------------------------------------------------------- fast classification
#
# Both check digits of a person number are right exactly when the weighted digit sums,
# with weight 1 on the check digit itself, are divisible by 11 (stdnum computes
# (11 - sum) % 11 and compares; a "10" can never equal a single digit). Each sum is
# split into per-chunk tables: digits 0-3 (the DDMM prefix, which also decides the kind),
# 4-7 and 8-10; the two sums are packed into one int (12 bits each, both stay below 512).
# An organisation number is split into digits 0-3 and 4-8 the same way.

_FNR_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1, 0)  # the last digit is not in the first sum
_FNR_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)
_ORG_W = (3, 2, 7, 6, 5, 4, 3, 2, 1)


def _weighted_sums(weights: tuple[int, ...]) -> list[int]:
    """``table[v]`` = the weighted digit sum of ``v`` written with ``len(weights)`` digits,
    built digit by digit (one addition per entry)."""
    table = [0]
    for weight in weights:
        table = [total + weight * digit for total in table for digit in range(10)]
    return table


def _packed_sums(start: int, width: int) -> list[int]:
    first = _weighted_sums(_FNR_W1[start : start + width])
    second = _weighted_sums(_FNR_W2[start : start + width])
    return [s1 | (s2 << 12) for s1, s2 in zip(first, second, strict=True)]


def _prefix_kinds() -> list[IdKind | None]:
    """The kind a DDMM prefix allows (same rule as :func:`classify`), or None."""
    kinds: list[IdKind | None] = []
    for prefix in range(10_000):
        day, month = divmod(prefix, 100)
        kind = IdKind.FODSELSNUMMER
        if day > 40:
            day -= 40
            kind = IdKind.D_NUMMER
        kinds.append(kind if _date_plausible(day, month) else None)
    return kinds


_KINDS: list[IdKind | None] = []
_HEAD: list[int] = []
_MID: list[int] = []
_TAIL: list[int] = []
_ORG_HEAD: list[int] = []
_ORG_TAIL: list[int] = []


def _build_fast_tables() -> None:
    # Built on first use (a few tens of ms), not at import: most commands never need them.
    _HEAD[:] = _packed_sums(0, 4)
    _MID[:] = _packed_sums(4, 4)
    _TAIL[:] = _packed_sums(8, 3)
    _ORG_HEAD[:] = _weighted_sums(_ORG_W[:4])
    _ORG_TAIL[:] = _weighted_sums(_ORG_W[4:])
    _KINDS[:] = _prefix_kinds()  # last: its presence says the tables are ready


def classify_fast_many(values: Iterable[str]) -> list[IdKind | None]:
    """:func:`classify` for bulk use: the same answer for every ASCII string, for many
    values in one loop (no function call per value).

    Unlike :func:`classify` (whose ``str.isdigit`` lets other scripts' digits through to
    python-stdnum), anything outside ASCII is not an identifier here — KFR's text formats
    carry ASCII digits only."""
    if not _KINDS:
        _build_fast_tables()
    kinds, head_sums, mid_sums, tail_sums = _KINDS, _HEAD, _MID, _TAIL
    org_head, org_tail, orgnr = _ORG_HEAD, _ORG_TAIL, IdKind.ORGNR
    found: list[IdKind | None] = []
    append = found.append
    for value in values:
        if isinstance(value, str) and value.isdigit() and value.isascii():
            size = len(value)
            if size == 11:
                number = int(value)
                head = number // 10_000_000
                kind = kinds[head]
                if kind is not None:
                    rest = number - head * 10_000_000
                    mid = rest // 1000
                    sums = head_sums[head] + mid_sums[mid] + tail_sums[rest - mid * 1000]
                    if not ((sums & 0xFFF) % 11 or (sums >> 12) % 11):
                        append(kind)
                        continue
            elif size == 9:
                number = int(value)
                head = number // 100_000
                if not (org_head[head] + org_tail[number - head * 100_000]) % 11:
                    append(orgnr)
                    continue
        append(None)
    return found


def classify_fast(value: str) -> IdKind | None:
    """:func:`classify_fast_many` for one value."""
    return classify_fast_many((value,))[0]


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
