"""Adding packs, re-verifying them and repairing the archive (the library API).

The packs are real: built and signed by the pack builder, verified by the pack verifier.
Crash states are made by hand here, one per moment ``add`` can be killed; the random
SIGKILL loop is in ``test_archive_crash.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import stat

import pytest
from archive_support import BANKS, cached_pack_set, overwrite

from conformance.archive import audit
from conformance.archive.index import INDEX_FILE
from conformance.archive.store import ADDED, DUPLICATE, FAILED, RESTORED, Archive


@pytest.fixture(scope="session")
def packs(tmp_path_factory):
    return cached_pack_set(tmp_path_factory)


@pytest.fixture
def archive(tmp_path):
    with Archive.open(tmp_path / "arkiv", create=True) as opened:
        yield opened


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _add_all(archive, packs, **policy):
    return archive.add(list(packs.packs.values()), packs.policy(**policy))


def test_add_verifies_copies_and_indexes_every_pack(archive, packs):
    outcomes = {o.source: o for o in _add_all(archive, packs)}
    assert [o.action for o in outcomes.values()] == [ADDED] * 6

    entries = {e.sha256: e for e in archive.entries()}
    for name, source in packs.packs.items():
        if source.suffix == ".eml":
            continue
        entry = entries[_sha(source)]
        stored = archive.file_of(entry)
        assert stored.read_bytes() == source.read_bytes(), name
        assert stat.S_IMODE(stored.stat().st_mode) == 0o444  # archived packs are read-only
        assert not entry.path.startswith("/") and ".." not in entry.path  # relative
        expected_valid = name in {"fjord-1", "fjord-2", "nordlys-1"}
        assert entry.is_valid is expected_valid, (name, entry.failed_checks)

    fjord = BANKS[0]
    first = entries[_sha(packs.packs["fjord-1"])]
    assert first.path == f"{fjord.orgnr}/{packs.packs['fjord-1'].name}"
    assert first.orgnr == fjord.orgnr and first.bank_name == fjord.name
    assert first.environment == "test" and first.sheet_version == "1.3"
    assert first.counts["passed"] == first.counts["total"] == 22
    assert first.signer_orgnr == fjord.orgnr and "NTRNO-" in first.signer_subject
    assert first.signer_not_before < first.signer_not_after
    assert first.run_started_at.startswith("2026-09-01")


def test_failing_packs_are_archived_with_their_reasons(archive, packs):
    _add_all(archive, packs)
    invalid = {e.source_name: e for e in archive.entries(status="invalid")}
    assert len(invalid) == 2
    sandbox = next(e for e in invalid.values() if e.environment == "sandbox")
    assert [c["name"] for c in sandbox.failed_checks] == ["environment"]
    tampered = next(e for e in invalid.values() if e.environment == "test")
    assert [c["name"] for c in tampered.failed_checks] == ["files"]
    assert "report.html" in tampered.failed_checks[0]["reason"]


def test_same_name_different_pack_gets_a_suffix_and_nothing_is_overwritten(archive, packs):
    _add_all(archive, packs)
    nordlys = BANKS[1].orgnr
    original = packs.packs["nordlys-1"].name
    first, second = f"{nordlys}/{original}", f"{nordlys}/{original[:-4]}-2.zip"
    assert {e.path for e in archive.entries(bank=nordlys)} == {first, second}
    # the first arrival keeps the name; the tampered copy with the same name got the suffix
    assert archive.file_of(archive.index.by_path(first)).read_bytes() == (
        packs.packs["nordlys-1"].read_bytes()
    )
    assert archive.file_of(archive.index.by_path(second)).read_bytes() == (
        packs.packs["nordlys-tampered"].read_bytes()
    )


def test_adding_the_same_pack_twice_is_a_no_op_that_says_so(archive, packs):
    first = archive.add([packs.packs["fjord-1"]], packs.policy())[0]
    before = sorted(p.name for p in archive.file_of(first.entry).parent.iterdir())
    again = archive.add([packs.packs["fjord-1"]], packs.policy())[0]
    assert again.action == DUPLICATE
    assert first.entry.path in again.message and "ingenting" in again.message
    assert archive.index.count() == 1
    assert sorted(p.name for p in archive.file_of(first.entry).parent.iterdir()) == before


def test_an_email_is_accepted_and_named_like_the_pack(archive, packs):
    outcome = archive.add([packs.packs["fjord-3-email"]], packs.policy())[0]
    assert outcome.action == ADDED and outcome.entry.is_valid
    assert outcome.entry.path.endswith("-KFR-integrasjonstest-2026-10-16.zip")


def test_a_folder_is_imported_recursively_and_its_copies_are_duplicates(archive, packs, tmp_path):
    inbox = tmp_path / "innboks"
    packs.copy_to(inbox)
    (inbox / "notat.txt").write_text("ikke en pakke")
    outcomes = archive.add([inbox], packs.policy())
    assert sorted(o.action for o in outcomes) == [ADDED] * 6
    # a results folder holds the pack and the C-3 e-mail carrying the same pack
    runs = packs.packs["fjord-3-email"].parent
    again = archive.add([runs], packs.policy())
    assert {o.action for o in again} == {DUPLICATE}
    assert len(again) == 2


def test_the_archive_itself_is_not_imported_when_inside_the_folder(tmp_path, packs):
    inbox = tmp_path / "innboks"
    packs.copy_to(inbox)
    with Archive.open(inbox / "arkiv", create=True) as archive:
        archive.add([inbox], packs.policy())
        assert [o.action for o in archive.add([inbox], packs.policy())] == [DUPLICATE] * 6


def test_unusable_input_is_archived_as_invalid_and_missing_input_fails(archive, packs, tmp_path):
    junk = tmp_path / "ikke-en-pakke.zip"
    junk.write_bytes(b"hei, dette er ikke en zip")
    mail = tmp_path / "uten-vedlegg.eml"
    mail.write_bytes(b"From: a@example.invalid\r\nSubject: hei\r\n\r\nIngen pakke her.\r\n")
    outcomes = archive.add([junk, mail, tmp_path / "finnes-ikke.zip"], packs.policy())
    assert [o.action for o in outcomes] == [ADDED, FAILED, FAILED]
    stored = outcomes[0].entry
    assert stored.path == "ukjent/ikke-en-pakke.zip" and not stored.is_valid
    assert stored.failed_checks[0]["name"] == "readable"
    assert "vedlegg" in outcomes[1].message.lower() or "pakke" in outcomes[1].message.lower()


def test_hostile_file_names_cannot_escape_the_bank_folder(archive, packs):
    data = packs.packs["fjord-1"].read_bytes()
    outcome = archive.add_bytes(data, "../../etc/passwd", packs.policy())
    assert outcome.entry.path == f"{BANKS[0].orgnr}/passwd.zip"
    assert archive.file_of(outcome.entry).is_relative_to(archive.root)


def test_verify_all_is_clean_after_add(archive, packs):
    _add_all(archive, packs)
    report = audit.verify_all(archive, packs.policy())
    assert report.ok, report.to_dict()
    statuses = sorted(p.status for p in report.packs)
    assert statuses == ["ok"] * 4 + ["still_invalid"] * 2


def test_verify_all_catches_tampering_after_add(archive, packs):
    _add_all(archive, packs)
    entry = archive.entries(status="valid")[0]
    path = archive.file_of(entry)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    overwrite(path, bytes(data))

    report = audit.verify_all(archive, packs.policy())
    assert not report.ok
    [problem] = report.problems
    assert problem.entry.path == entry.path and problem.status == audit.CHANGED
    assert entry.sha256 in problem.details[0]


def test_verify_all_reports_a_missing_file_and_changed_trust(archive, packs):
    _add_all(archive, packs)
    gone = archive.entries(status="valid")[0]
    archive.file_of(gone).unlink()

    report = audit.verify_all(archive, packs.policy(trust_roots=()))  # the CA is no longer trusted
    by_path = {p.entry.path: p.status for p in report.packs}
    assert by_path[gone.path] == audit.MISSING_FILE
    assert sorted(s for p, s in by_path.items() if p != gone.path) == (
        ["no_longer_valid"] * 3 + ["still_invalid"] * 2
    )
    assert [e.path for e in report.consistency.missing_files] == [gone.path]


def test_verify_all_catches_an_edited_index(archive, packs):
    _add_all(archive, packs)
    entry = archive.entries(status="valid")[0]
    conn = sqlite3.connect(archive.root / INDEX_FILE)
    conn.execute("UPDATE packs SET orgnr = '999999999' WHERE id = ?", (entry.id,))
    conn.commit()
    conn.close()
    report = audit.verify_all(archive, packs.policy())
    [problem] = report.problems
    assert problem.status == audit.INDEX_MISMATCH and "orgnr" in problem.details[0]


def test_the_archive_can_be_copied_to_another_place(archive, packs, tmp_path):
    _add_all(archive, packs)
    archive.close()
    moved = tmp_path / "annen-maskin" / "kopi"
    shutil.copytree(archive.root, moved)
    shutil.rmtree(archive.root)
    with Archive.open(moved) as copy:
        assert copy.index.count() == 6
        assert audit.verify_all(copy, packs.policy()).ok


# --- crash states and repair ---------------------------------------------------------------


def _temp_name(entry_sha: str, name: str) -> str:
    return f".{entry_sha}.{name}.part"


def test_repair_completes_a_temp_file_left_before_the_transaction(archive, packs):
    source = packs.packs["nordlys-1"]
    folder = archive.root / BANKS[1].orgnr
    folder.mkdir()
    (folder / _temp_name(_sha(source), source.name)).write_bytes(source.read_bytes())

    state = archive.scan()
    assert not state.ok and len(state.stray_temps) == 1
    assert not audit.verify_all(archive, packs.policy()).ok

    outcome = archive.repair(packs.policy())
    assert "fullført" in outcome.actions[0]
    entry = archive.index.by_sha256(_sha(source))
    assert entry is not None and entry.origin == "repair" and entry.is_valid
    assert archive.file_of(entry).read_bytes() == source.read_bytes()
    assert archive.scan().ok and audit.verify_all(archive, packs.policy()).ok


def test_repair_removes_a_half_written_temp_file(archive, packs):
    source = packs.packs["nordlys-1"]
    folder = archive.root / BANKS[1].orgnr
    folder.mkdir()
    (folder / _temp_name(_sha(source), source.name)).write_bytes(source.read_bytes()[:100])
    outcome = archive.repair(packs.policy())
    assert "ufullstendig" in outcome.actions[0]
    assert archive.index.count() == 0 and list(folder.iterdir()) == []
    assert archive.scan().ok


def test_repair_indexes_a_file_that_lost_its_row(archive, packs):
    """A kill between placing the file and the commit: the file is there, the row rolled back."""
    archive.add([packs.packs["fjord-1"]], packs.policy())
    entry = archive.entries()[0]
    conn = sqlite3.connect(archive.root / INDEX_FILE)
    conn.execute("DELETE FROM packs")
    conn.commit()
    conn.close()
    assert archive.scan().orphan_files == [entry.path]

    outcome = archive.repair(packs.policy())
    assert "fil uten rad" in outcome.actions[0]
    again = archive.index.by_path(entry.path)
    assert again is not None and again.sha256 == entry.sha256 and again.is_valid
    assert audit.verify_all(archive, packs.policy()).ok


def test_repair_removes_a_temp_copy_of_a_pack_already_indexed(archive, packs):
    """A kill after the commit, before the temp name was removed."""
    archive.add([packs.packs["fjord-1"]], packs.policy())
    entry = archive.entries()[0]
    temp = archive.file_of(entry).parent / _temp_name(entry.sha256, "x.zip")
    temp.write_bytes(archive.file_of(entry).read_bytes())
    outcome = archive.repair(packs.policy())
    assert "allerede er arkivert" in outcome.actions[0]
    assert not temp.exists() and archive.scan().ok


def test_repair_marks_a_row_whose_file_is_gone_and_keeps_the_record(archive, packs):
    archive.add([packs.packs["fjord-1"]], packs.policy())
    entry = archive.entries()[0]
    archive.file_of(entry).unlink()
    assert not audit.verify_all(archive, packs.policy()).ok

    archive.repair(packs.policy())
    kept = archive.index.by_sha256(entry.sha256)
    assert kept is not None and kept.state == "missing" and kept.state_changed_at
    report = audit.verify_all(archive, packs.policy())
    assert report.ok and report.packs[0].status == audit.RECORDED_MISSING

    # the pack turns up again: adding it puts it back under its row, no new row
    [outcome] = archive.add([packs.packs["fjord-1"]], packs.policy())
    assert outcome.action == RESTORED and "lagt tilbake" in outcome.message
    assert archive.index.count() == 1
    assert archive.index.by_sha256(entry.sha256).state == "present"
    assert archive.file_of(entry).read_bytes() == packs.packs["fjord-1"].read_bytes()
    assert archive.scan().ok and audit.verify_all(archive, packs.policy()).packs[0].status == "ok"


def test_adding_a_pack_whose_file_vanished_puts_it_back_before_any_repair(archive, packs):
    [first] = archive.add([packs.packs["fjord-1"]], packs.policy())
    archive.file_of(first.entry).unlink()
    [again] = archive.add([packs.packs["fjord-1"]], packs.policy())
    assert again.action == RESTORED and again.entry.path == first.entry.path
    assert archive.file_of(first.entry).read_bytes() == packs.packs["fjord-1"].read_bytes()
    assert archive.scan().ok and archive.index.count() == 1


def test_repair_puts_a_returned_file_back_under_its_row(archive, packs):
    archive.add([packs.packs["fjord-1"]], packs.policy())
    entry = archive.entries()[0]
    data = archive.file_of(entry).read_bytes()
    archive.file_of(entry).unlink()
    archive.repair(packs.policy())
    archive.file_of(entry).write_bytes(data)
    assert archive.scan().orphan_files == [entry.path]
    archive.repair(packs.policy())
    assert archive.index.by_sha256(entry.sha256).state == "present"
    assert archive.scan().ok and audit.verify_all(archive, packs.policy()).ok


def test_repair_never_deletes_a_copy_that_differs(archive, packs):
    """An orphan whose bytes differ from every row is indexed, not removed."""
    archive.add([packs.packs["fjord-1"]], packs.policy())
    folder = archive.root / BANKS[0].orgnr
    stray = folder / "kopi-fra-epost.zip"
    shutil.copyfile(packs.packs["fjord-2"], stray)
    archive.repair(packs.policy())
    assert stray.exists()
    assert archive.index.by_path(f"{BANKS[0].orgnr}/kopi-fra-epost.zip") is not None
