"""What the archive records about a pack: the pack engineer's verification, flattened.

``judge(data, policy)`` runs the same checks as ``kfr-conformance verify`` and returns a
``PackEntry`` without a place in the archive yet. A pack that cannot even be read (not a
zip, hostile, malformed) is still judged: ``invalid``, with the reason, and no bank.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from conformance.archive.index import INVALID, VALID, PackEntry, utc_now
from conformance.errors import InvalidPack

UNKNOWN_BANK_DIR = "ukjent"
_ORGNR = re.compile(r"^\d{9}$")
UNREADABLE_CHECK = "readable"
UNREADABLE_LABEL = "Pakken kan leses"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bank_dir(orgnr: str | None) -> str:
    """The archive folder for a bank. The orgnr comes from an unverified manifest, so only
    a plain 9-digit number becomes a folder name."""
    return orgnr if orgnr and _ORGNR.match(orgnr) else UNKNOWN_BANK_DIR


def _section(manifest: Any, name: str) -> Mapping[str, Any]:
    value = getattr(manifest, name, None)
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _case_row(case: Any) -> dict[str, Any]:
    """A manifest row as the archive's own pack page shows it."""
    expected = getattr(case, "expected", None)
    return {
        "id": _text(getattr(case, "id", "")),
        "title": _text(getattr(case, "title", "")),
        "outcome": _text(getattr(case, "outcome", "")),
        "expected": _text(expected.get("text")) if isinstance(expected, Mapping) else None,
        "actual": _text(getattr(case, "actual", "")),
        "message": _text(getattr(case, "message", "")),
        "manual": bool(getattr(case, "manual", False)),
        "confirmed_by": _text(getattr(case, "confirmed_by", None)),
        "confirmed_at": _text(getattr(case, "confirmed_at", None)),
        "evidence_file": _text(getattr(case, "evidence_file", None)),
        "correlation_ids": [str(v) for v in getattr(case, "correlation_ids", ()) or ()],
    }


def manifest_facts(manifest: Any) -> dict[str, Any]:
    """Run id, tester and rows: what v3 of the index reads from a manifest."""
    attestation = _section(manifest, "attestation")
    return {
        "run_id": _text(getattr(manifest, "run_id", None)),
        "tester": _text(attestation.get("tester")) or None,
        "cases": [_case_row(c) for c in getattr(manifest, "cases", ()) or ()],
    }


def judge(
    data: bytes,
    policy: Any,
    *,
    source_name: str,
    origin: str = "add",
    fingerprint: bool = True,
) -> PackEntry:
    """Verify ``data`` under ``policy`` and describe it as an index entry (``path`` empty),
    with the policy it was judged under and (``fingerprint``) its evidence's fingerprints."""
    from conformance.archive.evidence import extract
    from conformance.archive.policy import to_record
    from conformance.pack.verify import verify_pack_bytes

    base = {
        "sha256": sha256_hex(data),
        "path": "",
        "size": len(data),
        "source_name": source_name,
        "added_at": utc_now(),
        "origin": origin,
        "policy": to_record(policy)[0],
    }
    try:
        report = verify_pack_bytes(data, policy)
    except InvalidPack as exc:
        return PackEntry(
            verdict=INVALID,
            checks=[
                {
                    "name": UNREADABLE_CHECK,
                    "label": UNREADABLE_LABEL,
                    "ok": False,
                    "reason": exc.diagnostics(),
                }
            ],
            evidence=extract(data) if fingerprint else None,
            **base,
        )
    checks = [
        {"name": c.name, "label": report.label(c.name), "ok": bool(c.ok), "reason": c.reason}
        for c in report.checks
    ]
    entry = PackEntry(verdict=VALID if report.ok else INVALID, checks=checks, **base)
    manifest = report.manifest
    if manifest is not None:
        bank = _section(manifest, "bank")
        env = _section(manifest, "environment")
        sheet = _section(manifest, "sheet")
        entry.orgnr = _text(bank.get("orgnr"))
        entry.bank_name = _text(bank.get("name"))
        entry.environment = _text(env.get("name"))
        entry.kfr_base_url = _text(env.get("kfr_base_url"))
        entry.sheet_file = _text(sheet.get("file_name"))
        entry.sheet_version = _text(sheet.get("version"))
        entry.sheet_sha256 = _text(sheet.get("sha256"))
        entry.run_started_at = _text(getattr(manifest, "started_at", None))
        entry.run_finished_at = _text(getattr(manifest, "finished_at", None))
        counts = getattr(manifest, "counts", None)
        if isinstance(counts, Mapping):
            entry.counts = {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
        facts = manifest_facts(manifest)
        entry.run_id, entry.tester, entry.cases = facts["run_id"], facts["tester"], facts["cases"]
    if fingerprint:
        entry.evidence = extract(data, report, manifest)
    signer = report.signer or {}
    entry.signer_subject = _text(signer.get("subject"))
    entry.signer_orgnr = _text(signer.get("orgnr"))
    entry.signer_not_before = _text(signer.get("not_before"))
    entry.signer_not_after = _text(signer.get("not_after"))
    return entry
