"""The archive index: schema version, forward migrations, refusing what it cannot read."""

from __future__ import annotations

import sqlite3

import pytest

from conformance.archive.index import (
    INDEX_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    ArchiveError,
    PackEntry,
    migrate,
    open_index,
)


def _entry(sha: str = "a" * 64, path: str = "910000004/pakke.zip") -> PackEntry:
    return PackEntry(
        sha256=sha,
        path=path,
        size=10,
        source_name="pakke.zip",
        verdict="valid",
        added_at="2026-11-23T09:00:00Z",
        orgnr="910000004",
        counts={"passed": 5, "total": 5},
        checks=[{"name": "signature", "ok": True, "reason": "ok"}],
    )


def test_new_index_is_at_the_newest_version_and_round_trips_an_entry(tmp_path):
    with open_index(tmp_path, create=True) as index:
        assert index.schema_version == SCHEMA_VERSION == MIGRATIONS[-1][0]
        with index.transaction():
            index.insert(_entry())
        stored = index.by_sha256("a" * 64)
    assert stored is not None
    assert stored.counts == {"passed": 5, "total": 5}
    assert stored.checks == [{"name": "signature", "ok": True, "reason": "ok"}]
    assert stored.state == "present" and stored.origin == "add"


def test_a_version_1_index_is_migrated_and_keeps_its_rows(tmp_path):
    conn = sqlite3.connect(tmp_path / INDEX_FILE, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO packs (sha256, path, size, source_name, verdict, added_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ("b" * 64, "910000004/gammel.zip", 7, "gammel.zip", "invalid", "2025-01-01T00:00:00Z"),
    )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    with open_index(tmp_path) as index:
        assert index.schema_version == SCHEMA_VERSION
        old = index.by_sha256("b" * 64)
    assert old is not None and old.path == "910000004/gammel.zip"
    assert old.state == "present"  # the v2 column got its default


def test_an_index_from_a_newer_version_is_refused_not_guessed_at(tmp_path):
    conn = sqlite3.connect(tmp_path / INDEX_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ArchiveError, match=f"skjemaversjon {SCHEMA_VERSION + 1}"):
        open_index(tmp_path)


def test_a_folder_that_is_not_an_archive_is_refused_unless_creating(tmp_path):
    with pytest.raises(ArchiveError, match="ikke et arkiv"):
        open_index(tmp_path / "skrivefeil")
    assert not (tmp_path / "skrivefeil").exists()


def test_a_damaged_index_gives_a_clear_error(tmp_path):
    (tmp_path / INDEX_FILE).write_bytes(b"dette er ikke en database" * 100)
    with pytest.raises(ArchiveError, match=r"skadet|kan ikke"):
        open_index(tmp_path)


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    with open_index(tmp_path, create=True) as index:
        with pytest.raises(RuntimeError), index.transaction():
            index.insert(_entry())
            raise RuntimeError("avbrutt")
        assert index.count() == 0
        with index.transaction():  # and the index is usable afterwards
            index.insert(_entry())
        assert index.count() == 1


def test_filters_by_bank_date_and_status(tmp_path):
    with open_index(tmp_path, create=True) as index, index.transaction():
        a = _entry("a" * 64, "910000004/a.zip")
        a.run_started_at = "2026-01-05T09:00:00Z"
        b = _entry("b" * 64, "920000007/b.zip")
        b.orgnr, b.verdict, b.run_started_at = "920000007", "invalid", "2026-03-01T09:00:00Z"
        index.insert(a)
        index.insert(b)
    with open_index(tmp_path) as index:
        assert [e.path for e in index.entries()] == ["910000004/a.zip", "920000007/b.zip"]
        assert [e.path for e in index.entries(bank="920000007")] == ["920000007/b.zip"]
        assert [e.path for e in index.entries(since="2026-02-01")] == ["920000007/b.zip"]
        assert [e.path for e in index.entries(status="valid")] == ["910000004/a.zip"]
        with pytest.raises(ArchiveError):
            index.entries(status="kanskje")
