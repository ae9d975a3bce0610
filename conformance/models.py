"""Data shared along the pipeline: sheet → cases → outcomes → run record → manifest.

Everything here is plain data that renders to and parses from JSON, so the plugin, the
report writers and the pack builder agree on one shape. ``run.json`` in a results folder
is ``RunRecord.to_json()``; the pack's manifest is built from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

RUN_FORMAT = "kfr-conformance-run"
RUN_FORMAT_VERSION = 1

# Who carried out an automated row (``CaseResult.performed_by``), as the sheet, the report,
# run.json and the manifest say it: the tool's own client, or the bank's core system
# through the recording gateway.
PERFORMED_BY_TOOL = "verktøyet"
PERFORMED_BY_CORE = "kjernesystemet"


class Outcome(StrEnum):
    PASSED = "passed"            # the answer matched the sheet's expectation
    FAILED = "failed"            # the answer differed: the integration (or KFR) is wrong
    ERROR = "error"              # the environment misbehaved (5xx, timeout, connection)
    NOT_AUTOMATED = "not_automated"  # no step binds to the row: never passed, never dropped
    PENDING = "pending"          # a manual row that nobody has confirmed yet
    NOT_RUN = "not_run"          # in the sheet but not run this time (-k, --lf, interrupted)

    @property
    def label_nb(self) -> str:
        return OUTCOME_LABELS_NB[self]


OUTCOME_LABELS_NB: dict[Outcome, str] = {
    Outcome.PASSED: "OK",
    Outcome.FAILED: "Feilet",
    Outcome.ERROR: "Feil i miljø",
    Outcome.NOT_AUTOMATED: "Ikke automatisert",
    Outcome.PENDING: "Manuell – venter på bekreftelse",
    Outcome.NOT_RUN: "Ikke kjørt",
}


@dataclass(frozen=True)
class Expectation:
    """What the sheet's "expected result" column says, parsed from its prose."""

    text: str
    status: int | None = None
    error_code: str | None = None

    def describe(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.error_code:
            parts.append(self.error_code)
        return " / ".join(parts) if parts else self.text


@dataclass(frozen=True)
class CaseSpec:
    """One row of the integration-test sheet."""

    case_id: str
    title: str
    expected: Expectation
    description: str = ""
    preconditions: str = ""
    test_data: str = ""
    manual: bool = False
    sheet_name: str = ""
    row: int = 0                      # 1-based row number in the worksheet
    binding: str | None = None        # name of the step that runs this row
    binding_source: str | None = None  # "id" | "text" | "file" | None
    category: str = ""                # the sheet's category/area column, when it has one
    # "sheet": ``expected`` is what the sheet says; "step": the sheet only claims success
    # ("kunden er registrert") and the status is the bound step's designed answer.
    expectation_source: str = "sheet"
    # Text of the row's columns the reader has no role for ("Header: value" lines): read
    # only to bind the row to a step.
    other_text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseSpec:
        data = dict(data)
        data["expected"] = Expectation(**data["expected"])
        return cls(**data)


@dataclass
class CaseResult:
    """What happened when one row ran."""

    case_id: str
    title: str
    expected: Expectation
    outcome: Outcome
    actual: str = ""                         # short prose, Norwegian: what the environment answered
    actual_status: int | None = None
    actual_error_code: str | None = None
    message: str = ""                        # why it failed / erred, in plain words
    correlation_ids: list[str] = field(default_factory=list)
    evidence_file: str | None = None         # relative to the results folder, e.g. evidence/KFR-03.json
    started_at: str | None = None            # ISO 8601 UTC
    finished_at: str | None = None
    duration_s: float = 0.0
    manual: bool = False
    confirmed_by: str | None = None          # manual rows: who confirmed
    confirmed_at: str | None = None          # manual rows: when (ISO 8601 UTC)
    comment: str = ""
    row: int = 0
    binding: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"description","ok","detail"}
    answered_by: str | None = None           # kfr | gateway | maskinporten | other | none
    identities: list[str] = field(default_factory=list)  # customer IDs the row used
    attempts: int = 1                        # > 1: the environment failed earlier attempts
    performed_by: str | None = None          # PERFORMED_BY_TOOL | PERFORMED_BY_CORE; None: not run by either

    @property
    def attested(self) -> bool:
        """Passed on a person's word, not on recorded evidence."""
        return self.manual and self.outcome is Outcome.PASSED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        data = dict(data)
        data["expected"] = Expectation(**data["expected"])
        data["outcome"] = Outcome(data["outcome"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunRecord:
    """Everything a run leaves, as data. Written as ``run.json`` in the results folder."""

    run_id: str
    bank: dict[str, str]                    # {"orgnr", "name"}
    environment: dict[str, str]             # {"name": "sandbox"|"test", "kfr_base_url", "maskinporten_issuer"}
    sheet: dict[str, str]                   # {"file_name", "version", "sha256"}
    runner: dict[str, str]                  # {"version", "python", "platform"}
    attestation: dict[str, str]             # {"tester", "role"}
    started_at: str
    finished_at: str
    cases: list[CaseResult] = field(default_factory=list)
    # One entry per session of a resumed run: {"session", "started_at", "finished_at", "rows"}.
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_sandbox(self) -> bool:
        return self.environment.get("name") != "test"

    def counts(self) -> dict[str, int]:
        counts = {str(o): 0 for o in Outcome}
        for case in self.cases:
            counts[str(case.outcome)] += 1
        counts["total"] = len(self.cases)
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "version": RUN_FORMAT_VERSION,
            "run_id": self.run_id,
            "bank": self.bank,
            "environment": self.environment,
            "sheet": self.sheet,
            "runner": self.runner,
            "attestation": self.attestation,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": self.counts(),
            "cases": [c.to_dict() for c in self.cases],
            "sessions": self.sessions,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if data.get("format") != RUN_FORMAT:
            raise ValueError("not a kfr-conformance run record")
        return cls(
            run_id=data["run_id"],
            bank=data["bank"],
            environment=data["environment"],
            sheet=data["sheet"],
            runner=data["runner"],
            attestation=data.get("attestation", {}),
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            cases=[CaseResult.from_dict(c) for c in data.get("cases", [])],
            sessions=list(data.get("sessions") or []),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> RunRecord:
        return cls.from_dict(json.loads(raw))
