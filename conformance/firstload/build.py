"""``batch build``: the core system's export → D-3 files KFR takes, in one streaming pass.

For each row, in this order: the ID must be valid (python-stdnum's rules, through the
proven-equal fast path) and not synthetic unless allowed; start date, end date and status
must be readable; then a relationship whose end date is today or earlier, or whose status
says it has ended, is left out (the first load holds only current relationships). Every
remaining ID is kept once, with its **earliest** start date: a customer who has had
several accounts has been a customer since the first one, and an empty start date counts
as the latest (KFR would use today). Rows are never rejected for being duplicates.

Memory stays bounded: rejected rows go straight to the CSV, kept IDs to
:class:`EarliestByKey` (partitioned, spilled to disk), and the files are written from
there, one partition at a time.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.atomic import atomic_file, atomic_write_bytes
from conformance.errors import UsageError
from conformance.firstload.batchfile import FILE_GLOB, BatchFile, BatchFileWriter
from conformance.firstload.dedup import EarliestByKey, partitions_for
from conformance.firstload.export import (
    ColumnMapping,
    DateReader,
    ExportReader,
    StatusReader,
)
from conformance.firstload.rules import (
    KFR_READ_RATE,
    MAX_CUSTOMERS_BYTES,
    oslo_today,
    why_invalid,
)
from conformance.ids import IdKind, classify_fast_many, is_synthetic

__all__ = ["REJECTED_CSV", "SUMMARY_JSON", "BuildOptions", "BuildSummary", "build_first_load"]

REJECTED_CSV = "avviste-linjer.csv"
SUMMARY_JSON = "sammendrag.json"
NO_DATE = 1 << 40  # sorts after every real date: a dated row wins over an undated one
EXAMPLES_KEPT = 20
BATCH_ROWS = 65_536  # entries handed to the file writer at a time
_UNSEEN: Any = object()
SMALLEST_LINE = 12  # an 11-digit ID and a newline: the most rows an export of n bytes can hold

R_SYNTHETIC = "syntetisk test-ID (tillatt bare med --allow-synthetic)"
R_START = "ugyldig startdato"
R_START_FUTURE = "startdato etter i dag"
R_END = "ugyldig sluttdato"
R_STATUS = "ukjent status"


@dataclass(frozen=True)
class BuildOptions:
    allow_synthetic: bool = False
    max_bytes: int = MAX_CUSTOMERS_BYTES
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    encoding: str = "utf-8-sig"
    delimiter: str | None = None
    has_header: bool = True
    date_format: str | None = None
    ended_statuses: frozenset[str] = frozenset()
    active_statuses: frozenset[str] = frozenset()
    today: dt.date | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.max_bytes <= MAX_CUSTOMERS_BYTES:
            raise UsageError(
                f"--max-bytes må være mellom 100 og {MAX_CUSTOMERS_BYTES} "
                "(10 MB med multipart-konvolutten)."
            )


@dataclass
class BuildSummary:
    export: Path
    export_format: str
    out_dir: Path
    rows: int = 0                      # data rows read (blank lines and the header not counted)
    rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    rejected_examples: list[tuple[int, str]] = field(default_factory=list)
    ended: int = 0
    kept_rows: int = 0                 # valid, current rows before duplicates were removed
    unique: int = 0
    by_kind: Counter = field(default_factory=Counter)
    duplicate_rows: int = 0            # rows dropped because their ID came earlier/later too
    undated: int = 0
    files: list[BatchFile] = field(default_factory=list)
    rejected_csv: Path | None = None
    seconds: float = 0.0
    today: dt.date = field(default_factory=oslo_today)
    max_bytes: int = MAX_CUSTOMERS_BYTES

    def ingest_seconds(self, rate: float = KFR_READ_RATE) -> float:
        return self.unique / rate

    def to_json(self) -> dict[str, Any]:
        return {
            "export": str(self.export),
            "export_format": self.export_format,
            "built_on": self.today.isoformat(),
            "rows": self.rows,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason.most_common()),
            "ended_left_out": self.ended,
            "kept_rows": self.kept_rows,
            "duplicate_rows_removed": self.duplicate_rows,
            "unique_ids": self.unique,
            "by_kind": {str(k): v for k, v in sorted(self.by_kind.items())},
            "without_start_date": self.undated,
            "max_customers_bytes": self.max_bytes,
            "files": [f.to_json() for f in self.files],
            "ingest_seconds_at_250_per_s": round(self.ingest_seconds(), 1),
        }


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} finnes og er ikke en mappe.")
    if out_dir.is_dir():
        earlier = [p.name for p in out_dir.iterdir() if p.name in (REJECTED_CSV, SUMMARY_JSON)]
        earlier += [p.name for p in out_dir.glob(FILE_GLOB)]
        if earlier:
            raise UsageError(
                f"{out_dir} har filer fra en tidligere bygging ({', '.join(sorted(earlier)[:3])} …).",
                hint="Velg en ny, tom mappe med --out-dir; ingenting i den gamle blir overskrevet.",
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"Kan ikke lage mappen {out_dir}: {exc.strerror or exc}") from exc


def build_first_load(export: Path, out_dir: Path, options: BuildOptions | None = None) -> BuildSummary:
    """Read ``export`` and write the batch files, ``avviste-linjer.csv`` and
    ``sammendrag.json`` into ``out_dir`` (which must not hold an earlier build)."""
    options = options or BuildOptions()
    started = time.perf_counter()
    export, out_dir = Path(export), Path(out_dir)
    reader = ExportReader(
        export, mapping=options.mapping, encoding=options.encoding,
        delimiter=options.delimiter, has_header=options.has_header,
    )
    _prepare_out_dir(out_dir)
    today = options.today or oslo_today()
    summary = BuildSummary(export, reader.fmt, out_dir, today=today, max_bytes=options.max_bytes)
    try:
        size = export.stat().st_size
    except OSError:
        size = 0
    table = EarliestByKey(
        partitions=partitions_for(size // SMALLEST_LINE), work_dir=out_dir / ".kfr-build-tmp"
    )
    try:
        with atomic_file(out_dir / REJECTED_CSV) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            rejected = csv.writer(text, delimiter=";")
            rejected.writerow(["linje", "id", "årsak"])
            _read_rows(reader, options, today, summary, table, rejected)
            text.flush()
            text.detach()
        summary.rejected_csv = out_dir / REJECTED_CSV
        _write_files(table, out_dir, options.max_bytes, summary)
    finally:
        table.close()
        _remove_empty(out_dir / ".kfr-build-tmp")
    summary.seconds = time.perf_counter() - started
    return summary


def _read_rows(
    reader: ExportReader,
    options: BuildOptions,
    today: dt.date,
    summary: BuildSummary,
    table: EarliestByKey,
    rejected: Any,
) -> None:
    dates = DateReader(options.date_format)
    known_dates = dates.known
    statuses = StatusReader(set(options.ended_statuses), set(options.active_statuses))
    status_seen: dict[str, bool | None] = {"": False}
    allow_synthetic = options.allow_synthetic
    today_ordinal = today.toordinal()
    reasons = summary.rejected_by_reason
    examples = summary.rejected_examples

    def reject(line: int, raw: str, category: str, detail: str | None = None) -> None:
        summary.rejected += 1
        reasons[category] += 1
        rejected.writerow([line, raw, detail or category])
        if len(examples) < EXAMPLES_KEPT:
            examples.append((line, detail or category))

    for rows in reader.chunks():
        summary.rows += len(rows)
        customers = [
            raw if raw.isdigit() else raw.replace(" ", "").replace("-", "").replace(":", "")
            for _, raw, _, _, _ in rows
        ]
        keys: list[int] = []
        starts: list[int] = []
        for (line, raw, start_text, end_text, status), customer, kind in zip(
            rows, customers, classify_fast_many(customers), strict=True
        ):
            if kind is None:
                reject(line, raw, why_invalid(customer))
                continue
            if not allow_synthetic and is_synthetic(customer):
                reject(line, raw, R_SYNTHETIC)
                continue
            start = known_dates.get(start_text) if start_text else None
            if start is None and start_text:
                start = dates.read(start_text)
            if start.__class__ is str:
                reject(line, raw, R_START, f"{R_START}: {start}")
                continue
            end = known_dates.get(end_text) if end_text else None
            if end is None and end_text:
                end = dates.read(end_text)
            if end.__class__ is str:
                reject(line, raw, R_END, f"{R_END}: {end}")
                continue
            ended = status_seen.get(status, _UNSEEN)
            if ended is _UNSEEN:
                ended = status_seen[status] = statuses.is_ended(status)
            if ended is None:
                reject(line, raw, R_STATUS,
                       f"{R_STATUS} «{status[:30]}» (se --ended-status/--active-status)")
                continue
            if ended or (end is not None and end.toordinal() <= today_ordinal):
                summary.ended += 1
                continue
            if start is None:
                start_ordinal = NO_DATE
            else:
                start_ordinal = start.toordinal()
                if start_ordinal > today_ordinal:
                    reject(line, raw, R_START_FUTURE,
                           f"{R_START_FUTURE} ({start.isoformat()}): førstegangslasten gjelder "
                           "eksisterende kundeforhold")
                    continue
            keys.append(int(customer))
            starts.append(start_ordinal)
        table.add_many(keys, starts)
    summary.kept_rows = table.added


def _write_files(table: EarliestByKey, out_dir: Path, max_bytes: int, summary: BuildSummary) -> None:
    writer = BatchFileWriter(out_dir, max_bytes)
    iso: dict[int, str] = {}
    by_kind = summary.by_kind
    entries: list[str] = []
    try:
        persons = d_numbers = organisations = 0
        for key, start in table.unique():
            # The kind from the number itself: 9 digits, or an 11-digit one whose day is +40.
            if key < 1_000_000_000:
                organisations += 1
                customer = f"{key:09d}"
            else:
                if key >= 40_000_000_000:
                    d_numbers += 1
                else:
                    persons += 1
                customer = f"{key:011d}"
            if start == NO_DATE:
                summary.undated += 1
                entries.append(customer)
            else:
                day = iso.get(start)
                if day is None:
                    day = iso[start] = dt.date.fromordinal(start).isoformat()
                entries.append(f"{customer}#{day}")
            if len(entries) >= BATCH_ROWS:
                writer.add_many(entries)
                entries = []
        writer.add_many(entries)
        summary.files = writer.close()
        summary.unique = persons + d_numbers + organisations
        by_kind.update({kind: n for kind, n in ((IdKind.FODSELSNUMMER, persons),
                        (IdKind.D_NUMMER, d_numbers), (IdKind.ORGNR, organisations)) if n})
    except BaseException:
        writer.abort()
        raise
    summary.duplicate_rows = summary.kept_rows - summary.unique


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def write_summary_json(summary: BuildSummary, extra: dict[str, Any] | None = None) -> Path:
    data = summary.to_json() | (extra or {})
    target = summary.out_dir / SUMMARY_JSON
    atomic_write_bytes(target, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode())
    return target
