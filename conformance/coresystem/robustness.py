"""Robustness rows: what only a party in the middle can test, reported apart from Bits' sheet.

After the sheet's rows (``--robustness``, or ``robustness = true`` in the profile), each
scenario asks the core system to register a fresh customer while the recording gateway
answers that request itself — 503, 429 with ``Retry-After``, 401 for an expired token, or
200 «finnes allerede» — and judges the reaction with the gateway's rules (retried with
backoff and a fresh CorrelationID, Retry-After respected, token renewed, no loop, «finnes
allerede» taken as success). The tool then looks the customer up: nothing may be lost.

These rows are never part of the C-2 result: they are not in ``run.json``'s cases or the
manifest's, so neither ``verify`` nor the C-3 gate reads them. They live in
``robustness.json`` (all rows) and ``robustness/<id>.json`` (each row's exchanges), inside
the signed pack as plain files, and in the report's own section.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.coresystem.actions import CoreAction
from conformance.models import Outcome

__all__ = [
    "ROBUSTNESS_DIR",
    "ROBUSTNESS_FILE",
    "SCENARIOS",
    "RobustnessScenario",
    "load_robustness",
    "run_scenario",
    "write_robustness",
]

ROBUSTNESS_FILE = "robustness.json"
ROBUSTNESS_DIR = "robustness"
NOTE_NB = ("Robusthetsrader: opptaksgatewayen svarte kjernesystemet selv og så hvordan det reagerte. "
           "De rapporteres for seg og inngår ikke i C-2-resultatet, i run.json eller i pakkens manifest.")


@dataclass(frozen=True)
class RobustnessScenario:
    id: str
    title: str
    kind: str                                   # conformance.gateway.INJECTION_KINDS
    retry_after_s: int | None = None
    precreate: bool = False                     # «finnes allerede» must be the truth


SCENARIOS: tuple[RobustnessScenario, ...] = (
    RobustnessScenario("ROB-503", "KFR svarer 503 på en registrering: kjernesystemet prøver igjen med økende ventetid",
                       "unavailable"),
    RobustnessScenario("ROB-429", "API-gatewayen svarer 429 med Retry-After: kjernesystemet venter så lenge og prøver igjen",
                       "rate_limited", retry_after_s=1),
    RobustnessScenario("ROB-401", "KFR svarer 401 for utløpt token: kjernesystemet henter nytt token og prøver igjen",
                       "expired_token"),
    RobustnessScenario("ROB-200", "KFR svarer 200 «finnes allerede»: kjernesystemet godtar det og sender ikke på nytt",
                       "already_exists", precreate=True),
)


@dataclass
class RobustnessResult:
    id: str
    title: str
    kind: str
    outcome: Outcome
    message: str = ""
    customer_id: str = ""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    evidence_file: str = ""
    correlation_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind, "outcome": str(self.outcome),
                "label": self.outcome.label_nb, "message": self.message, "customer_id": self.customer_id,
                "verdicts": self.verdicts, "evidence_file": self.evidence_file,
                "correlation_ids": self.correlation_ids}


def run_scenario(scenario: RobustnessScenario, *, driver: Any, kfr: Any, recorder: Any,
                 customer_id: str, today: Callable[[], dt.date], results_dir: Path) -> RobustnessResult:
    """Run one scenario in the recorder's current case (the scenario's id) and write its
    evidence file. Never raises for what the core system, the gateway or KFR did."""
    from conformance import contract
    from conformance.gateway import Injection
    from conformance.results import correlation_ids

    result = RobustnessResult(scenario.id, scenario.title, scenario.kind, Outcome.FAILED, customer_id=customer_id)
    if scenario.precreate and kfr.add(customer_id, role="setup").status not in (200, 201):
        result.outcome = Outcome.ERROR
        result.message = "Forutsetningen (kundeforholdet finnes i KFR) kunne ikke lages i testmiljøet."
        return _written(result, recorder, results_dir, {})
    settings = driver.settings
    core = driver.for_case(scenario.id, today)
    try:
        injection_id = driver.gateway.inject(Injection(
            scenario.kind, operation="add", customer_id=customer_id, retry_after_s=scenario.retry_after_s,
            observe_s=settings.observe_s))
        action = CoreAction.open(customer_id, today(), today())
        since = driver.gateway.last_seq
        asked = driver.adapter.ask(action, {"kfr_base_url": core.kfr_base_url, "bank": driver.bank,
                                            "case_id": scenario.id})
        # The first try (a countdown in guided mode), then the reaction to the injected answer.
        first = driver.adapter.await_request(action, lambda seconds: driver.gateway.wait_for(
            lambda ex: ex.get("case_id") == scenario.id and action.matches(ex), seconds, since), settings.timeout_s)
        wait = settings.observe_s + (scenario.retry_after_s or 0) + settings.timeout_s
        report = (driver.gateway.wait_settled(injection_id, timeout=wait) if first is not None
                  else driver.gateway.injection_report(injection_id)[0])
        core.take_evidence(since, action, "main")
    finally:
        driver.end_case()
    verdicts = list(report.get("verdicts") or [])
    if not report.get("hits"):
        verdicts.append(contract.expected_request_seen(action.what_nb(), 0, settings.timeout_s).to_dict())
    state = _state_after(kfr, customer_id, driver.bank)
    if state is None:
        result.outcome = Outcome.ERROR
        result.message = "Testmiljøet svarte ikke på oppslaget som skulle vise at ingenting gikk tapt."
    else:
        verdicts.append(state.to_dict())
        failed = [v for v in verdicts if not v.get("ok")]
        result.outcome = Outcome.FAILED if failed else Outcome.PASSED
        result.message = "; ".join(f"[{v['rule']}] {v.get('reason', '')}" for v in failed)
        if failed and not asked.ok:
            result.message += f" ({asked.detail})"
    result.verdicts = verdicts
    result.correlation_ids = correlation_ids(recorder.exchanges(scenario.id))
    return _written(result, recorder, results_dir, report)


def _state_after(kfr: Any, customer_id: str, bank: str) -> Any:
    """Does KFR have the relationship in the end? None when the environment did not answer."""
    from conformance import contract

    try:
        response = kfr.lookup(customer_id, role="check")
    except Exception:  # the environment failed; the row is then an environment error
        return None
    if response.status != 200:
        return None
    return contract.relationship_state_is(True, bank, customer_id, response.json)


def _written(result: RobustnessResult, recorder: Any, results_dir: Path, report: Mapping[str, Any]) -> RobustnessResult:
    from conformance.atomic import atomic_write_bytes
    from conformance.runner import safe_file_name

    rel = f"{ROBUSTNESS_DIR}/{safe_file_name(result.id)}.json"
    data = {"id": result.id, "title": result.title, "injection": dict(report),
            "exchanges": recorder.exchanges(result.id)}
    try:
        atomic_write_bytes(results_dir / rel, (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode())
        result.evidence_file = rel
    except OSError as exc:
        result.message = (result.message + f" Bevis kunne ikke skrives: {exc}").strip()
    return result


def write_robustness(results_dir: Path, bank: str, run_id: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``robustness.json``: every robustness row of the run, in scenario order."""
    from conformance.atomic import atomic_write_bytes

    order = {s.id: i for i, s in enumerate(SCENARIOS)}
    data = {"note": NOTE_NB, "bank": bank, "run_id": run_id,
            "rows": sorted((dict(r) for r in rows), key=lambda r: order.get(str(r.get("id")), len(order)))}
    path = results_dir / ROBUSTNESS_FILE
    atomic_write_bytes(path, (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode())
    return path


def load_robustness(results_dir: Path) -> dict[str, Any] | None:
    """``robustness.json`` of a results folder, or None when the run had no such rows."""
    try:
        data = json.loads((results_dir / ROBUSTNESS_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else None
