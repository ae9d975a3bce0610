"""The plan per day and the announcement to DSOP@bits.no.

Bits asks to be told beforehand when a bank will load more than 100 000 relationships a
day (onboarding step D-3). The plan puts whole files on working days (Monday–Friday;
public holidays are not known here) from ``--start-date``, at most ``--per-day`` IDs a
day unless one file alone is larger. The draft is an ``.eml`` like the C-3 e-mail; it
carries no files (they hold personal data) and is not sent by the tool.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from conformance.atomic import atomic_write_bytes
from conformance.errors import UsageError
from conformance.firstload.batchfile import BatchFile
from conformance.firstload.rules import (
    ANNOUNCE_ABOVE_PER_DAY,
    KFR_READ_RATE,
    format_count,
    format_duration,
)

__all__ = [
    "ANNOUNCEMENT_NAME",
    "DayPlan",
    "announcement_email",
    "next_working_day",
    "plan_days",
    "write_announcement",
]

ANNOUNCEMENT_NAME = "d3-kunngjoring.eml"
BITS_ADDRESS = "DSOP@bits.no"
WEEKDAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")


@dataclass(frozen=True)
class DayPlan:
    day: dt.date
    ids: int
    files: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"date": self.day.isoformat(), "ids": self.ids, "files": list(self.files)}


def next_working_day(after: dt.date) -> dt.date:
    day = after + dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def plan_days(files: Sequence[BatchFile], start: dt.date, per_day: int) -> list[DayPlan]:
    """Whole files, in order, onto working days from ``start`` (moved to a Monday when it
    falls on a weekend)."""
    if per_day < 1:
        raise UsageError("--per-day må være minst 1.")
    day = start
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    plan: list[DayPlan] = []
    names: list[str] = []
    total = 0
    for file in files:
        if names and total + file.ids > per_day:
            plan.append(DayPlan(day, total, tuple(names)))
            day = next_working_day(day)
            names, total = [], 0
        names.append(file.name)
        total += file.ids
    if names:
        plan.append(DayPlan(day, total, tuple(names)))
    return plan


def _files_label(names: Sequence[str], all_names: Sequence[str]) -> str:
    first, last = all_names.index(names[0]) + 1, all_names.index(names[-1]) + 1
    return f"fil {first}" if first == last else f"filene {first}–{last}"


def announcement_body(
    *,
    bank_name: str,
    orgnr: str,
    contact: str,
    plan: Sequence[DayPlan],
    by_kind: Mapping[str, int],
    files: Sequence[BatchFile],
    ended_left_out: int,
    rate: float = KFR_READ_RATE,
) -> str:
    total = sum(d.ids for d in plan)
    names = [f.name for f in files]
    busy = [d for d in plan if d.ids > ANNOUNCE_ABOVE_PER_DAY]
    lines = [
        "Hei,",
        "",
        f"{bank_name} (org.nr. {orgnr}) planlegger førstegangslasten av kundeforhold til KFR",
        "(onboarding-steg D-3), og varsler med dette om volumet, slik Bits ber om når mer enn",
        f"{format_count(ANNOUNCE_ABOVE_PER_DAY)} kundeforhold skal lastes på én dag.",
        "",
        "Plan:",
        f"- Totalt {format_count(total)} kundeforhold i {len(files)} batchfiler (hver under 10 MB)",
        "  - " + ", ".join(f"{label}: {format_count(n)}" for label, n in by_kind.items()),
        f"- Avsluttede kundeforhold er ikke med ({format_count(ended_left_out)} utelatt).",
        "- Fordeling per dag:",
    ]
    for day in plan:
        marker = " (over 100 000)" if day.ids > ANNOUNCE_ABOVE_PER_DAY else ""
        lines.append(
            f"  - {WEEKDAYS[day.day.weekday()]} {day.day.isoformat()}: "
            f"{format_count(day.ids)} kundeforhold, {_files_label(day.files, names)}{marker}"
        )
    lines += [
        f"- Anslått innlesingstid hos KFR (ca. {rate:g} per sekund): "
        f"{format_duration(total / rate)} i alt"
        + (f", lengste dag {format_duration(max(d.ids for d in plan) / rate)}." if plan else "."),
        f"- Dager over {format_count(ANNOUNCE_ABOVE_PER_DAY)}: {len(busy)} av {len(plan)}.",
        "- Filene er kontrollert med «kfr-conformance batch check» og sendes én om gangen,",
        "  ikke raskere enn KFR leser dem inn.",
        f"- Kontaktperson: {contact}",
        "",
        "Gi gjerne beskjed om tidspunktet ikke passer.",
        "",
        "Med vennlig hilsen",
        bank_name,
        "",
    ]
    return "\n".join(lines)


def announcement_email(
    *,
    bank_name: str,
    orgnr: str,
    contact: str | None,
    plan: Sequence[DayPlan],
    by_kind: Mapping[str, int],
    files: Sequence[BatchFile],
    ended_left_out: int,
    now: dt.datetime | None = None,
) -> EmailMessage:
    contact = contact or "ikke oppgitt"
    message = EmailMessage(policy=policy.SMTP)
    message["To"] = BITS_ADDRESS
    message["From"] = contact
    first = plan[0].day.isoformat() if plan else ""
    message["Subject"] = f"KFR førstegangslast (D-3) fra {first} – {bank_name} ({orgnr})"
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    _, address = parseaddr(contact)
    domain = address.rpartition("@")[2] if "@" in address else "kfr-conformance.invalid"
    message["Message-ID"] = make_msgid("kfr-d3", domain=domain)
    message.set_content(
        announcement_body(
            bank_name=bank_name, orgnr=orgnr, contact=contact, plan=plan, by_kind=by_kind,
            files=files, ended_left_out=ended_left_out,
        )
    )
    return message


def write_announcement(out_dir: Path, message: EmailMessage) -> Path:
    target = Path(out_dir) / ANNOUNCEMENT_NAME
    atomic_write_bytes(target, message.as_bytes())
    return target
