"""Building packs: the manifest lists every file, the zip is deterministic, writes are atomic,
and the builder refuses to sign for the wrong bank or with an unusable certificate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pack_support import (
    OTHER_BANK_ORGNR,
    CaseDraft,
    build_signed_pack,
    make_results_dir,
    shared_pki,
)

from conformance.errors import CredentialError, PackError
from conformance.models import Outcome, RunRecord
from conformance.pack import build as build_module
from conformance.pack import cms
from conformance.pack.build import load_run_record, write_deterministic_zip
from conformance.pack.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    Manifest,
    build_manifest,
    member_files,
    pack_file_name,
)
from conformance.pack.sign import sign_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_results_dir(tmp_path)


def zip_entries(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def test_manifest_lists_every_file_with_hash_and_size(folder):
    (folder / ".run.json.abc.tmp").write_bytes(b"left over by a crash")
    (folder / "c3-epost.eml").write_bytes(b"old e-mail")
    (folder / f"{folder.parent.name}-KFR-integrasjonstest-2020-01-01.zip").write_bytes(b"old")
    record = load_run_record(folder)
    manifest = build_manifest(folder, record)
    on_disk = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix not in {".eml", ".zip"}
    )
    assert [f.path for f in manifest.files] == on_disk
    assert "original/KFR-Integrasjonstester.xlsx" in on_disk and "journal.jsonl" in on_disk
    for entry in manifest.files:
        data = (folder / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.size == len(data)


def test_manifest_content(folder):
    record = load_run_record(folder)
    data = json.loads(build_manifest(folder, record).to_bytes())
    assert (data["format"], data["version"]) == (MANIFEST_FORMAT, MANIFEST_VERSION)
    assert data["bank"] == record.bank
    assert data["environment"]["name"] == "test"
    assert set(data["environment"]) == {"name", "kfr_base_url", "maskinporten_issuer"}
    assert data["sheet"] == record.sheet
    assert data["runner"] == record.runner and data["attestation"] == record.attestation
    assert (data["started_at"], data["finished_at"]) == (record.started_at, record.finished_at)
    assert data["counts"] == record.counts()
    first = data["cases"][0]
    assert set(first) >= {
        "id", "title", "expected", "actual", "outcome", "correlation_ids", "evidence_file",
    }  # fmt: skip
    assert first["correlation_ids"] == record.cases[0].correlation_ids
    assert first["evidence_file"] == "evidence/KFR-01.json"


def test_manifest_bytes_are_canonical(tmp_path):
    folder = make_results_dir(tmp_path, name="Sparebanken Øst")
    manifest = build_manifest(folder, load_run_record(folder))
    raw = manifest.to_bytes()
    assert raw == manifest.to_bytes() and raw.endswith(b"}\n")
    assert Manifest.from_bytes(raw) == manifest
    assert Manifest.from_bytes(raw).to_bytes() == raw
    data = json.loads(raw)
    assert list(data) == sorted(data)  # sorted keys
    assert "Sparebanken Øst".encode() in raw  # UTF-8, not \\u escapes


def test_pack_name_uses_the_run_start_date_in_utc():
    assert pack_file_name("123456785", "2026-03-01T23:30:00Z") == (
        "123456785-KFR-integrasjonstest-2026-03-01.zip"
    )
    # 00:30 in Oslo in winter is still the day before in UTC.
    assert pack_file_name("123456785", "2026-03-02T00:30:00+01:00").endswith("2026-03-01.zip")


def test_build_writes_manifest_signature_pack_and_email(folder):
    result = build_signed_pack(folder, contact="kari@testbank.example")
    assert result.zip_path.name == pack_file_name(
        folder.parent.name, load_run_record(folder).started_at
    )
    assert result.zip_path.parent == folder
    names = [info.filename for info in zip_entries(result.zip_path)]
    assert names == sorted(names)
    assert {"manifest.json", "manifest.json.p7s", "report.html", "evidence/KFR-01.json"} <= set(
        names
    )
    assert not any(n.endswith((".eml", ".zip", ".tmp")) for n in names)
    manifest = json.loads(result.manifest_path.read_bytes())
    assert {f["path"] for f in manifest["files"]} == set(names) - {
        "manifest.json",
        "manifest.json.p7s",
    }
    signed = cms.parse_signed_data(result.signature_path.read_bytes())
    assert cms.check_signature(signed, result.manifest_path.read_bytes()).ok
    assert result.email_path == folder / "c3-epost.eml" and result.blockers == []


def test_zip_metadata_is_fixed(folder):
    result = build_signed_pack(folder)
    for info in zip_entries(result.zip_path):
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.comment == b"" and info.extra == b""


def test_same_folder_gives_the_same_bytes(folder, tmp_path):
    first = build_signed_pack(folder).zip_path.read_bytes()
    signature = (folder / "manifest.json.p7s").read_bytes()
    second = build_signed_pack(folder).zip_path.read_bytes()
    assert first == second
    assert (folder / "manifest.json.p7s").read_bytes() == signature  # kept, not re-signed
    # The zip writer alone: same members, same bytes, whatever the files' own timestamps.
    members = [(name, folder / name) for name in member_files(folder)]
    write_deterministic_zip(tmp_path / "a.zip", members)
    for _, path in members:
        os.utime(path, (1, 1))
    write_deterministic_zip(tmp_path / "b.zip", reversed(members))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_a_changed_folder_is_signed_again(folder):
    first = build_signed_pack(folder)
    old_signature = first.signature_path.read_bytes()
    (folder / "report.html").write_text("<p>ny rapport</p>", encoding="utf-8")
    second = build_signed_pack(folder)
    assert second.signature_path.read_bytes() != old_signature
    signed = cms.parse_signed_data(second.signature_path.read_bytes())
    assert cms.check_signature(signed, second.manifest_path.read_bytes()).ok


def test_an_error_mid_build_leaves_no_half_pack(folder, monkeypatch):
    good = build_signed_pack(folder)
    previous = good.zip_path.read_bytes()
    (folder / "report.html").write_text("<p>endret</p>", encoding="utf-8")
    calls = {"n": 0}
    real_copy = build_module._copy_into

    def failing_copy(source, sink):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_copy(source, sink)

    monkeypatch.setattr(build_module, "_copy_into", failing_copy)
    with pytest.raises(PackError, match="No space left"):
        build_signed_pack(folder)
    assert good.zip_path.read_bytes() == previous  # the old pack is untouched
    assert not list(folder.glob(".*.tmp"))  # the temporary file was cleaned up


def test_a_crash_mid_build_leaves_nothing_under_the_final_name(folder):
    # A real crash: the process dies (no cleanup, no finally) while the zip is written.
    script = f"""
import os, sys
sys.path.insert(0, {str(REPO / "tests")!r})
from pathlib import Path
import pack_support
from conformance.pack import build
real = build._copy_into
count = 0
def dying(source, sink):
    global count
    count += 1
    real(source, sink)
    if count == 2:
        sink.flush()
        os._exit(9)
build._copy_into = dying
pack_support.build_signed_pack(Path({str(folder)!r}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert done.returncode == 9
    record = load_run_record(folder)
    final = folder / pack_file_name(record.bank["orgnr"], record.started_at)
    assert not final.exists()
    leftovers = list(folder.glob(f".{final.name}.*.tmp"))
    assert leftovers  # the half-written file exists only under a hidden temporary name
    # The next build succeeds and never packs the leftover.
    result = build_signed_pack(folder)
    names = {info.filename for info in zip_entries(result.zip_path)}
    assert not any(".tmp" in name for name in names)


def test_refuses_another_banks_certificate(folder):
    with pytest.raises(CredentialError, match=OTHER_BANK_ORGNR):
        build_signed_pack(folder, shared_pki().other_bank)
    assert not (folder / "manifest.json").exists()


def test_refuses_an_expired_certificate(folder):
    with pytest.raises(CredentialError, match="ikke gyldig nå"):
        build_signed_pack(folder, shared_pki().expired)


def test_refuses_a_key_that_is_not_the_certificates():
    pki = shared_pki()
    with pytest.raises(CredentialError, match="hører ikke til sertifikatet"):
        sign_manifest(b"{}", pki.bank.certificate, pki.other_bank.private_key)


def test_refuses_symlinks_in_the_results_folder(folder, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the pack")
    (folder / "evidence" / "link.json").symlink_to(secret)
    with pytest.raises(PackError, match=r"link\.json"):
        build_signed_pack(folder)


def test_not_a_results_folder(tmp_path):
    with pytest.raises(PackError, match=r"run\.json"):
        build_signed_pack(tmp_path)
    (tmp_path / "run.json").write_text("{broken")
    with pytest.raises(PackError, match="skadet"):
        build_signed_pack(tmp_path)


def test_pack_holds_no_secrets(folder):
    result = build_signed_pack(folder)
    with zipfile.ZipFile(result.zip_path) as archive:
        blob = b"".join(archive.read(info) for info in archive.infolist())
    assert b"PRIVATE KEY" not in blob
    key_der = shared_pki().bank.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert key_der[-64:] not in blob


def test_blockers_without_email(tmp_path):
    cases = (CaseDraft("KFR-01"), CaseDraft("KFR-02", outcome=Outcome.FAILED))
    folder = make_results_dir(tmp_path, cases=cases)
    (folder / "c3-epost.eml").write_bytes(b"stale from an earlier build")
    result = build_signed_pack(folder)
    assert result.email_path is None
    assert any("KFR-02" in reason and "feilet" in reason for reason in result.blockers)
    assert not (folder / "c3-epost.eml").exists()  # a stale e-mail does not survive


def test_run_record_round_trip_keeps_confirmation_time(folder):
    record = load_run_record(folder)
    record.cases[-1].confirmed_at = "2026-01-02T03:04:05Z"
    again = RunRecord.from_json(record.to_json())
    assert again.cases[-1].confirmed_at == "2026-01-02T03:04:05Z"
