"""The archive remembers the trust policy each pack was judged under; verify-all uses it
(options override it), records every verdict, and the site's "Siste dom" per bank is the
newest verification of the bank's newest pack."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil

import pytest
from archive_support import BANKS, cached_pack_set, make_pack

from conformance.archive.site import build_site
from conformance.archive.store import Archive
from conformance.cli import main

FJORD, NORDLYS, _ = BANKS


@pytest.fixture(scope="session")
def packs(tmp_path_factory):
    return cached_pack_set(tmp_path_factory)


@pytest.fixture(scope="session")
def fjord_sandbox(packs, tmp_path_factory):
    """Fjordbanken's newest run, made in the sandbox (valid only with --allow-sandbox)."""
    return make_pack(
        tmp_path_factory.mktemp("fjord-sandbox"),
        packs.ca,
        FJORD,
        started_at=dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC),
        seed=41,
        environment="sandbox",
    )


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _verify_all(capsys, arkiv, *extra: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), "--json", *extra)
    return code, json.loads(out)


def test_verify_all_uses_each_packs_remembered_policy_and_options_override_it(
    capsys, packs, fjord_sandbox, tmp_path
):
    trust = tmp_path / "ca.pem"
    shutil.copyfile(packs.ca_pem, trust)
    arkiv = tmp_path / "arkiv"
    add = ["archive", "add", "--archive", str(arkiv), "--trust", str(trust)]
    assert run(capsys, *add, "--allow-sandbox", str(fjord_sandbox))[0] == 0
    assert run(capsys, *add, str(packs.packs["fjord-1"]))[0] == 0
    trust.unlink()  # the root is remembered in the archive, not read from the file again

    # Each under its own policy: the sandbox pack with sandbox allowed, the other without.
    code, report = _verify_all(capsys, arkiv)
    assert code == 0, report
    by_env = {p["path"].split("-")[-1]: p for p in report["packs"]}
    assert {p["status"] for p in report["packs"]} == {"ok"}
    assert {p["policy_source"] for p in report["packs"]} == {"stored"}
    policies = {p["policy"]["allow_sandbox"] for p in report["packs"]}
    assert policies == {True, False}
    assert all(len(p["policy"]["trust_roots"]["$certificates"]) == 1 for p in by_env.values())

    # An option given overrides that part only: the remembered root still verifies the
    # signature, and the sheet check is the one that now fails.
    code, report = _verify_all(capsys, arkiv, "--expect-sheet-version", "9.9")
    assert code == 1
    for pack in report["packs"]:
        assert pack["status"] == "no_longer_valid" and pack["policy_source"] == "stored_overridden"
        assert [c["name"] for c in pack["checks"] if not c["ok"]] == ["sheet"]

    # Options alone (no root given): nothing verifies.
    code, report = _verify_all(capsys, arkiv, "--ignore-stored-policy", "--no-record")
    assert code == 1 and {p["policy_source"] for p in report["packs"]} == {"options"}
    assert all(
        "certificate" in [c["name"] for c in p["checks"] if not c["ok"]] for p in report["packs"]
    )
    assert report["recorded"] is False

    with Archive.open(arkiv) as archive:
        for entry in archive.entries():
            history = archive.index.verifications(entry.id)
            # add, verify-all, verify-all --expect-sheet-version; --no-record left none
            assert [v.origin for v in history] == ["add", "verify-all", "verify-all"]
            assert [v.verdict for v in history] == ["valid", "valid", "invalid"]
            assert history[-1].policy["expect_sheet_version"] == "9.9"
            assert entry.current.verdict == "invalid"  # the newest verification
            assert entry.verdict == "valid"  # when it was added


def test_pack_pages_show_run_id_tester_and_policy(capsys, packs, fjord_sandbox, tmp_path):
    arkiv = tmp_path / "arkiv"
    run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        "--allow-sandbox",
        "--expect-sheet-version",
        "1.3",
        str(fjord_sandbox),
    )
    site = tmp_path / "nettsted"
    with Archive.open(arkiv) as archive:
        build_site(archive, site)
        [entry] = archive.entries()
    page = (site / "pakke" / entry.sha256[:16] / "index.html").read_text(encoding="utf-8")
    assert f'Kjørings-ID</dt><dd class="mono">{entry.run_id}</dd>' in page
    assert "Testet av</dt><dd>Kari Tester</dd>" in page
    assert "Sandkassepakker godtatt</dt><dd>ja</dd>" in page
    assert "Krevd arkversjon</dt><dd>1.3</dd>" in page
    assert "CN=KFR Arkiv Test Root CA" in page


def _latest_verdicts(index_html: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-status="(\w+)" data-bank="(\w+)">', index_html)
    return {bank: status for status, bank in rows}


def test_siste_dom_is_the_newest_verification_of_the_newest_pack(
    capsys, packs, fjord_sandbox, tmp_path
):
    arkiv = tmp_path / "arkiv"
    add = [
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        "--allow-sandbox",
    ]
    # Added out of run order: Fjordbanken's newest run first, its older ones after it;
    # Nordlys' valid pack after the invalid one of the same run.
    for name in (
        fjord_sandbox,
        packs.packs["fjord-2"],
        packs.packs["fjord-1"],
        packs.packs["nordlys-tampered"],
        packs.packs["nordlys-1"],
    ):
        assert run(capsys, *add, str(name))[0] == 0
    site = tmp_path / "nettsted"
    with Archive.open(arkiv) as archive:
        build_site(archive, site)
        newest = {e.orgnr: e for e in archive.entries()}[FJORD.orgnr]  # oldest run first
    assert newest.run_started_at.startswith("2026-11-01")
    index = (site / "index.html").read_text(encoding="utf-8")
    assert _latest_verdicts(index) == {FJORD.orgnr: "valid", NORDLYS.orgnr: "valid"}
    assert f'<a href="pakke/{newest.sha256[:16]}/index.html">2026-11-01 09:00 UTC</a>' in index

    # Re-verified as onboarding evidence: the sandbox run is no longer valid. Fjordbanken's
    # older packs still are, and its verdict when added was valid — neither counts.
    code, _ = _verify_all(capsys, arkiv, "--ignore-stored-policy", "--trust", str(packs.ca_pem))
    assert code == 1
    with Archive.open(arkiv) as archive:
        build_site(archive, site)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert _latest_verdicts(index) == {FJORD.orgnr: "invalid", NORDLYS.orgnr: "valid"}


def test_the_newest_pack_is_decided_by_real_time_not_by_text():
    """08:00+02:00 is 06:00 UTC: earlier than 07:00Z although its text sorts later."""
    from conformance.archive.index import PackEntry, Verification
    from conformance.archive.site import PackView, latest_per_bank

    def view(sha: str, started: str, verdict: str) -> PackView:
        entry = PackEntry(
            sha256=sha * 64,
            path=f"{FJORD.orgnr}/{sha}.zip",
            size=1,
            source_name=f"{sha}.zip",
            verdict="valid",
            added_at="2026-10-02T00:00:00Z",
            orgnr=FJORD.orgnr,
            run_started_at=started,
            id=ord(sha),
        )
        entry.latest = Verification("2026-10-03T00:00:00Z", verdict, [], None, "verify-all")
        return PackView(entry, sha * 16, "ok")

    offset = view("a", "2026-10-01T08:00:00+02:00", "valid")
    utc = view("b", "2026-10-01T07:00:00Z", "invalid")
    for views in ([offset, utc], [utc, offset]):
        latest = latest_per_bank(views)[FJORD.orgnr]
        assert latest is utc and latest.status == "invalid"
