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
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from conformance.archive.evidence import CorrelationUse, PackEvidence
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
    (
        # v3: what each pack's evidence is made of (CorrelationIDs, evidence-file and
        # response-body hashes), so a pack reusing another's is found; the trust policy
        # each verdict was reached under; every verification, not only the first. Rows
        # from v2 get their evidence from the stored packs when the archive is next opened
        # (``fingerprinted_at`` NULL marks them), and their first verdict becomes their
        # first verification, under a policy nobody recorded (NULL).
        3,
        """
        ALTER TABLE packs ADD COLUMN run_id TEXT;
        ALTER TABLE packs ADD COLUMN tester TEXT;
        ALTER TABLE packs ADD COLUMN policy TEXT;              -- JSON; NULL: not recorded
        ALTER TABLE packs ADD COLUMN cases TEXT NOT NULL DEFAULT '[]';   -- JSON
        ALTER TABLE packs ADD COLUMN fingerprinted_at TEXT;    -- NULL: evidence not indexed
        CREATE TABLE verifications (
            id          INTEGER PRIMARY KEY,
            pack_id     INTEGER NOT NULL REFERENCES packs (id),
            verified_at TEXT NOT NULL,
            verdict     TEXT NOT NULL CHECK (verdict IN ('valid', 'invalid')),
            checks      TEXT NOT NULL DEFAULT '[]',            -- JSON
            policy      TEXT,                                  -- JSON; NULL: not recorded
            origin      TEXT NOT NULL                          -- add, repair, verify-all
        );
        CREATE INDEX verifications_pack ON verifications (pack_id, verified_at);
        INSERT INTO verifications (pack_id, verified_at, verdict, checks, policy, origin)
            SELECT id, added_at, verdict, checks, NULL, origin FROM packs;
        CREATE TABLE correlations (
            pack_id        INTEGER NOT NULL REFERENCES packs (id),
            correlation_id TEXT NOT NULL,                      -- as recorded
            match_key      TEXT NOT NULL,                      -- lower case, for matching
            case_id        TEXT,
            time           TEXT,
            operation      TEXT,
            status         INTEGER,
            source         TEXT NOT NULL                       -- evidence, or manifest only
        );
        CREATE INDEX correlations_key ON correlations (match_key);
        CREATE INDEX correlations_pack ON correlations (pack_id);
        CREATE TABLE fingerprints (
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            kind    TEXT NOT NULL,                             -- evidence_file, response_body
            sha256  TEXT NOT NULL,
            place   TEXT NOT NULL,                             -- member name or case id
            PRIMARY KEY (pack_id, kind, sha256)
        );
        CREATE INDEX fingerprints_value ON fingerprints (kind, sha256);
        CREATE TABLE certificates (
            sha256     TEXT PRIMARY KEY,                       -- of the DER bytes
            subject    TEXT NOT NULL,
            der        BLOB NOT NULL,
            first_seen TEXT NOT NULL
        );
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class ArchiveError(ConformanceError):
    """The archive folder or its index cannot be used."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Verification:
    """One verification of a pack: when, under which policy, with what result."""

    verified_at: str
    verdict: str
    checks: list[dict[str, Any]]
    policy: dict[str, Any] | None  # see ``policy.py``; None: not recorded (before v3)
    origin: str  # add, repair, verify-all

    @property
    def is_valid(self) -> bool:
        return self.verdict == VALID

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c.get("ok")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PackEntry:
    """One archived pack: what the index knows about it. ``verdict``, ``checks`` and
    ``policy`` are from when it was added; ``latest`` is its newest verification."""

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
    run_id: str | None = None
    tester: str | None = None
    policy: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = field(default_factory=list)  # the manifest's rows
    fingerprinted_at: str | None = None
    id: int | None = None
    latest: Verification | None = None  # read from ``verifications``
    evidence: PackEvidence | None = field(default=None, repr=False)  # only while adding

    @property
    def is_valid(self) -> bool:
        return self.verdict == VALID

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c.get("ok")]

    @property
    def current(self) -> Verification:
        """The newest verification (the first one when no other was recorded)."""
        if self.latest is not None:
            return self.latest
        return Verification(self.added_at, self.verdict, self.checks, self.policy, self.origin)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        data["latest"] = self.current.to_dict()
        return data


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
    "run_id",
    "tester",
    "policy",
    "cases",
    "fingerprinted_at",
)
_JSON_COLUMNS = {"counts": "{}", "checks": "[]", "cases": "[]", "policy": None}


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _load(text: str | None, default: str | None) -> Any:
    if text is None:
        return None if default is None else json.loads(default)
    return json.loads(text)


def _to_row(entry: PackEntry) -> tuple[Any, ...]:
    values = []
    for name in _COLUMNS:
        value = getattr(entry, name)
        if name in _JSON_COLUMNS:
            value = _dump(value)
        values.append(value)
    return tuple(values)


def _from_row(row: sqlite3.Row) -> PackEntry:
    data = {name: row[name] for name in _COLUMNS}
    for name, default in _JSON_COLUMNS.items():
        data[name] = _load(data[name], default)
    entry = PackEntry(id=row["id"], **data)
    if row["v_verified_at"] is not None:  # every query selects through ``_SELECT``
        entry.latest = Verification(
            verified_at=row["v_verified_at"],
            verdict=row["v_verdict"],
            checks=_load(row["v_checks"], "[]"),
            policy=_load(row["v_policy"], None),
            origin=row["v_origin"],
        )
    return entry


# A pack with its newest verification (latest time, then latest row).
_SELECT = """
    SELECT p.*, v.verified_at AS v_verified_at, v.verdict AS v_verdict, v.checks AS v_checks,
           v.policy AS v_policy, v.origin AS v_origin
    FROM packs p
    LEFT JOIN verifications v ON v.id = (
        SELECT id FROM verifications WHERE pack_id = p.id
        ORDER BY verified_at DESC, id DESC LIMIT 1)
"""


@dataclass(frozen=True)
class SharedEvidence:
    """How much of its evidence pack ``pack_id`` shares with pack ``other_id``."""

    pack_id: int
    other_id: int
    correlation_ids: int = 0
    evidence_files: int = 0
    response_bodies: int = 0


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

    def _one(self, where: str, value: Any) -> PackEntry | None:
        row = self._conn.execute(f"{_SELECT} WHERE {where}", (value,)).fetchone()
        return _from_row(row) if row else None

    def by_sha256(self, sha256: str) -> PackEntry | None:
        return self._one("p.sha256 = ?", sha256)

    def by_path(self, path: str) -> PackEntry | None:
        return self._one("p.path = ?", path)

    def by_id(self, pack_id: int) -> PackEntry | None:
        return self._one("p.id = ?", pack_id)

    def entries(
        self,
        *,
        bank: str | None = None,
        since: str | None = None,
        status: str | None = None,
    ) -> list[PackEntry]:
        """Packs oldest run first. ``since`` (``YYYY-MM-DD``) compares with the run's start,
        or with the time it was added when the pack could not be read. ``status`` is the
        newest verification's verdict."""
        where, params = [], []
        if bank is not None:
            where.append("p.orgnr = ?")
            params.append(bank)
        if since is not None:
            where.append("COALESCE(p.run_started_at, p.added_at) >= ?")
            params.append(since)
        if status is not None:
            if status not in VERDICTS:
                raise ArchiveError(f"Ukjent status {status!r}: bruk valid eller invalid.")
            where.append("COALESCE(v.verdict, p.verdict) = ?")
            params.append(status)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY COALESCE(p.run_started_at, p.added_at), p.id"
        return [_from_row(r) for r in self._conn.execute(sql, params)]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM packs").fetchone()[0])

    def verifications(self, pack_id: int) -> list[Verification]:
        """Every verification of a pack, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM verifications WHERE pack_id = ? ORDER BY verified_at, id", (pack_id,)
        )
        return [
            Verification(
                r["verified_at"],
                r["verdict"],
                _load(r["checks"], "[]"),
                _load(r["policy"], None),
                r["origin"],
            )
            for r in rows
        ]

    def correlations(self, pack_id: int) -> list[CorrelationUse]:
        rows = self._conn.execute(
            "SELECT * FROM correlations WHERE pack_id = ? ORDER BY time, correlation_id",
            (pack_id,),
        )
        return [
            CorrelationUse(
                r["correlation_id"],
                r["case_id"] or "",
                r["time"] or "",
                r["operation"] or "",
                r["status"],
                r["source"],
            )
            for r in rows
        ]

    def shared_evidence(self, pack_id: int | None = None) -> list[SharedEvidence]:
        """Pairs of packs with CorrelationIDs or fingerprints in common, in both directions;
        with ``pack_id``, only the pairs from that pack (one index look-up per value)."""
        only = "" if pack_id is None else "WHERE a.pack_id = :id"
        sql = f"""
            SELECT a.pack_id AS pack_id, b.pack_id AS other_id,
                   'correlation_ids' AS kind, COUNT(DISTINCT a.match_key) AS n
            FROM correlations a JOIN correlations b
              ON b.match_key = a.match_key AND b.pack_id != a.pack_id
            {only}
            GROUP BY a.pack_id, b.pack_id
            UNION ALL
            SELECT a.pack_id, b.pack_id, a.kind, COUNT(*)
            FROM fingerprints a JOIN fingerprints b
              ON b.kind = a.kind AND b.sha256 = a.sha256 AND b.pack_id != a.pack_id
            {only}
            GROUP BY a.pack_id, b.pack_id, a.kind
        """
        pairs: dict[tuple[int, int], dict[str, int]] = {}
        kinds = {"correlation_ids", "evidence_file", "response_body"}
        for row in self._conn.execute(sql, {"id": pack_id}):
            if row["kind"] in kinds:
                pairs.setdefault((row["pack_id"], row["other_id"]), {})[row["kind"]] = row["n"]
        return [
            SharedEvidence(
                a,
                b,
                correlation_ids=n.get("correlation_ids", 0),
                evidence_files=n.get("evidence_file", 0),
                response_bodies=n.get("response_body", 0),
            )
            for (a, b), n in sorted(pairs.items())
        ]

    def certificates(self) -> dict[str, Any]:
        """Every certificate a recorded policy named, by SHA-256 fingerprint."""
        from cryptography import x509

        out = {}
        for row in self._conn.execute("SELECT sha256, der FROM certificates"):
            out[row["sha256"]] = x509.load_der_x509_certificate(bytes(row["der"]))
        return out

    def unfingerprinted(self) -> list[PackEntry]:
        return [
            _from_row(r)
            for r in self._conn.execute(f"{_SELECT} WHERE p.fingerprinted_at IS NULL ORDER BY p.id")
        ]

    # -- writes (inside ``transaction()``) -------------------------------------------------

    def insert(self, entry: PackEntry) -> PackEntry:
        """The pack's row, its first verification and, when given, its evidence."""
        if entry.evidence is not None and entry.fingerprinted_at is None:
            entry.fingerprinted_at = utc_now()
        placeholders = ", ".join("?" for _ in _COLUMNS)
        cur = self._conn.execute(
            f"INSERT INTO packs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", _to_row(entry)
        )
        entry.id = cur.lastrowid
        assert entry.id is not None
        self.add_verification(entry.id, entry.current)
        entry.latest = entry.current
        if entry.evidence is not None:
            self.set_evidence(entry.id, entry.evidence)
        return entry

    def add_verification(self, pack_id: int, verification: Verification) -> None:
        self._conn.execute(
            "INSERT INTO verifications (pack_id, verified_at, verdict, checks, policy, origin) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                pack_id,
                verification.verified_at,
                verification.verdict,
                _dump(verification.checks),
                _dump(verification.policy),
                verification.origin,
            ),
        )

    def set_evidence(self, pack_id: int, evidence: PackEvidence) -> None:
        """Replace what the index knows about a pack's evidence."""
        self._conn.execute("DELETE FROM correlations WHERE pack_id = ?", (pack_id,))
        self._conn.execute("DELETE FROM fingerprints WHERE pack_id = ?", (pack_id,))
        self._conn.executemany(
            "INSERT INTO correlations (pack_id, correlation_id, match_key, case_id, time, "
            "operation, status, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    pack_id,
                    c.correlation_id,
                    c.match_key,
                    c.case_id,
                    c.time,
                    c.operation,
                    c.status,
                    c.source,
                )
                for c in evidence.correlations
            ],
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO fingerprints (pack_id, kind, sha256, place) VALUES (?, ?, ?, ?)",
            [(pack_id, f.kind, f.sha256, f.place) for f in evidence.fingerprints],
        )
        self._conn.execute(
            "UPDATE packs SET fingerprinted_at = ? WHERE id = ?", (utc_now(), pack_id)
        )

    def set_facts(
        self, pack_id: int, *, run_id: str | None, tester: str | None, cases: list[dict[str, Any]]
    ) -> None:
        """Facts v3 reads from the manifest, filled in for rows added before it."""
        self._conn.execute(
            "UPDATE packs SET run_id = ?, tester = ?, cases = ? WHERE id = ?",
            (run_id, tester, _dump(cases), pack_id),
        )

    def add_certificates(self, certificates: Iterable[Any]) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        for certificate in certificates:
            der = certificate.public_bytes(Encoding.DER)
            self._conn.execute(
                "INSERT OR IGNORE INTO certificates (sha256, subject, der, first_seen) "
                "VALUES (?, ?, ?, ?)",
                (
                    hashlib.sha256(der).hexdigest(),
                    certificate.subject.rfc4514_string(),
                    der,
                    utc_now(),
                ),
            )

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
