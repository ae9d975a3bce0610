"""The sandbox's SQLite storage: Maskinporten clients, used assertion ids, relationships, batches.

One database file per data folder (``sandbox.sqlite3``), in WAL mode with a busy timeout,
so several threads and several processes can use it at once. Each thread gets its own
connection; an in-memory database has a single connection behind a lock instead, because
shared-cache in-memory databases do not honour the busy timeout.

Relationships keep their history: ending one sets ``end_date``; at most one row per
(customer, bank) is active (``end_date IS NULL``), enforced by a partial unique index —
which is also what makes concurrent adds of the same pair safe.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from conformance.errors import SandboxError

DB_FILE = "sandbox.sqlite3"
BUSY_TIMEOUT_MS = 10_000
COPY_CHUNK = 256 * 1024  # a batch's entry list moves between file and database in pieces

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id  TEXT PRIMARY KEY,
    orgnr      TEXT NOT NULL,
    kind       TEXT NOT NULL,              -- 'bank' | 'agency'
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,              -- space-separated, as in OAuth
    created_at TEXT NOT NULL,
    UNIQUE (orgnr, kind)
);
CREATE TABLE IF NOT EXISTS client_keys (
    kid        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    cert_pem   TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS used_jtis (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE TABLE IF NOT EXISTS relationships (
    id          INTEGER PRIMARY KEY,
    fid         TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    start_date  TEXT NOT NULL,             -- YYYY-MM-DD, inclusive
    end_date    TEXT                       -- YYYY-MM-DD, inclusive; NULL while active
);
CREATE UNIQUE INDEX IF NOT EXISTS relationships_active
    ON relationships (customer_id, fid) WHERE end_date IS NULL;
CREATE INDEX IF NOT EXISTS relationships_customer ON relationships (customer_id, fid);
CREATE TABLE IF NOT EXISTS batches (
    id             INTEGER PRIMARY KEY,
    fid            TEXT NOT NULL,
    correlation_id TEXT,
    total          INTEGER NOT NULL,
    done           INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL,          -- 'pending' | 'done' | 'discarded'
    default_start  TEXT NOT NULL,
    entries        TEXT,                   -- only in older data folders: now in batch_files
    received_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_state ON batches (state);
-- A pending batch's entry list: 'id' or 'id#YYYY-MM-DD', comma-separated; deleted once
-- ingested. Its own table, with the BLOB as the last column: SQLite keeps a trailing
-- zeroblob() implicit when it inserts one, but builds a zeroblob in the middle of a row in
-- memory (10 MB for a full file), and ingestion's progress updates on ``batches`` would
-- expire an open BLOB handle on the same row.
CREATE TABLE IF NOT EXISTS batch_files (
    batch_id       INTEGER PRIMARY KEY,    -- batches.id
    entries        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    orgnr      TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    orgnr: str
    kind: str
    name: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class PendingBatch:
    id: int
    fid: str
    total: int
    done: int
    default_start: str


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    """SQLite storage for one sandbox data folder (``path=None``: in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        if path is None:
            self._shared = self._open(":memory:")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as conn:
            try:
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise SandboxError(f"Sandkassens database {path} kan ikke åpnes: {exc}.") from exc

    # ------------------------------------------------------------------ connections

    def _open(self, target: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                target,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if target != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL survives a crash of the process (not of the machine): enough here.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise SandboxError(f"Sandkassens database {target} kan ikke åpnes: {exc}.") from exc
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise SandboxError("Sandkassens database er lukket.")
        if self._shared is not None:
            with self._shared_lock:
                yield self._shared
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(str(self.path))
        yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taking the write lock at once so that read-then-write
        sequences cannot interleave with another writer."""
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def tune_for_bulk(self) -> None:
        """Settings for the calling thread's connection when it writes in bulk (ingestion):
        checkpoints every ~40 MB of WAL instead of every 4 MB, and a 4 MiB page cache. The
        cache was 64 MiB, which alone took the sandbox past its 64 MiB memory goal; with
        each chunk inserted in key order (``Ingester``) a 2, 4 or 8 MiB cache ingests as
        fast as 64 MiB did (measured, docs/performance.md)."""
        with self._conn() as conn:
            conn.execute("PRAGMA cache_size = -4096")
            conn.execute("PRAGMA wal_autocheckpoint = 10000")

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # ------------------------------------------------------------------ clients

    def ensure_client(self, orgnr: str, kind: str, name: str, scopes: Sequence[str]) -> str:
        """The client id for (orgnr, kind), registering it on first use; the name and
        scopes are brought up to date on later calls."""
        scope_text = " ".join(dict.fromkeys(scopes))
        with self._write() as conn:
            row = conn.execute(
                "SELECT client_id FROM clients WHERE orgnr = ? AND kind = ?", (orgnr, kind)
            ).fetchone()
            if row:
                conn.execute(
                    "UPDATE clients SET name = ?, scopes = ? WHERE client_id = ?",
                    (name, scope_text, row[0]),
                )
                return str(row[0])
            client_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO clients (client_id, orgnr, kind, name, scopes, created_at) VALUES (?,?,?,?,?,?)",
                (client_id, orgnr, kind, name, scope_text, _utc_now()),
            )
            return client_id

    def client(self, client_id: str) -> ClientRecord | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT client_id, orgnr, kind, name, scopes FROM clients WHERE client_id = ?",
                (client_id,),
            ).fetchone()
        if not row:
            return None
        return ClientRecord(row[0], row[1], row[2], row[3], tuple(row[4].split()))

    def client_by_orgnr(self, orgnr: str, kind: str) -> ClientRecord | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT client_id FROM clients WHERE orgnr = ? AND kind = ?", (orgnr, kind)
            ).fetchone()
        return self.client(row[0]) if row else None

    def add_client_key(self, client_id: str, kid: str, cert_pem: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO client_keys (kid, client_id, cert_pem, created_at) VALUES (?,?,?,?)",
                (kid, client_id, cert_pem, _utc_now()),
            )

    def client_key(self, client_id: str, kid: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT cert_pem FROM client_keys WHERE kid = ? AND client_id = ?", (kid, client_id)
            ).fetchone()
        return row[0] if row else None

    def bank_names(self, orgnrs: Sequence[str]) -> dict[str, str]:
        if not orgnrs:
            return {}
        marks = ",".join("?" * len(orgnrs))
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT orgnr, name FROM clients WHERE kind = 'bank' AND orgnr IN ({marks})",
                tuple(orgnrs),
            ).fetchall()
        return {orgnr: name for orgnr, name in rows}

    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Record an assertion id; False when the client has used it before (replay)."""
        now = time.time()
        with self._conn() as conn:
            try:
                conn.execute(
                    "INSERT INTO used_jtis (client_id, jti, expires_at) VALUES (?,?,?)",
                    (client_id, jti, expires_at),
                )
            except sqlite3.IntegrityError:
                row = conn.execute(
                    "SELECT expires_at FROM used_jtis WHERE client_id = ? AND jti = ?",
                    (client_id, jti),
                ).fetchone()
                if row and row[0] >= now:
                    return False
                # An expired record: the assertion itself is rejected for its exp anyway.
                conn.execute(
                    "UPDATE used_jtis SET expires_at = ? WHERE client_id = ? AND jti = ?",
                    (expires_at, client_id, jti),
                )
            if int(now) % 60 == 0:  # now and then, forget ids whose assertions expired long ago
                conn.execute("DELETE FROM used_jtis WHERE expires_at < ?", (now - 3600,))
        return True

    # ------------------------------------------------------------------ relationships

    def add_relationship(self, fid: str, customer_id: str, start: str) -> bool:
        """True if added, False if an active relationship already existed."""
        with self._conn() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO relationships (fid, customer_id, start_date) VALUES (?,?,?)",
                (fid, customer_id, start),
            )
            return cur.rowcount == 1

    def end_relationship(
        self, fid: str, customer_id: str, end: str, *, erase: bool = False
    ) -> bool:
        """End the active relationship (history kept); ``erase`` deletes every trace instead.
        False when there was no active relationship."""
        with self._conn() as conn:
            if erase:
                cur = conn.execute(
                    "DELETE FROM relationships WHERE fid = ? AND customer_id = ?",
                    (fid, customer_id),
                )
            else:
                cur = conn.execute(
                    "UPDATE relationships SET end_date = ? WHERE fid = ? AND customer_id = ? AND end_date IS NULL",
                    (end, fid, customer_id),
                )
            return cur.rowcount > 0

    def banks_for(
        self, customer_id: str, from_date: str, to_date: str, fid: str | None = None
    ) -> list[str]:
        """The fids with a relationship to the customer that overlaps [from_date, to_date]."""
        sql = (
            "SELECT DISTINCT fid FROM relationships WHERE customer_id = ? AND start_date <= ?"
            " AND (end_date IS NULL OR end_date >= ?)"
        )
        params: tuple[str, ...] = (customer_id, to_date, from_date)
        if fid is not None:
            sql += " AND fid = ?"
            params += (fid,)
        with self._conn() as conn:
            return sorted(row[0] for row in conn.execute(sql + " ORDER BY fid", params))

    def relationship_count(self, fid: str | None = None, *, active_only: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM relationships WHERE 1=1"
        params: tuple[str, ...] = ()
        if fid is not None:
            sql += " AND fid = ?"
            params = (fid,)
        if active_only:
            sql += " AND end_date IS NULL"
        with self._conn() as conn:
            return int(conn.execute(sql, params).fetchone()[0])

    # ------------------------------------------------------------------ batches

    def add_batch(
        self,
        fid: str,
        correlation_id: str | None,
        entries: IO[bytes] | bytes | str,
        total: int,
        default_start: str,
        *,
        discard: bool = False,
    ) -> int:
        """Queue a batch for ingestion. ``entries`` is its compact list (``id`` or
        ``id#date``, comma-separated); a file is copied in pieces through SQLite's
        incremental BLOB I/O, so a 10 MB list is never held in memory."""
        state = "discarded" if discard or total == 0 else "pending"
        if isinstance(entries, str):
            entries = entries.encode("utf-8")
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO batches (fid, correlation_id, total, state, default_start, received_at)"
                " VALUES (?,?,?,?,?,?)",
                (fid, correlation_id, total, state, default_start, _utc_now()),
            )
            batch_id = int(cur.lastrowid or 0)
            if state == "discarded":
                return batch_id
            if isinstance(entries, bytes):
                conn.execute(
                    "INSERT INTO batch_files (batch_id, entries) VALUES (?,?)", (batch_id, entries)
                )
                return batch_id
            size = entries.seek(0, 2)
            entries.seek(0)
            conn.execute(
                "INSERT INTO batch_files (batch_id, entries) VALUES (?, zeroblob(?))",
                (batch_id, size),
            )
            with conn.blobopen("batch_files", "entries", batch_id) as blob:
                while chunk := entries.read(COPY_CHUNK):
                    blob.write(chunk)
            return batch_id

    def read_batch_entries(self, batch_id: int, offset: int, size: int) -> bytes:
        """``size`` bytes of a pending batch's entry list from byte ``offset`` (fewer at its
        end; empty once the batch is done). A batch accepted by an older version of the
        sandbox keeps its list in ``batches.entries``."""
        with self._conn() as conn:
            for table in ("batch_files", "batches"):
                try:
                    with conn.blobopen(table, "entries", batch_id, readonly=True) as blob:
                        blob.seek(min(offset, len(blob)))
                        return blob.read(size)
                except sqlite3.OperationalError:  # no such row, or NULL
                    continue
        return b""

    def pending_batches(self) -> list[PendingBatch]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT id, fid, total, done, default_start FROM batches"
                " WHERE state = 'pending' ORDER BY id"
            ).fetchall()
        return [PendingBatch(*row) for row in rows]

    def ingest_chunk(
        self, batch: PendingBatch, start: int, rows: Sequence[tuple[str, str]]
    ) -> bool:
        """Store ``rows`` (customer_id, start_date) as entries ``start..`` of the batch, in one
        transaction with the progress mark. False if another worker (maybe another process on
        the same file) got there first — then nothing is written twice."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT done, state FROM batches WHERE id = ?", (batch.id,)
            ).fetchone()
            if not row or row[1] != "pending" or row[0] != start:
                return False
            conn.executemany(
                "INSERT OR IGNORE INTO relationships (fid, customer_id, start_date) VALUES (?,?,?)",
                ((batch.fid, cid, day) for cid, day in rows),
            )
            done = start + len(rows)
            if done >= batch.total:
                conn.execute(
                    "UPDATE batches SET done = ?, state = 'done', entries = NULL WHERE id = ?",
                    (done, batch.id),
                )
                conn.execute("DELETE FROM batch_files WHERE batch_id = ?", (batch.id,))
            else:
                conn.execute("UPDATE batches SET done = ? WHERE id = ?", (done, batch.id))
            return True

    def pending_count(self) -> int:
        with self._conn() as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM batches WHERE state = 'pending'").fetchone()[0]
            )

    # ------------------------------------------------------------------ accounts

    def register_account(self, account_id: str, orgnr: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO accounts (account_id, orgnr) VALUES (?,?)",
                (account_id, orgnr),
            )

    def account_provider(self, account_id: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT orgnr FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
        return row[0] if row else None


def open_store(data_dir: Path, *, in_memory: bool = False) -> Store:
    return Store(None if in_memory else data_dir / DB_FILE)
