"""What a preflight check returns: one line with the onboarding step it belongs to, a status,
a Norwegian message and, when it is not green, what to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conformance.errors import UsageError

WRITE_SCOPE = "bits:kundeforhold.write"

# Bits' onboarding steps (phases A-C) a line can belong to.
STEP_CERTIFICATE = "A-3"
STEP_NETWORK = "A-7"
STEP_MASKINPORTEN = "B-1/A-4"
STEP_KFR = "C-1"
STEP_SHEET = "C-2"


class Status(StrEnum):
    OK = "ok"
    WARN = "advarsel"
    FAIL = "feil"


@dataclass(frozen=True)
class CheckLine:
    """One checked thing: ``check`` is a stable id (``certificate.password``), ``message``
    what was found, ``advice`` what to do (for warnings and failures)."""

    step: str
    check: str
    status: Status
    message: str
    advice: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def text(self) -> str:
        """The line as one sentence or two, advice included (for a usage error or a log)."""
        if self.advice and self.status is not Status.OK:
            return f"{self.message} {self.advice}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "check": self.check, "status": str(self.status),
            "message": self.message, "advice": self.advice, "details": dict(self.details),
        }


def make_line(step: str, check: str, status: Status, message: str, advice: str | None = None,
          /, **details: Any) -> CheckLine:
    return CheckLine(step, check, status, message, advice, details)


@dataclass
class PreflightReport:
    bank: str
    environment: str
    kfr_base_url: str
    maskinporten_issuer: str
    lines: list[CheckLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no line is red (warnings are fine)."""
        return bool(self.lines) and not any(line.failed for line in self.lines)

    def counts(self) -> dict[str, int]:
        return {str(s): sum(1 for line in self.lines if line.status is s) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank, "environment": self.environment,
            "kfr_base_url": self.kfr_base_url, "maskinporten_issuer": self.maskinporten_issuer,
            "ok": self.ok, "counts": self.counts(),
            "checks": [line.to_dict() for line in self.lines],
        }


class PreflightFailed(UsageError):
    """The runner's start found a problem every row would run into."""
