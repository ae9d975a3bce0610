"""Evidence found in two packs: a replay, unless both are the same run packed again.

Two packs are linked when they share a CorrelationID, an evidence file (by SHA-256), or
at least ``MIN_SHARED_BODIES`` distinctive KFR response bodies (see ``evidence.py``; one
or two identical error answers can happen when two banks hit the same error in the same
second, three in lockstep do not). Both packs of a pair are flagged, each naming the
other: the archive cannot tell which one is the original, only which came in first.

The same bank's same run (same orgnr and run id) packed twice — say, re-signed after its
manual rows were confirmed — shares all its evidence honestly; that link is shown, not
flagged.

A pack's *standing* puts its newest verdict and its links together:

    valid      every check passed and no evidence is shared
    replayed   every check passed, but its evidence is also in another pack
    invalid    a check failed (``replayed`` then shows as a flag beside it)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.archive.index import Index, PackEntry, SharedEvidence

MIN_SHARED_BODIES = 3

VALID = "valid"
REPLAYED = "replayed"
INVALID = "invalid"
STANDINGS = (VALID, REPLAYED, INVALID)
STANDING_LABELS_NB = {
    VALID: "Gyldig",
    REPLAYED: "Gyldig signatur – gjenbrukt bevis",
    INVALID: "Ugyldig",
}


@dataclass(frozen=True)
class ReplayMatch:
    """What one pack shares with another."""

    other_id: int
    other_path: str
    other_sha256: str
    other_orgnr: str | None
    other_bank_name: str | None
    other_run_id: str | None
    other_added_at: str
    correlation_ids: int
    evidence_files: int
    response_bodies: int
    same_run: bool
    added_first: bool  # this pack came into the archive before the other

    @property
    def flagged(self) -> bool:
        if self.same_run:
            return False
        return bool(
            self.correlation_ids or self.evidence_files or self.response_bodies >= MIN_SHARED_BODIES
        )

    def shared_nb(self) -> str:
        parts = []
        if self.correlation_ids:
            parts.append(f"{self.correlation_ids} CorrelationID-er")
        if self.evidence_files:
            parts.append(f"{self.evidence_files} bevisfiler")
        if self.response_bodies:
            parts.append(f"{self.response_bodies} KFR-svar")
        return ", ".join(parts) or "ingenting"

    def describe_nb(self) -> str:
        bank = f"{self.other_orgnr or 'ukjent orgnr'}"
        if self.other_bank_name:
            bank += f" {self.other_bank_name}"
        if self.same_run:
            return (
                f"samme kjøring ({self.other_run_id}) som {self.other_path}, pakket på nytt "
                f"({self.shared_nb()} felles)"
            )
        first = "denne kom først" if self.added_first else "den andre kom først"
        return (
            f"deler {self.shared_nb()} med {self.other_path} (bank {bank}, kjøring "
            f"{self.other_run_id or 'ukjent'}; {first} i arkivet)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "other_path": self.other_path,
            "other_sha256": self.other_sha256,
            "other_orgnr": self.other_orgnr,
            "other_bank_name": self.other_bank_name,
            "other_run_id": self.other_run_id,
            "correlation_ids": self.correlation_ids,
            "evidence_files": self.evidence_files,
            "response_bodies": self.response_bodies,
            "same_run": self.same_run,
            "flagged": self.flagged,
            "added_first": self.added_first,
        }


def _match(entry: PackEntry, other: PackEntry, shared: SharedEvidence) -> ReplayMatch:
    same_run = bool(
        entry.orgnr and entry.run_id and (entry.orgnr, entry.run_id) == (other.orgnr, other.run_id)
    )
    return ReplayMatch(
        other_id=other.id or 0,
        other_path=other.path,
        other_sha256=other.sha256,
        other_orgnr=other.orgnr,
        other_bank_name=other.bank_name,
        other_run_id=other.run_id,
        other_added_at=other.added_at,
        correlation_ids=shared.correlation_ids,
        evidence_files=shared.evidence_files,
        response_bodies=shared.response_bodies,
        same_run=same_run,
        added_first=(entry.added_at, entry.id or 0) < (other.added_at, other.id or 0),
    )


def _build(
    pairs: Iterable[SharedEvidence], entries: Mapping[int, PackEntry]
) -> dict[int, list[ReplayMatch]]:
    out: dict[int, list[ReplayMatch]] = {}
    for shared in pairs:
        entry, other = entries.get(shared.pack_id), entries.get(shared.other_id)
        if entry is None or other is None:
            continue
        out.setdefault(shared.pack_id, []).append(_match(entry, other, shared))
    return out


def links(index: Index, entries: Iterable[PackEntry] | None = None) -> dict[int, list[ReplayMatch]]:
    """Every pack's links to others (flagged or not), by pack id."""
    everyone = {e.id: e for e in index.entries() if e.id is not None}
    wanted = None if entries is None else {e.id for e in entries}
    found = _build(index.shared_evidence(), everyone)
    return found if wanted is None else {k: v for k, v in found.items() if k in wanted}


def links_of(index: Index, entry: PackEntry) -> list[ReplayMatch]:
    """One pack's links, found through the index (what ``add`` reports)."""
    if entry.id is None:
        return []
    pairs = index.shared_evidence(entry.id)
    others = {s.other_id: index.by_id(s.other_id) for s in pairs}
    known = {k: v for k, v in others.items() if v is not None}
    return _build(pairs, {entry.id: entry, **known}).get(entry.id, [])


def flagged(matches: Iterable[ReplayMatch]) -> list[ReplayMatch]:
    return [m for m in matches if m.flagged]


def standing(entry: PackEntry, matches: Iterable[ReplayMatch] = ()) -> str:
    if not entry.current.is_valid:
        return INVALID
    return REPLAYED if flagged(matches) else VALID


def standing_label(entry: PackEntry, matches: Iterable[ReplayMatch] = ()) -> str:
    """In Norwegian, with the replay flag on an invalid pack too."""
    matches = list(matches)
    shown = STANDING_LABELS_NB[standing(entry, matches)]
    if not entry.current.is_valid and flagged(matches):
        shown += " – gjenbrukt bevis"
    return shown
