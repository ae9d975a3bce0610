"""End to end: real sandbox runs of the bundled sheet for two banks, then the archive.

``pytest --bank=<orgnr>`` runs against the embedded sandbox (its own test CA) and leaves a
results folder with the signed pack and report. The manual rows are confirmed with
``--manual`` so every case passes; the packs still come from the sandbox, so they verify
only with ``--allow-sandbox`` and the sandbox CA trusted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from archive_support import rewrite_run
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.archive.store import Archive
from conformance.cli import main
from conformance.home import HOME_ENV
from conformance.ids import synthetic_orgnr
from conformance.pack.build import build_pack
from conformance.pack.verify import VerificationPolicy, verify_pack_bytes

REPO = Path(__file__).resolve().parents[1]
# Sandbox runs use the tool's own reconstructed sheet, which verify refuses unless told.
SANDBOX_OK = ["--allow-sandbox", "--allow-bundled-sheet"]
BANK_ORGNRS = (synthetic_orgnr(random.Random(8101)), synthetic_orgnr(random.Random(8102)))


def _sandbox_run(orgnr: str, home: Path, reports: Path, manual: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--bank={orgnr}",
            "--reports-dir",
            str(reports),
            "--manual",
            str(manual),
            "--bank-name",
            f"Sandkassebank {orgnr}",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
        ],
        cwd=REPO,
        env={**os.environ, HOME_ENV: str(home), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_real_sandbox_runs_are_archived_listed_and_published(tmp_path, capsys):
    home, reports = tmp_path / "home", tmp_path / "reports"
    manual = tmp_path / "manuelle.json"
    manual.write_text(
        json.dumps(
            {
                case: {"status": "OK", "comment": "Kontrollert i testmiljøet", "by": "Kari Tester"}
                for case in ("KFR-21", "KFR-22")
            }
        )
    )
    for orgnr in BANK_ORGNRS:
        _sandbox_run(orgnr, home, reports, manual)
    ca = home / "sandbox" / "ca-cert.pem"
    arkiv = tmp_path / "arkiv"
    trust = ["--archive", str(arkiv), "--trust", str(ca)]

    # Without --allow-sandbox: archived all the same, marked invalid for the environment.
    assert main(["archive", "add", *trust, str(reports / BANK_ORGNRS[0])]) == 0
    out = capsys.readouterr().out
    assert "UGYLDIG" in out and "1 lagt til" in out

    # The whole reports folder with --allow-sandbox: the other bank's pack is new, the
    # first one a duplicate.
    assert main(["archive", "add", *trust, *SANDBOX_OK, str(reports)]) == 0
    out = capsys.readouterr().out
    assert "1 lagt til" in out and "1 fantes fra før" in out

    policy = VerificationPolicy(
        trust_roots=tuple(x509.load_pem_x509_certificates(ca.read_bytes())),
        allow_sandbox=True,
        allow_bundled_sheet=True,
    )
    with Archive.open(arkiv) as archive:
        entries = {e.orgnr: e for e in archive.entries()}
        assert set(entries) == set(BANK_ORGNRS)
        first, second = entries[BANK_ORGNRS[0]], entries[BANK_ORGNRS[1]]
        assert "environment" in {c["name"] for c in first.failed_checks}
        assert "environment" not in {c["name"] for c in second.failed_checks}
        assert second.environment == "sandbox" and second.bank_name.startswith("Sandkassebank")
        assert second.counts["passed"] == second.counts["total"] >= 20
        # the archive's verdict is the verifier's verdict on the same bytes
        verdict = verify_pack_bytes(archive.file_of(second).read_bytes(), policy)
        assert second.is_valid is verdict.ok
        assert [c["name"] for c in second.failed_checks] == [c.name for c in verdict.failed]

    assert main(["archive", "list", "--archive", str(arkiv), "--json"]) == 0
    assert sorted(e["orgnr"] for e in json.loads(capsys.readouterr().out)) == sorted(BANK_ORGNRS)

    # Re-verified with the options used when adding: nothing has changed.
    assert main(["archive", "verify-all", *trust, *SANDBOX_OK]) == 0
    capsys.readouterr()
    # Re-verified as onboarding evidence (only today's options, no sandbox): the
    # environment check now fails.
    main(["archive", "verify-all", *trust, "--json", "--ignore-stored-policy"])
    audit = {p["orgnr"]: p for p in json.loads(capsys.readouterr().out)["packs"]}
    today = {c["name"]: c["ok"] for c in audit[BANK_ORGNRS[1]]["checks"]}
    assert today["environment"] is False

    site = tmp_path / "nettsted"
    assert main(["archive", "html", "--archive", str(arkiv), str(site)]) == 0
    # The second pack's newest verification (above, without --allow-sandbox) failed: its
    # report is no longer offered. The first one was never valid.
    assert "2 pakker, 2 banker, 0 rapporter" in capsys.readouterr().out
    page = (site / "pakke" / second.sha256[:16] / "index.html").read_text(encoding="utf-8")
    assert "SANDBOX" not in page and "srcdoc" not in page
    assert f"{second.counts['passed']} av {second.counts['total']} OK" in page

    # The first bank's run, re-signed as the second bank's with the second bank's own
    # sandbox key and fresh CorrelationIDs: it verifies, and KFR's answers give it away.
    first_run = next((reports / BANK_ORGNRS[0]).iterdir())
    forged_dir = rewrite_run(
        first_run,
        BANK_ORGNRS[1],
        f"Sandkassebank {BANK_ORGNRS[1]}",
        tmp_path / "forfalsket",
        fresh_correlation_ids=True,
    )
    keys = home / "sandbox" / "banks" / BANK_ORGNRS[1]
    forged = build_pack(
        forged_dir,
        certificate=x509.load_pem_x509_certificate(
            (keys / f"{BANK_ORGNRS[1]}-cert.pem").read_bytes()
        ),
        private_key=serialization.load_pem_private_key(
            (keys / f"{BANK_ORGNRS[1]}-key.pem").read_bytes(), None
        ),
    ).zip_path
    assert verify_pack_bytes(forged.read_bytes(), policy).ok
    assert main(["archive", "add", *trust, *SANDBOX_OK, "--json", str(forged)]) == 0
    [added] = json.loads(capsys.readouterr().out)
    assert added["standing"] == "replayed"
    [link] = [m for m in added["links"] if m["flagged"]]
    assert link["other_orgnr"] == BANK_ORGNRS[0]
    assert link["correlation_ids"] == 0  # all fresh
    assert link["response_bodies"] >= 3  # KFR's error answers, with KFR's timestamps
    # The two honest runs share nothing.
    with Archive.open(arkiv) as archive:
        honest = [e.id for e in archive.entries() if e.sha256 != added["entry"]["sha256"]]
        assert not [
            s for s in archive.index.shared_evidence() if {s.pack_id, s.other_id} <= set(honest)
        ]
