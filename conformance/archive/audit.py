"""``verify-all``: every archived pack checked again against its bytes and the index.

Each pack is judged under the trust policy it was added under (the archive remembers it,
trust roots included), with any option given on the command line overriding that part
of it; ``use_stored=False`` judges every pack under the command line's options alone.
Packs added before the archive remembered policies are judged under the command line's.

What counts as wrong (and makes the command exit non-zero): a file whose bytes changed, a
row whose file is gone (not yet recorded by ``repair``), a pack that was valid when added
and no longer verifies, a valid pack whose evidence is also in another pack (a replay,
see ``replay.py``), an index row that disagrees with its pack, and orphans (files without
rows, temp files left by a killed ``add``). A pack that was invalid when added and still
is, or a loss ``repair`` has recorded, is reported but is not a new problem.

Each verification is recorded in the index (so the site's "Siste dom" is the newest one)
unless ``record=False`` or the archive is read-only (a share the auditor cannot write
to): then the report says it was not recorded, and nothing else changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conformance.archive import replay
from conformance.archive.index import MISSING, VALID, PackEntry, Verification
from conformance.archive.policy import PolicyNotRebuilt, from_record, to_record
from conformance.archive.replay import ReplayMatch
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
REPLAYED = "replayed"  # verifies, but its evidence is also in another pack
PROBLEMS = frozenset({MISSING_FILE, CHANGED, NO_LONGER_VALID, INDEX_MISMATCH, REPLAYED})

POLICY_STORED = "stored"  # the policy the pack was added under
POLICY_STORED_OVERRIDDEN = "stored_overridden"  # ... with options from the command line
POLICY_OPTIONS = "options"  # the command line's options alone
POLICY_SOURCE_LABELS_NB = {
    POLICY_STORED: "lagret policy",
    POLICY_STORED_OVERRIDDEN: "lagret policy, overstyrt fra kommandolinjen",
    POLICY_OPTIONS: "kommandolinjens valg",
}

STATUS_LABELS_NB = {
    OK: "OK",
    STILL_INVALID: "Ugyldig (som da den ble lagt til)",
    NOW_VALID: "Verifiserer nå (var ugyldig da den ble lagt til)",
    RECORDED_MISSING: "Mangler (registrert av repair)",
    MISSING_FILE: "MANGLER: filen finnes ikke",
    CHANGED: "ENDRET: innholdet stemmer ikke med indeksen",
    NO_LONGER_VALID: "VERIFISERER IKKE LENGER",
    INDEX_MISMATCH: "INDEKSEN STEMMER IKKE MED PAKKEN",
    REPLAYED: "GYLDIG SIGNATUR – GJENBRUKT BEVIS",
}

# Index fields a pack's own manifest decides; a difference means the index was edited.
_MANIFEST_FIELDS = (
    "orgnr",
    "run_id",
    "run_started_at",
    "sheet_sha256",
    "sheet_version",
    "environment",
)


@dataclass
class PackAudit:
    entry: PackEntry
    status: str
    details: list[str] = field(default_factory=list)  # Norwegian, why it is not OK
    checks: list[dict[str, Any]] = field(default_factory=list)  # today's verification
    verdict: str | None = None  # today's verdict (None: the pack could not be judged)
    policy: dict[str, Any] | None = None  # the policy it was judged under today
    policy_source: str = POLICY_OPTIONS
    links: list[ReplayMatch] = field(default_factory=list)

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS

    @property
    def replayed(self) -> bool:
        return bool(replay.flagged(self.links))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.entry.path,
            "sha256": self.entry.sha256,
            "orgnr": self.entry.orgnr,
            "run_id": self.entry.run_id,
            "verdict_when_added": self.entry.verdict,
            "verdict": self.verdict,
            "status": self.status,
            "problem": self.problem,
            "replayed": self.replayed,
            "links": [m.to_dict() for m in self.links],
            "policy_source": self.policy_source,
            "policy": self.policy,
            "details": self.details,
            "checks": self.checks,
        }


@dataclass
class AuditReport:
    packs: list[PackAudit]
    consistency: Consistency
    recorded: bool = False  # today's verdicts were written to the index
    not_recorded_reason: str = ""

    @property
    def problems(self) -> list[PackAudit]:
        return [p for p in self.packs if p.problem]

    @property
    def ok(self) -> bool:
        return not self.problems and self.consistency.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "recorded": self.recorded,
            "not_recorded_reason": self.not_recorded_reason,
            "packs": [p.to_dict() for p in self.packs],
            "consistency": self.consistency.to_dict(),
        }


def _label(check: dict[str, Any]) -> str:
    return str(check.get("label") or check.get("name"))


@dataclass(frozen=True)
class PolicyChoice:
    """How ``verify-all`` picks each pack's policy."""

    options: Any  # the policy the command line's options make
    overrides: Mapping[str, Any] = field(default_factory=dict)  # fields given explicitly
    use_stored: bool = True


def policy_for(
    entry: PackEntry, choice: PolicyChoice, certificates: Mapping[str, Any]
) -> tuple[Any, str, str | None]:
    """(policy, where it came from, a note when the stored one could not be used)."""
    if not choice.use_stored or entry.policy is None:
        return choice.options, POLICY_OPTIONS, None
    lang = getattr(choice.options, "lang", "nb")
    try:
        rebuilt = from_record(entry.policy, certificates, overrides=choice.overrides, lang=lang)
    except (PolicyNotRebuilt, TypeError, ValueError) as exc:
        return (
            choice.options,
            POLICY_OPTIONS,
            f"Den lagrede policyen kan ikke brukes ({exc}); kommandolinjens valg er brukt.",
        )
    source = POLICY_STORED_OVERRIDDEN if choice.overrides else POLICY_STORED
    return rebuilt, source, None


def audit_entry(
    archive: Archive,
    entry: PackEntry,
    policy: Any,
    *,
    policy_source: str = POLICY_OPTIONS,
    links: list[ReplayMatch] | None = None,
) -> PackAudit:
    audit = _audit_entry(archive, entry, policy)
    audit.policy_source = policy_source
    audit.links = list(links or [])
    if audit.status in (OK, NOW_VALID) and audit.replayed:
        audit.status = REPLAYED
        audit.details += [
            f"Gjenbrukt bevis: {m.describe_nb()}" for m in replay.flagged(audit.links)
        ]
    return audit


def _audit_entry(archive: Archive, entry: PackEntry, policy: Any) -> PackAudit:
    path = archive.file_of(entry)
    if entry.state == MISSING and not path.exists():
        return PackAudit(entry, RECORDED_MISSING, [f"Filen forsvant før {entry.state_changed_at}."])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PackAudit(entry, MISSING_FILE, [f"{entry.path} finnes ikke i arkivet."])
    except OSError as exc:
        return PackAudit(entry, MISSING_FILE, [f"{entry.path} kan ikke leses: {exc.strerror}"])
    # Fingerprints are the add's business; verify-all compares verdicts only.
    today = judge(data, policy, source_name=entry.source_name, fingerprint=False)
    failed = [f"{_label(c)}: {c['reason']}" for c in today.checks if not c["ok"]]
    judged = {"checks": today.checks, "verdict": today.verdict, "policy": today.policy}
    if today.sha256 != entry.sha256 or today.size != entry.size:
        return PackAudit(
            entry,
            CHANGED,
            [f"SHA-256 er {today.sha256}, indeksen har {entry.sha256}.", *failed],
            **judged,
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
            **judged,
        )
    if entry.verdict == VALID:
        status = OK if today.is_valid else NO_LONGER_VALID
    else:
        status = NOW_VALID if today.is_valid else STILL_INVALID
    return PackAudit(entry, status, failed, **judged)


def verify_all(
    archive: Archive,
    choice: PolicyChoice | Any,
    *,
    record: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Re-verify every pack. ``choice`` is a ``PolicyChoice``, or a bare policy (then every
    pack is judged under it alone)."""
    if not isinstance(choice, PolicyChoice):
        choice = PolicyChoice(choice, use_stored=False)
    entries = archive.entries()
    certificates = archive.index.certificates()
    all_links = replay.links(archive.index)
    audits = []
    for done, entry in enumerate(entries, start=1):
        policy, source, note = policy_for(entry, choice, certificates)
        audit = audit_entry(
            archive, entry, policy, policy_source=source, links=all_links.get(entry.id or 0, [])
        )
        if note:
            audit.details.insert(0, note)
        audits.append(audit)
        if progress:
            progress(done, len(entries))
    report = AuditReport(audits, archive.scan())
    if record:
        _record(archive, report, certificates_of=choice)
    else:
        report.not_recorded_reason = "ikke lagret (--no-record)"
    return report


def _record(archive: Archive, report: AuditReport, *, certificates_of: PolicyChoice) -> None:
    """Today's verdicts as the packs' newest verifications, in one transaction."""
    from conformance.archive.index import utc_now

    now = utc_now()
    judged = [a for a in report.packs if a.verdict is not None and a.status != CHANGED]
    try:
        with archive.index.transaction():
            archive.index.add_certificates(to_record(certificates_of.options)[1])
            for audit in judged:
                archive.index.add_verification(
                    audit.entry.id or 0,
                    Verification(
                        now, audit.verdict or "", audit.checks, audit.policy, "verify-all"
                    ),
                )
    except sqlite3.OperationalError as exc:  # a read-only share: report, change nothing
        report.not_recorded_reason = f"ikke lagret: {exc}"
        return
    report.recorded = True
