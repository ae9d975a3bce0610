"""The one place the sandbox's KFR decides whether a CustomerID is acceptable.

Every route (single writes, lookups, the batch file) calls ``acceptable_customer_id``, so
a faster validator in ``conformance.ids`` is picked up everywhere at once.

By default the synthetic month offsets are accepted (``conformance.ids.classify_fast``), as
Bits' test environment must accept Tenor's test persons. With the
``validate_birth_dates`` switch the sandbox plays a stricter environment: a fødselsnummer
or D-nummer must also pass python-stdnum's own ``fodselsnummer.is_valid``, which reads a
real birth date from it (so Tenor's month + 80 fails, NAV's month + 40 passes, a date in
the future fails). Organisation numbers are not affected.
"""

from __future__ import annotations

from stdnum.no import fodselsnummer

from conformance.ids import IdKind, classify_fast


def acceptable_customer_id(value: str, *, strict_birth_dates: bool = False) -> bool:
    # The table-driven validator gives python-stdnum's answers (proven equal in
    # tests/test_firstload_fast_ids.py) at a sixth of the cost: a 10 MB file is ~1 M IDs.
    kind = classify_fast(value)
    if kind is None:
        return False
    if strict_birth_dates and kind is not IdKind.ORGNR:
        return bool(fodselsnummer.is_valid(value))
    return True
