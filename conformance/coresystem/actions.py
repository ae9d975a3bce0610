"""What the runner asks the core system to do, and which request through the gateway shows
that it did.

``open`` registers a relationship from a date (today, or an earlier start date, which only
KFR's batch can carry), ``close`` ends one, ``batch`` uploads several at once. Each action
knows the request KFR should then receive (:meth:`CoreAction.expected_operation`,
:meth:`CoreAction.matches`), what a person is told to do (:meth:`CoreAction.describe_nb`)
and the values its command template, hook or instruction gets (:meth:`CoreAction.values`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CoreAction"]


@dataclass(frozen=True)
class CoreAction:
    action: str                                               # open | close | batch
    customer_id: str | None = None
    date: dt.date | None = None                               # open: the start date
    entries: tuple[tuple[str, dt.date | None], ...] = ()      # batch: (customer, start date or None)
    today: dt.date | None = None                              # the Norwegian calendar day now

    @classmethod
    def open(cls, customer_id: str, start: dt.date, today: dt.date) -> CoreAction:
        return cls("open", customer_id, start, today=today)

    @classmethod
    def close(cls, customer_id: str, today: dt.date) -> CoreAction:
        return cls("close", customer_id, today=today)

    @classmethod
    def batch(cls, entries: list[tuple[str, dt.date | None]], today: dt.date) -> CoreAction:
        return cls("batch", entries=tuple(entries), today=today)

    # ---- the request that shows it was done

    @property
    def expected_operation(self) -> str:
        if self.action == "close":
            return "end"
        if self.action == "open" and (self.date is None or self.date == self.today):
            return "add"
        return "batch"   # a start date other than today travels only in a batch file

    @property
    def customers(self) -> tuple[str, ...]:
        if self.action == "batch":
            return tuple(c for c, _ in self.entries)
        return (self.customer_id,) if self.customer_id else ()

    def matches(self, exchange: Mapping[str, Any]) -> bool:
        """Whether a recorded gateway exchange is the request this action asks for."""
        from conformance.judge import Exchange, batch_entries

        ex = Exchange(dict(exchange))
        if ex.operation != self.expected_operation:
            return False
        if ex.operation == "batch":
            sent = {c for c, _ in batch_entries(ex) or []}
            return bool(sent) and set(self.customers) <= sent
        return ex.customer_id == self.customer_id

    # ---- what the core system is told

    def batch_text(self) -> str:
        """The batch in KFR's file format: ``ID#YYYY-MM-DD,ID,…`` (an open with a start date
        is a batch of one)."""
        entries = self.entries if self.action == "batch" else ((self.customer_id or "", self.date),)
        return ",".join(f"{c}#{d.isoformat()}" if d else c for c, d in entries)

    def values(self) -> dict[str, Any]:
        """The values templates and hooks get (``entries`` is a list: one argument each)."""
        date = self.date or self.today
        entries = self.entries if self.action == "batch" else ()
        return {
            "action": self.action,
            "customer_id": self.customer_id or "",
            "date": date.isoformat() if date else "",
            "entries": [f"{c}#{d.isoformat()}" if d else c for c, d in entries],
            "customers": self.batch_text() if self.action == "batch" else "",
        }

    def describe_nb(self) -> str:
        """The instruction a person at the core system gets."""
        if self.action == "open":
            start = self.date or self.today
            return (f"Opprett kundeforhold for {self.customer_id}{_kind(self.customer_id)} "
                    f"fra {start.isoformat() if start else 'i dag'} nå")
        if self.action == "close":
            return f"Avslutt kundeforholdet for {self.customer_id}{_kind(self.customer_id)} nå"
        lines = ", ".join(f"{c}#{d.isoformat()}" if d else f"{c} (i dag)" for c, d in self.entries)
        return f"Last opp en batch med {len(self.entries)} kundeforhold nå: {lines}"

    def what_nb(self) -> str:
        """The request, as the gateway's messages name it."""
        names = {"add": "registrering", "end": "avslutning", "batch": "batchopplasting"}
        what = names[self.expected_operation]
        if self.action == "batch":
            return f"{what} med {len(self.entries)} kunder"
        return f"{what} av {self.customer_id}"


def _kind(customer_id: str | None) -> str:
    """« (D-nummer)» etc.: what kind of number a person is asked to enter."""
    from conformance.ids import classify

    names = {"fodselsnummer": "fødselsnummer", "d-nummer": "D-nummer", "orgnr": "organisasjonsnummer"}
    kind = classify(customer_id or "")
    return f" ({names[kind]})" if kind in names else ""
