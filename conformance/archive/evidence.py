"""What a pack's evidence is made of, for finding the same evidence in two packs.

A bank signs its own packs, so a valid signature says who sent a pack, not that its
evidence is its own: another run's evidence can be re-signed under a second bank's orgnr
and key. What gives such a replay away is that the same exchanges show up twice in the
archive. For each pack we keep:

- every CorrelationID it recorded (and those the manifest claims without evidence) —
  the client makes a fresh UUID per call, so two runs never share one;
- the SHA-256 of every evidence file (``evidence/*.json``, ``journal*.jsonl``) —
  timestamps to the microsecond make each one unique to its run;
- the SHA-256 of KFR's response bodies that are distinctive: not the token answer, not
  bodies shorter than ``MIN_BODY_BYTES``, and not a body the pack itself received more
  than once (an empty ``{"banks": []}`` or the bank's own lookup answer recurs in every
  honest run). A forger who rewrites URLs and CorrelationIDs still has to keep KFR's
  answers, which carry KFR's timestamps.

The pack is read through the pack engineer's hostile-zip reader; anything unreadable is
simply not fingerprinted (the verifier already refuses the pack for it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conformance.errors import InvalidPack

EVIDENCE_FILE = "evidence_file"
RESPONSE_BODY = "response_body"
FROM_EVIDENCE = "evidence"
FROM_MANIFEST = "manifest"  # claimed in the manifest, not found in the evidence

MIN_BODY_BYTES = 48
MAX_EVIDENCE_JSON = 8 << 20  # larger evidence files are hashed, not parsed
_KFR_OPERATIONS = frozenset({"add", "end", "batch", "lookup", "agency_lookup", "account_lookup"})


@dataclass(frozen=True)
class CorrelationUse:
    """One CorrelationID as a pack records it."""

    correlation_id: str
    case_id: str = ""
    time: str = ""
    operation: str = ""
    status: int | None = None
    source: str = FROM_EVIDENCE

    @property
    def match_key(self) -> str:
        return self.correlation_id.strip().lower()

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "case_id": self.case_id,
            "time": self.time,
            "operation": self.operation,
            "status": self.status,
            "source": self.source,
        }


@dataclass(frozen=True)
class Fingerprint:
    kind: str  # EVIDENCE_FILE or RESPONSE_BODY
    sha256: str
    place: str  # the member name, or the case whose exchange received the body


@dataclass
class PackEvidence:
    correlations: list[CorrelationUse] = field(default_factory=list)
    fingerprints: list[Fingerprint] = field(default_factory=list)


def is_evidence_member(name: str) -> bool:
    return (name.startswith("evidence/") and name.endswith(".json")) or (
        "/" not in name and name.startswith("journal") and name.endswith(".jsonl")
    )


def _exchanges(name: str, data: bytes) -> Iterator[dict[str, Any]]:
    """The exchanges in an evidence file or a journal, skipping what is not one."""
    try:
        if name.endswith(".jsonl"):
            documents: Iterable[Any] = (
                json.loads(line) for line in data.splitlines() if line.strip()
            )
            for item in documents:
                if isinstance(item, dict):
                    yield item
            return
        document = json.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(document, dict) or not isinstance(document.get("exchanges"), list):
        return
    default_case = document.get("case_id") if isinstance(document.get("case_id"), str) else ""
    for item in document["exchanges"]:
        if isinstance(item, dict):
            if not isinstance(item.get("case_id"), str):
                item = {**item, "case_id": default_case}
            yield item


def _status(exchange: dict[str, Any]) -> int | None:
    response = exchange.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _body_sha256(exchange: dict[str, Any]) -> str | None:
    """The SHA-256 of a KFR response body worth matching, or None."""
    if exchange.get("operation") not in _KFR_OPERATIONS:
        return None
    response = exchange.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    if isinstance(body, dict):  # a large body is recorded by its size and SHA-256
        digest, size = body.get("sha256"), body.get("size")
        if isinstance(digest, str) and isinstance(size, int) and size >= MIN_BODY_BYTES:
            return digest.lower()
        return None
    if not isinstance(body, str):
        return None
    raw = body.encode("utf-8", "surrogatepass")
    if len(raw.strip()) < MIN_BODY_BYTES:
        return None
    return hashlib.sha256(raw).hexdigest()


def extract(data: bytes, report: Any = None, manifest: Any = None) -> PackEvidence:
    """The fingerprints of a pack's bytes. ``report`` (a ``VerificationReport``) adds the
    verifier's own CorrelationID records; ``manifest`` adds the IDs it claims."""
    from conformance.pack.safezip import SafeZip

    out = PackEvidence()
    by_key: dict[str, CorrelationUse] = {}
    bodies: Counter[str] = Counter()
    body_place: dict[str, str] = {}
    try:
        with SafeZip(data) as pack:
            for name in sorted(n for n in pack.names if is_evidence_member(n)):
                sha, _size = pack.digest(name)
                out.fingerprints.append(Fingerprint(EVIDENCE_FILE, sha, name))
                if pack.size(name) > MAX_EVIDENCE_JSON:
                    continue
                for exchange in _exchanges(name, pack.read(name)):
                    value = exchange.get("correlation_id")
                    case = str(exchange.get("case_id") or "")
                    if isinstance(value, str) and value.strip():
                        use = CorrelationUse(
                            correlation_id=value[:100],
                            case_id=case[:100],
                            time=str(exchange.get("started_at") or "")[:40],
                            operation=str(exchange.get("operation") or "")[:40],
                            status=_status(exchange),
                        )
                        by_key.setdefault(use.match_key, use)
                    body = _body_sha256(exchange)
                    if body is not None and not name.endswith(".jsonl"):
                        # The journal repeats the evidence files' exchanges: count once.
                        bodies[body] += 1
                        body_place.setdefault(body, case[:100])
    except InvalidPack:
        pass
    for record in getattr(report, "correlations", None) or ():
        use = CorrelationUse(
            correlation_id=str(record.correlation_id)[:100],
            case_id=str(record.case_id)[:100],
            time=str(record.time)[:40],
            operation=str(record.operation)[:40],
            status=record.status,
        )
        by_key.setdefault(use.match_key, use)
    for case in getattr(manifest, "cases", None) or ():
        for value in getattr(case, "correlation_ids", ()) or ():
            use = CorrelationUse(str(value)[:100], str(case.id)[:100], source=FROM_MANIFEST)
            if use.match_key:
                by_key.setdefault(use.match_key, use)
    out.correlations = sorted(by_key.values(), key=lambda u: (u.time, u.correlation_id))
    out.fingerprints += [
        Fingerprint(RESPONSE_BODY, sha, body_place[sha])
        for sha, seen in sorted(bodies.items())
        if seen == 1
    ]
    return out
