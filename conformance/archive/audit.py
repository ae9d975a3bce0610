"""``verify-all``: every archived pack checked again against its bytes and the index.

Read-only: the archive may sit on a share the auditor cannot write to. What counts as
wrong (and makes the command exit non-zero): a file whose bytes changed, a row whose file
is gone (not yet recorded by ``repair``), a pack that was valid when added and no longer
verifies under today's trust options, an index row that disagrees with its pack, and
orphans (files without rows, temp files left by a killed ``add``). A pack that was
invalid when added and still is, or a loss ``repair`` has recorded, is reported but is not
a new problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.archive.index import MISSING, VALID, PackEntry
from conformance.archive.store import Archive, Consistency
from conformance.archive.verdict import judge

OK = "ok"
STILL_INVALID = "still_invalid"  # invalid when added, invalid now: known, not new
NOW_VALID = "now_valid"  # invalid when added, valid under today's options
RECORDED_MISSING = "recorded_missing"  # repair recorded the loss
MISSING_FILE = "missing_file"
CHANGED = "changed"
NO_LONGER_VALID = "no_longer_valid"
INDEX_MISMATCH = "index_mismatch"
PROBLEMS = frozenset({MISSING_FILE, CHANGED, NO_LONGER_VALID, INDEX_MISMATCH})

STATUS_LABELS_NB = {
    OK: "OK",
    STILL_INVALID: "Ugyldig (som da den ble lagt til)",
    NOW_VALID: "Verifiserer nå (var ugyldig da den ble lagt til)",
    RECORDED_MISSING: "Mangler (registrert av repair)",
    MISSING_FILE: "MANGLER: filen finnes ikke",
    CHANGED: "ENDRET: innholdet stemmer ikke med indeksen",
    NO_LONGER_VALID: "VERIFISERER IKKE LENGER",
    INDEX_MISMATCH: "INDEKSEN STEMMER IKKE MED PAKKEN",
}

# Index fields a pack's own manifest decides; a difference means the index was edited.
_MANIFEST_FIELDS = ("orgnr", "run_started_at", "sheet_sha256", "sheet_version", "environment")


@dataclass
class PackAudit:
    entry: PackEntry
    status: str
    details: list[str] = field(default_factory=list)  # Norwegian, why it is not OK
    checks: list[dict[str, Any]] = field(default_factory=list)  # today's verification

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.entry.path,
            "sha256": self.entry.sha256,
            "orgnr": self.entry.orgnr,
            "verdict_when_added": self.entry.verdict,
            "status": self.status,
            "problem": self.problem,
            "details": self.details,
            "checks": self.checks,
        }


@dataclass
class AuditReport:
    packs: list[PackAudit]
    consistency: Consistency

    @property
    def problems(self) -> list[PackAudit]:
        return [p for p in self.packs if p.problem]

    @property
    def ok(self) -> bool:
        return not self.problems and self.consistency.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "packs": [p.to_dict() for p in self.packs],
            "consistency": self.consistency.to_dict(),
        }


def _label(check: dict[str, Any]) -> str:
    return str(check.get("label") or check.get("name"))


def audit_entry(archive: Archive, entry: PackEntry, policy: Any) -> PackAudit:
    path = archive.file_of(entry)
    if entry.state == MISSING and not path.exists():
        return PackAudit(entry, RECORDED_MISSING, [f"Filen forsvant før {entry.state_changed_at}."])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PackAudit(entry, MISSING_FILE, [f"{entry.path} finnes ikke i arkivet."])
    except OSError as exc:
        return PackAudit(entry, MISSING_FILE, [f"{entry.path} kan ikke leses: {exc.strerror}"])
    today = judge(data, policy, source_name=entry.source_name)
    failed = [f"{_label(c)}: {c['reason']}" for c in today.checks if not c["ok"]]
    if today.sha256 != entry.sha256 or today.size != entry.size:
        return PackAudit(
            entry,
            CHANGED,
            [f"SHA-256 er {today.sha256}, indeksen har {entry.sha256}.", *failed],
            today.checks,
        )
    mismatched = [name for name in _MANIFEST_FIELDS if getattr(today, name) != getattr(entry, name)]
    if mismatched:
        return PackAudit(
            entry,
            INDEX_MISMATCH,
            [
                f"{name}: indeksen har {getattr(entry, name)!r}, pakken {getattr(today, name)!r}"
                for name in mismatched
            ],
            today.checks,
        )
    if entry.verdict == VALID:
        status = OK if today.is_valid else NO_LONGER_VALID
    else:
        status = NOW_VALID if today.is_valid else STILL_INVALID
    return PackAudit(entry, status, failed, today.checks)


def verify_all(
    archive: Archive,
    policy: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    entries = archive.entries()
    audits = []
    for done, entry in enumerate(entries, start=1):
        audits.append(audit_entry(archive, entry, policy))
        if progress:
            progress(done, len(entries))
    return AuditReport(audits, archive.scan())
