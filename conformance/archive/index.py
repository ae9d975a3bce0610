"""The archive's index: one SQLite file in the archive folder, versioned and migrated forward.

The schema version is SQLite's ``PRAGMA user_version``. Opening an index brings it up to
``SCHEMA_VERSION`` by running the missing steps of ``MIGRATIONS`` in one transaction each;
an index written by a newer kfr-conformance is refused rather than guessed at.

Paths in the index are relative to the archive folder and use ``/``, so the folder can be
copied to another machine (or a file share) and still be read.

Every write goes through ``Index.transaction()`` (``BEGIN IMMEDIATE``), so two processes
never choose the same file name, and a killed process leaves SQLite's journal to roll
the unfinished transaction back on the next open.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import ConformanceError

INDEX_FILE = "index.sqlite3"

VALID = "valid"
INVALID = "invalid"
VERDICTS = (VALID, INVALID)

PRESENT = "present"
MISSING = "missing"  # repair found the row's file gone and recorded it

# Each step takes the index from version n-1 to n. Never edit a released step: add one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE packs (
            id              INTEGER PRIMARY KEY,
            sha256          TEXT NOT NULL UNIQUE,
            path            TEXT NOT NULL UNIQUE,   -- relative to the archive, '/'-separated
            size            INTEGER NOT NULL,
            source_name     TEXT NOT NULL,          -- the file name the pack arrived under
            orgnr           TEXT,
            bank_name       TEXT,
            run_started_at  TEXT,
            run_finished_at TEXT,
            environment     TEXT,
            kfr_base_url    TEXT,
            sheet_file      TEXT,
            sheet_version   TEXT,
            sheet_sha256    TEXT,
            counts          TEXT NOT NULL DEFAULT '{}',   -- JSON
            signer_subject  TEXT,
            signer_orgnr    TEXT,
            signer_not_before TEXT,
            signer_not_after  TEXT,
            verdict         TEXT NOT NULL CHECK (verdict IN ('valid', 'invalid')),
            checks          TEXT NOT NULL DEFAULT '[]',   -- JSON: [{name, ok, reason}]
            added_at        TEXT NOT NULL
        );
        CREATE INDEX packs_orgnr ON packs (orgnr);
        CREATE INDEX packs_run_started ON packs (run_started_at);
        """,
    ),
    (
        # v2: `repair` records packs whose file vanished instead of deleting their rows, and
        # notes how a row came to be (added, or recovered after a crash).
        2,
        """
        ALTER TABLE packs ADD COLUMN state TEXT NOT NULL DEFAULT 'present'
            CHECK (state IN ('present', 'missing'));
        ALTER TABLE packs ADD COLUMN state_changed_at TEXT;
        ALTER TABLE packs ADD COLUMN origin TEXT NOT NULL DEFAULT 'add';
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class ArchiveError(ConformanceError):
    """The archive folder or its index cannot be used."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PackEntry:
    """One archived pack: what the index knows about it."""

    sha256: str
    path: str
    size: int
    source_name: str
    verdict: str
    added_at: str
    orgnr: str | None = None
    bank_name: str | None = None
    run_started_at: str | None = None
    run_finished_at: str | None = None
    environment: str | None = None
    kfr_base_url: str | None = None
    sheet_file: str | None = None
    sheet_version: str | None = None
    sheet_sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    signer_subject: str | None = None
    signer_orgnr: str | None = None
    signer_not_before: str | None = None
    signer_not_after: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    state: str = PRESENT
    state_changed_at: str | None = None
    origin: str = "add"
    id: int | None = None

    @property
    def is_valid(self) -> bool:
        return self.verdict == VALID

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c.get("ok")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = (
    "sha256",
    "path",
    "size",
    "source_name",
    "orgnr",
    "bank_name",
    "run_started_at",
    "run_finished_at",
    "environment",
    "kfr_base_url",
    "sheet_file",
    "sheet_version",
    "sheet_sha256",
    "counts",
    "signer_subject",
    "signer_orgnr",
    "signer_not_before",
    "signer_not_after",
    "verdict",
    "checks",
    "added_at",
    "state",
    "state_changed_at",
    "origin",
)
_JSON_COLUMNS = ("counts", "checks")


def _to_row(entry: PackEntry) -> tuple[Any, ...]:
    values = []
    for name in _COLUMNS:
        value = getattr(entry, name)
        if name in _JSON_COLUMNS:
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        values.append(value)
    return tuple(values)


def _from_row(row: sqlite3.Row) -> PackEntry:
    data = {name: row[name] for name in _COLUMNS}
    for name in _JSON_COLUMNS:
        data[name] = json.loads(data[name] or ("{}" if name == "counts" else "[]"))
    return PackEntry(id=row["id"], **data)


class Index:
    """An open index. Use as a context manager, or call ``close()``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken before reading what it depends on (BEGIN IMMEDIATE)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- reads -----------------------------------------------------------------------------

    def by_sha256(self, sha256: str) -> PackEntry | None:
        row = self._conn.execute("SELECT * FROM packs WHERE sha256 = ?", (sha256,)).fetchone()
        return _from_row(row) if row else None

    def by_path(self, path: str) -> PackEntry | None:
        row = self._conn.execute("SELECT * FROM packs WHERE path = ?", (path,)).fetchone()
        return _from_row(row) if row else None

    def entries(
        self,
        *,
        bank: str | None = None,
        since: str | None = None,
        status: str | None = None,
    ) -> list[PackEntry]:
        """Packs oldest run first. ``since`` (``YYYY-MM-DD``) compares with the run's start,
        or with the time it was added when the pack could not be read."""
        where, params = [], []
        if bank is not None:
            where.append("orgnr = ?")
            params.append(bank)
        if since is not None:
            where.append("COALESCE(run_started_at, added_at) >= ?")
            params.append(since)
        if status is not None:
            if status not in VERDICTS:
                raise ArchiveError(f"Ukjent status {status!r}: bruk valid eller invalid.")
            where.append("verdict = ?")
            params.append(status)
        sql = "SELECT * FROM packs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY COALESCE(run_started_at, added_at), id"
        return [_from_row(r) for r in self._conn.execute(sql, params)]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM packs").fetchone()[0])

    # -- writes (inside ``transaction()``) -------------------------------------------------

    def insert(self, entry: PackEntry) -> PackEntry:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        cur = self._conn.execute(
            f"INSERT INTO packs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", _to_row(entry)
        )
        entry.id = cur.lastrowid
        return entry

    def set_state(self, entry_id: int, state: str, *, path: str | None = None) -> None:
        if path is None:
            self._conn.execute(
                "UPDATE packs SET state = ?, state_changed_at = ? WHERE id = ?",
                (state, utc_now(), entry_id),
            )
        else:
            self._conn.execute(
                "UPDATE packs SET state = ?, state_changed_at = ?, path = ? WHERE id = ?",
                (state, utc_now(), path, entry_id),
            )


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        # A rollback journal (not WAL) keeps the archive one file when idle, so copying the
        # folder copies the whole index; FULL makes a committed row survive a power cut.
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"Arkivindeksen {path} kan ikke åpnes: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection, steps: Sequence[tuple[int, str]] = MIGRATIONS) -> int:
    """Bring the index to the newest version in ``steps``; returns the version it was at."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    newest = steps[-1][0]
    if current > newest:
        raise ArchiveError(
            f"Arkivindeksen har skjemaversjon {current}, men denne versjonen av "
            f"kfr-conformance kjenner bare til versjon {newest}.",
            hint="Bruk en nyere kfr-conformance for dette arkivet.",
        )
    for version, script in steps:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the lock: another process may have migrated meanwhile.
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= version:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return current


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.execute runs one at a time, and
    executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line.split("--", 1)[0] + ("\n" if "--" in line else "")
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def open_index(archive_dir: Path, *, create: bool = False) -> Index:
    """Open (and migrate) the index of ``archive_dir``.

    ``create=False`` refuses a folder that is not an archive, so a mistyped ``--archive``
    does not silently start an empty one.
    """
    path = archive_dir / INDEX_FILE
    if not path.exists():
        if not create:
            raise ArchiveError(
                f"{archive_dir} er ikke et arkiv (fant ikke {INDEX_FILE}).",
                hint="Legg til en pakke med «kfr-conformance archive add» først, eller sjekk --archive.",
            )
        archive_dir.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    try:
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ArchiveError(f"Arkivindeksen {path} er skadet eller ikke en database: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return Index(conn, path)
