"""The runner's side of a core-system row: ask, wait for the gateway, take the evidence.

A step's core act calls ``ctx.core.open(...)``, ``ctx.core.close(...)`` or
``ctx.core.batch(...)`` (:class:`CaseCoreSystem`). Each asks the core system through the
run's adapter, waits until the recording gateway has seen the request the action should
cause, and then copies every exchange the gateway recorded for the row since it asked into
the row's evidence: the request the action asked for under the role the step gives it
(``main``, ``setup`` …), anything else the core system sent as ``core-other``. The copies
are renumbered into the row's own sequence (``gateway_seq`` keeps the gateway's), so the
evidence file, the journal and ``verify`` see one ordered story: the tool's setup, the core
system's requests, the tool's state checks.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from conformance.coresystem.actions import CoreAction
from conformance.coresystem.adapters import CoreSystemAdapter
from conformance.coresystem.settings import CoreSystemSettings

__all__ = ["CaseCoreSystem", "CoreSystemDriver"]

FAILED_ASK_GRACE_S = 1.0   # the command failed: a request it sent before failing is already in
QUIET_S = 0.3              # after the request: how long nothing more must arrive (retries, extras)
QUIET_MAX_S = 5.0


class CoreSystemDriver:
    """One per process: the run's gateway, adapter and evidence recorder."""

    def __init__(self, settings: CoreSystemSettings, gateway: Any, adapter: CoreSystemAdapter,
                 recorder: Any, bank: str) -> None:
        self.settings = settings
        self.gateway = gateway
        self.adapter = adapter
        self.recorder = recorder
        self.bank = bank

    def for_case(self, case_id: str, today: Callable[[], dt.date],
                 progress: Callable[[str], None] = lambda message: None) -> CaseCoreSystem:
        self.gateway.set_case(case_id)
        return CaseCoreSystem(self, case_id, today, progress)

    def end_case(self) -> None:
        self.gateway.set_case(None)


class CaseCoreSystem:
    """``ctx.core`` of one row. Each call returns the final exchange of the request it asked
    for, as the judge will see it (``conformance.judge.Exchange``), or None when the core
    system never sent it. ``notes`` collects what the adapter said when something went wrong."""

    def __init__(self, driver: CoreSystemDriver, case_id: str, today: Callable[[], dt.date],
                 progress: Callable[[str], None]) -> None:
        self.driver = driver
        self.case_id = case_id
        self.today = today
        self.progress = progress
        self.notes: list[str] = []

    @property
    def kfr_base_url(self) -> str:
        return str(self.driver.gateway.kfr_base_url)

    def open(self, customer_id: str, start: dt.date | None = None, *, role: str = "main") -> Any:
        today = self.today()
        return self.perform(CoreAction.open(customer_id, start or today, today), role)

    def close(self, customer_id: str, *, role: str = "main") -> Any:
        return self.perform(CoreAction.close(customer_id, self.today()), role)

    def batch(self, entries: list[tuple[str, dt.date | None]], *, role: str = "main") -> Any:
        return self.perform(CoreAction.batch(entries, self.today()), role)

    def perform(self, action: CoreAction, role: str) -> Any:
        from conformance.judge import Exchange

        driver = self.driver
        gateway = driver.gateway
        since = gateway.last_seq
        context = {"kfr_base_url": self.kfr_base_url, "bank": driver.bank, "case_id": self.case_id}
        self.progress(f"ber kjernesystemet ({driver.adapter.kind}): {action.describe_nb()}")
        asked = driver.adapter.ask(action, context)
        if not asked.ok:
            self.notes.append(f"Kjernesystemet ({driver.adapter.kind}): {asked.detail}.")
        timeout = driver.settings.timeout_s if asked.ok else min(driver.settings.timeout_s, FAILED_ASK_GRACE_S)

        def poll(seconds: float) -> Mapping[str, Any] | None:
            return gateway.wait_for(lambda ex: ex.get("case_id") == self.case_id and action.matches(ex),
                                    seconds, since)

        found = driver.adapter.await_request(action, poll, timeout)
        if found is None:
            self.notes.append(f"Kjernesystemet sendte ingen {action.what_nb()} gjennom gatewayen innen {timeout:g} s.")
        else:
            self._quiet(since)
        imported = self.take_evidence(since, action, role)
        mine = [e for e in imported if e["role"] == role]
        return Exchange(mine[-1]) if mine else None

    def _quiet(self, since: int) -> None:
        """Wait until the core system has stopped sending for this row (its retries, or a
        request it repeats, belong to the row's evidence)."""
        gateway = self.driver.gateway
        deadline = time.monotonic() + QUIET_MAX_S
        seen = gateway.last_seq
        while time.monotonic() < deadline:
            time.sleep(QUIET_S)
            now = gateway.last_seq
            if now == seen:
                return
            seen = now

    def take_evidence(self, since: int, action: CoreAction, role: str) -> list[dict[str, Any]]:
        """Copy the gateway's exchanges of this row after ``since`` into the row's evidence."""
        recorder = self.driver.recorder
        imported = []
        for raw in self.driver.gateway.exchanges(since):
            if raw.get("case_id") != self.case_id:
                continue
            exchange = copy.deepcopy(raw)
            gateway_seq = exchange.pop("seq", None)
            for key in ("case_id", "session", "attempt"):
                exchange.pop(key, None)
            exchange["role"] = role if action.matches(raw) else _core_other()
            exchange["gateway_seq"] = gateway_seq
            imported.append(recorder.record(exchange))
        return imported


def _core_other() -> str:
    from conformance.judge import CORE_OTHER_ROLE

    return CORE_OTHER_ROLE
