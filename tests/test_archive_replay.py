"""Cross-pack replay: another run's evidence re-signed under a second bank's orgnr and key.

The replayed pack passes every check of the verifier (its signature is the second bank's
own, every fid in its evidence is the second bank's), so only the archive, which sees
both packs, can tell. Both packs of the pair are flagged, each naming the other.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from archive_support import BANKS, Bank, cached_pack_set, make_pack, replay_as, with_kfr_answers

from conformance.archive import replay
from conformance.archive.index import INDEX_FILE, MIGRATIONS, migrate
from conformance.archive.site import build_site
from conformance.archive.store import Archive
from conformance.cli import main
from conformance.pack.verify import verify_pack_bytes

FJORD, NORDLYS, _ = BANKS


@pytest.fixture(scope="session")
def packs(tmp_path_factory):
    return cached_pack_set(tmp_path_factory)


@pytest.fixture(scope="session")
def replays(packs, tmp_path_factory):
    """fjord-1's evidence passed off as Nordlys' (CorrelationIDs kept), and a pack with
    KFR answers replayed with every CorrelationID made fresh (only the answers remain)."""
    work = tmp_path_factory.mktemp("replays")
    answered = make_pack(
        work / "runs",
        packs.ca,
        FJORD,
        started_at=dt.datetime(2026, 10, 20, 9, 0, tzinfo=dt.UTC),
        seed=21,
        prepare=lambda folder: with_kfr_answers(folder, seed=21),
    )
    return {
        "copied": replay_as(packs.packs["fjord-1"], NORDLYS, packs.ca, work / "forged"),
        "answered": answered,
        "answers-only": replay_as(
            answered, NORDLYS, packs.ca, work / "forged-fresh", fresh_correlation_ids=True
        ),
    }


def correlation_count(packs, zip_path: Path) -> int:
    """How many CorrelationIDs the verifier finds in a pack's evidence."""
    report = verify_pack_bytes(zip_path.read_bytes(), packs.policy())
    return len({c.correlation_id.lower() for c in report.correlations})


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_replayed_pack_passes_every_check_of_the_verifier(packs, replays):
    report = verify_pack_bytes(replays["copied"].read_bytes(), packs.policy())
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.manifest.bank_orgnr == NORDLYS.orgnr


def test_replay_across_two_banks_is_flagged_both_ways(capsys, packs, replays, tmp_path):
    arkiv = tmp_path / "arkiv"
    base = ["archive", "add", "--archive", str(arkiv), "--trust", str(packs.ca_pem)]
    code, out, _ = run(capsys, *base, str(packs.packs["fjord-1"]))
    assert code == 0 and "GJENBRUKT" not in out
    code, out, _ = run(capsys, *base, "--json", str(replays["copied"]))
    [added] = json.loads(out)
    assert code == 0 and added["action"] == "added"
    assert added["standing"] == "replayed" and added["replayed"] is True
    [link] = added["links"]
    assert link["other_path"].startswith(f"{FJORD.orgnr}/") and link["other_orgnr"] == FJORD.orgnr
    ids = correlation_count(packs, packs.packs["fjord-1"])
    assert ids > 0 and link["correlation_ids"] == ids  # every one of them
    assert link["flagged"] and not link["added_first"]

    # The list: both packs flagged, each naming the other; plain "valid" for neither.
    code, out, _ = run(capsys, "archive", "list", "--archive", str(arkiv), "--json")
    listed = {e["orgnr"]: e for e in json.loads(out)}
    original, forged = listed[FJORD.orgnr], listed[NORDLYS.orgnr]
    assert original["latest"]["verdict"] == forged["latest"]["verdict"] == "valid"
    assert original["standing"] == forged["standing"] == "replayed"
    assert original["links"][0]["other_path"] == forged["path"]
    assert forged["links"][0]["other_path"] == original["path"]
    assert original["links"][0]["added_first"] and not forged["links"][0]["added_first"]

    code, out, _ = run(capsys, "archive", "list", "--archive", str(arkiv))
    assert out.count("GYLDIG SIGNATUR – GJENBRUKT BEVIS") == 2
    assert f"GJENBRUKT BEVIS: deler {ids} CorrelationID-er" in out
    assert "0 gyldige, 2 gyldig signert med gjenbrukt bevis" in out

    # verify-all: still verifies, but is a problem, both ways.
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {p["status"] for p in report["packs"]} == {"replayed"}
    assert all(p["verdict"] == "valid" and p["replayed"] for p in report["packs"])

    # The site: both pages say so and link to each other.
    site = tmp_path / "nettsted"
    with Archive.open(arkiv) as archive:
        build_site(archive, site)
        entries = archive.entries()
    for entry, other in ((entries[0], entries[1]), (entries[1], entries[0])):
        page = (site / "pakke" / entry.sha256[:16] / "index.html").read_text(encoding="utf-8")
        assert "Gyldig signatur – gjenbrukt bevis" in page
        assert f'href="../../pakke/{other.sha256[:16]}/index.html">{other.path}</a>' in page
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.count('data-status="replayed" data-replayed') == 2


def test_replay_with_fresh_correlation_ids_is_caught_by_kfrs_answers(
    capsys, packs, replays, tmp_path
):
    arkiv = tmp_path / "arkiv"
    base = ["archive", "add", "--archive", str(arkiv), "--trust", str(packs.ca_pem)]
    run(capsys, *base, str(replays["answered"]), str(packs.packs["fjord-2"]))
    code, out, _ = run(capsys, *base, "--json", str(replays["answers-only"]))
    [added] = json.loads(out)
    assert added["entry"]["verdict"] == "valid"
    [link] = added["links"]
    assert (link["correlation_ids"], link["evidence_files"]) == (0, 0)
    assert link["response_bodies"] >= replay.MIN_SHARED_BODIES and link["flagged"]

    code, out, _ = run(capsys, "archive", "list", "--archive", str(arkiv), "--replayed", "--json")
    assert sorted(e["orgnr"] for e in json.loads(out)) == sorted([FJORD.orgnr, NORDLYS.orgnr])
    # fjord-2 shares nothing: not listed as replayed, and plainly valid.
    code, out, _ = run(
        capsys, "archive", "list", "--archive", str(arkiv), "--status", "valid", "--json"
    )
    assert code == 0
    assert [e["run_id"] for e in json.loads(out)] == [
        json.loads(_manifest(packs.packs["fjord-2"]))["run_id"]
    ]


def _manifest(zip_path: Path) -> bytes:
    from pack_support import read_zip

    return read_zip(zip_path.read_bytes())["manifest.json"]


def test_honest_runs_share_nothing(capsys, packs, tmp_path):
    arkiv = tmp_path / "arkiv"
    code, out, _ = run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        *(str(packs.packs[name]) for name in ("fjord-1", "fjord-2", "nordlys-1", "fjord-3-email")),
    )
    assert code == 0 and "GJENBRUKT" not in out and "Merk" not in out
    with Archive.open(arkiv) as archive:
        assert replay.links(archive.index) == {}


def test_an_archive_from_before_replay_detection_is_migrated_and_checked(packs, replays, tmp_path):
    """A v2 archive (rows and files as the old code left them) gets its evidence indexed
    from the stored packs the first time it is opened, and the replay shows."""
    arkiv = tmp_path / "arkiv"
    arkiv.mkdir()
    conn = sqlite3.connect(arkiv / INDEX_FILE, isolation_level=None)
    migrate(conn, MIGRATIONS[:2])
    for zip_path, bank in ((packs.packs["fjord-1"], FJORD), (replays["copied"], NORDLYS)):
        folder = arkiv / bank.orgnr
        folder.mkdir()
        data = zip_path.read_bytes()
        (folder / zip_path.name).write_bytes(data)

        conn.execute(
            "INSERT INTO packs (sha256, path, size, source_name, orgnr, verdict, checks, added_at) "
            "VALUES (?, ?, ?, ?, ?, 'valid', '[]', '2026-10-01T00:00:00Z')",
            (
                hashlib.sha256(data).hexdigest(),
                f"{bank.orgnr}/{zip_path.name}",
                len(data),
                zip_path.name,
                bank.orgnr,
            ),
        )
    conn.close()

    with Archive.open(arkiv) as archive:
        assert archive.index.schema_version == MIGRATIONS[-1][0]
        entries = archive.entries()
        assert all(e.fingerprinted_at and e.run_id for e in entries)
        assert all(e.policy is None for e in entries)  # nobody recorded it then
        links = replay.links(archive.index)
        assert {len(replay.flagged(v)) for v in links.values()} == {1}
        assert len(links) == 2
        # The old verdict is now the first recorded verification.
        assert [v.origin for v in archive.index.verifications(entries[0].id)] == ["add"]


def test_export_correlations_covers_the_archive_and_is_formula_safe(
    capsys, packs, replays, tmp_path
):
    arkiv = tmp_path / "arkiv"
    formula_bank = Bank(FJORD.orgnr, '=HYPERLINK("http://x")', FJORD.key_index)
    odd = make_pack(
        tmp_path / "runs",
        packs.ca,
        formula_bank,
        started_at=dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC),
        seed=33,
    )
    run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        str(packs.packs["fjord-1"]),
        str(replays["copied"]),
        str(odd),
    )
    out_csv = tmp_path / "ids.csv"
    code, out, _ = run(
        capsys, "archive", "export-correlations", "--archive", str(arkiv), str(out_csv)
    )
    counts = {
        name: correlation_count(packs, path)
        for name, path in (
            ("fjord", packs.packs["fjord-1"]),
            ("forged", replays["copied"]),
            ("odd", odd),
        )
    }
    total = sum(counts.values())
    assert code == 0 and f"{total} CorrelationID-er fra 3 pakker" in out
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert len(rows) == total
    assert {r["orgnr"] for r in rows} == {FJORD.orgnr, NORDLYS.orgnr}
    assert all(r["run_id"] and r["pack"] and r["operation"] for r in rows)
    odd_rows = [r for r in rows if r["pack"].endswith("2026-11-02.zip")]
    assert {r["bank_name"] for r in odd_rows} == {'\'=HYPERLINK("http://x")'}
    assert {r["replayed"] for r in rows if r["orgnr"] == NORDLYS.orgnr} == {"ja"}
    # The same IDs the verifier reports for each pack, nothing more.
    for name in ("fjord-1",):
        ids = {
            c.correlation_id
            for c in verify_pack_bytes(packs.packs[name].read_bytes(), packs.policy()).correlations
        }
        assert ids <= {r["correlation_id"] for r in rows}

    code, out, _ = run(
        capsys, "archive", "export-correlations", "--archive", str(arkiv), "--replayed", "-"
    )
    replayed = counts["fjord"] + counts["forged"]
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == replayed


def test_export_to_a_path_that_cannot_be_written_is_a_clear_error(capsys, packs, tmp_path):
    arkiv = tmp_path / "arkiv"
    run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        str(packs.packs["fjord-1"]),
    )
    (tmp_path / "en-fil").write_text("ikke en mappe")
    target = tmp_path / "en-fil" / "ids.csv"
    code, _, err = run(
        capsys, "archive", "export-correlations", "--archive", str(arkiv), str(target)
    )
    assert code == 2 and "Kan ikke skrive" in err and "Traceback" not in err
    assert (tmp_path / "en-fil").read_text() == "ikke en mappe"
