"""Manual rows confirmed after the run (``kfr-conformance pack DIR --manual FILE``).

Some rows of the sheet are checked by a person (or have no automated step). The file says
what that person saw: ``{"<case id>": {"status": "OK" | "Feilet", "comment": "…", "by":
"…"}}`` (JSON or TOML; a top-level ``cases`` table is accepted too). A confirmation names
who and is stamped with when. Automated results can never be overridden this way.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance.errors import UsageError
from conformance.models import CaseResult, Outcome, RunRecord

_STATUS = {
    "ok": Outcome.PASSED,
    "passed": Outcome.PASSED,
    "feilet": Outcome.FAILED,
    "failed": Outcome.FAILED,
}
_CONFIRMABLE = {Outcome.PENDING, Outcome.NOT_AUTOMATED}
_SHAPE = '{"<case id>": {"status": "OK" | "Feilet", "comment": "...", "by": "..."}}'


def load_manual_file(path: Path) -> dict[str, dict[str, str]]:
    try:
        raw = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(raw) if Path(path).suffix.lower() == ".toml" else json.loads(raw)
    except FileNotFoundError as exc:
        raise UsageError(f"--manual-filen {path} finnes ikke.") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--manual-filen {path} kan ikke leses: {exc}") from exc
    cases = data.get("cases", data) if isinstance(data, dict) else None
    if not isinstance(cases, dict) or not all(isinstance(v, dict) for v in cases.values()):
        raise UsageError(f"--manual-filen {path} må ha formen {_SHAPE}.")
    return {str(k): {kk: str(vv) for kk, vv in v.items()} for k, v in cases.items()}


def confirmation_problem(case_id: str, entry: Mapping[str, Any]) -> str | None:
    """Why a confirmation cannot be used (Norwegian), or None."""
    if _STATUS.get(str(entry.get("status", "")).strip().lower()) is None:
        return f"{case_id}: status må være «OK» eller «Feilet»"
    if not str(entry.get("by", "")).strip():
        return f"{case_id}: «by» (hvem som bekreftet) mangler"
    return None


def confirm_case(case: CaseResult, entry: Mapping[str, Any], stamp: str) -> None:
    """Write a person's confirmation into a result: who, when, what they saw. The same for
    ``--manual`` at run time and ``kfr-conformance pack --manual`` afterwards."""
    from conformance.evidence import redact_text

    status = _STATUS[str(entry.get("status", "")).strip().lower()]
    comment = redact_text(str(entry.get("comment", "")).strip())
    case.manual = True
    case.outcome = status
    case.confirmed_by = redact_text(str(entry.get("by", "")).strip())
    case.confirmed_at = stamp
    case.comment = comment
    case.actual = f"Manuelt bekreftet: {status.label_nb}" + (f" – {comment}" if comment else "")
    case.message = "" if status is Outcome.PASSED else (comment or "Feilet ved manuell kontroll.")


def stamp_now(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_manual(
    record: RunRecord,
    confirmations: Mapping[str, Mapping[str, Any]],
    *,
    now: dt.datetime | None = None,
) -> list[str]:
    """Apply confirmations to ``record`` in place; returns the case ids changed.

    Raises ``UsageError`` (nothing changed) for an unknown case, an automated case, an
    unknown status or a missing ``by``."""
    stamp = stamp_now(now)
    by_id = {case.case_id: case for case in record.cases}
    problems: list[str] = []
    planned = []
    for case_id, entry in confirmations.items():
        case = by_id.get(case_id)
        if case is None:
            problems.append(f"{case_id}: finnes ikke i kjøringen")
            continue
        if not case.manual and case.outcome not in _CONFIRMABLE:
            problems.append(
                f"{case_id}: er automatisert ({case.outcome.label_nb}); bare manuelle rader kan bekreftes"
            )
            continue
        problem = confirmation_problem(case_id, entry)
        if problem:
            problems.append(problem)
            continue
        planned.append((case, entry))
    if problems:
        raise UsageError("Manuelle resultater kan ikke brukes:\n  - " + "\n  - ".join(problems))
    for case, entry in planned:
        confirm_case(case, entry, stamp)
    return [case.case_id for case, _ in planned]
