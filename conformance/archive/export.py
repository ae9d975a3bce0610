"""``archive export-correlations``: every CorrelationID in the archive as CSV.

This is the control Bits has that a bank cannot sign its way past: KFR logs the
CorrelationID of every request it receives, so an ID in a pack that KFR's own logs do not
know was never sent to KFR, and an ID KFR logged for another bank's client was not this
bank's. The columns extend those of ``verify --export-correlations`` with the pack, the
bank and the run, so one file covers the whole archive.

Every text cell comes from a received pack and may be opened in a spreadsheet: cells
that a spreadsheet would read as a formula get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from conformance.archive import replay
from conformance.archive.index import PackEntry
from conformance.archive.replay import ReplayMatch
from conformance.archive.store import Archive
from conformance.atomic import atomic_write_bytes
from conformance.errors import UsageError

COLUMNS = (
    "pack",
    "pack_sha256",
    "orgnr",
    "bank_name",
    "run_id",
    "standing",
    "replayed",
    "correlation_id",
    "time",
    "operation",
    "status",
    "case_id",
    "source",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def formula_safe(value: object) -> str:
    """Text from a pack, safe to open in Excel or LibreOffice (no formula runs)."""
    shown = "" if value is None else str(value)
    return "'" + shown if shown.startswith(_FORMULA_START) else shown


def _write(
    archive: Archive,
    entries: Sequence[PackEntry],
    links: Mapping[int, list[ReplayMatch]],
    handle: TextIO,
) -> int:
    writer = csv.writer(handle)
    writer.writerow(COLUMNS)
    count = 0
    for entry in entries:
        matches = links.get(entry.id or 0, [])
        pack = [
            entry.path,
            entry.sha256,
            entry.orgnr,
            entry.bank_name,
            entry.run_id,
            replay.standing(entry, matches),
            "ja" if replay.flagged(matches) else "nei",
        ]
        for use in archive.index.correlations(entry.id or 0):
            row = [
                *pack,
                use.correlation_id,
                use.time,
                use.operation,
                "" if use.status is None else use.status,
                use.case_id,
                use.source,
            ]
            writer.writerow([v if isinstance(v, int) else formula_safe(v) for v in row])
            count += 1
    return count


def export_correlations(
    archive: Archive,
    entries: Sequence[PackEntry],
    links: Mapping[int, list[ReplayMatch]],
    out: Path | TextIO,
) -> int:
    """Write the CSV to a file (written whole, then renamed into place) or a stream;
    returns the number of CorrelationIDs."""
    if not isinstance(out, Path):
        return _write(archive, entries, links, out)
    buffer = io.StringIO(newline="")
    count = _write(archive, entries, links, buffer)
    try:
        atomic_write_bytes(out, buffer.getvalue().encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"Kan ikke skrive {out}: {exc.strerror or exc}") from exc
    return count
