"""A pack proves; it does not claim. Each forgery a bank could make with its own key —
editing a real, honest results folder and signing it again with its own certificate — is
refused by ``verify`` with exit code 1, naming the check that catches it.

Every forgery starts from the same honest pack (a real sandbox run of the whole sheet,
relabelled as Bits' test environment; see ``tests/real_run.py``), which verifies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pack_support import (
    BANK_ORGNR,
    OTHER_BANK_ORGNR,
    build_signed_pack,
    make_results_dir,
    shared_pki,
)

from conformance.cli import main
from conformance.pack.verify import VerificationPolicy, verify_path

SANDBOX_URL = "http://127.0.0.1:5999/kar-ws/api/v1"
SANDBOX_ISSUER = "http://127.0.0.1:5999/maskinporten/"


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Path:
    return shared_pki().root.write_pem(tmp_path_factory.mktemp("trust") / "ca.pem")


def _policy(**kwargs) -> VerificationPolicy:
    return VerificationPolicy(trust_roots=(shared_pki().root.certificate,), **kwargs)


def _run(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text(encoding="utf-8"))


def _save_run(folder: Path, run: dict) -> None:
    (folder / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")


def _exchanges(folder: Path, case_id: str) -> list[dict]:
    return json.loads((folder / "evidence" / f"{case_id}.json").read_text())["exchanges"]


def _rewrite(folder: Path, case_id: str, edit: Callable[[list[dict]], list[dict] | None]) -> None:
    """Edit a case's exchanges consistently in its evidence file and in the journal."""
    path = folder / "evidence" / f"{case_id}.json"
    document = json.loads(path.read_text())
    document["exchanges"] = edit(document["exchanges"]) or document["exchanges"]
    path.write_text(json.dumps(document))
    journal = folder / "journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    others = [x for x in lines if x.get("case_id") != case_id]
    mine = [x for x in lines if x.get("case_id") == case_id]
    mine = edit(mine) or mine
    journal.write_text("".join(json.dumps(x) + "\n" for x in others + mine))


def _refused(folder: Path, trust: Path, check: str, words: str, capsys, **policy) -> None:
    zip_path = build_signed_pack(folder).zip_path  # the bank's own key: a valid signature
    report = verify_path(zip_path, _policy(**policy))
    reasons = {c.name: c.reason for c in report.failed}
    assert check in reasons, [(c.name, c.reason) for c in report.checks]
    assert words in reasons[check]
    args = ["verify", str(zip_path), "--trust", str(trust)]
    if policy.get("allow_sandbox"):
        args.append("--allow-sandbox")
    if policy.get("expect_sheet_sha256"):
        args += ["--expect-sheet-sha256", policy["expect_sheet_sha256"]]
    assert main(args) == 1
    assert "UGYLDIG" in capsys.readouterr().out


def test_the_honest_pack_verifies(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)
    zip_path = build_signed_pack(folder).zip_path
    report = verify_path(zip_path, _policy(expect_sheet_sha256=_run(folder)["sheet"]["sha256"]))
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    assert main(["verify", str(zip_path), "--trust", str(trust)]) == 0


def test_wrong_answer_in_the_evidence_while_the_run_says_passed(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)

    def answered_200(exchanges: list[dict]) -> None:
        main_end = next(x for x in exchanges if x.get("role") == "main")
        assert main_end["response"]["status"] == 204
        main_end["response"]["status"] = 200

    _rewrite(folder, "KFR-07", answered_200)
    _refused(folder, trust, "verdicts", "KFR-07: pakken sier «OK», bevisene gir «Feilet»", capsys)


def test_a_row_removed_altogether(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)
    run = _run(folder)
    run["cases"] = [c for c in run["cases"] if c["case_id"] != "KFR-16"]
    _save_run(folder, run)
    _rewrite(folder, "KFR-16", lambda exchanges: [])
    (folder / "evidence" / "KFR-16.json").unlink()
    _refused(folder, trust, "rows", "KFR-16 (rad 23) mangler i pakken", capsys,
             expect_sheet_sha256=run["sheet"]["sha256"])


def test_no_evidence_at_all(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)
    run = _run(folder)
    for case in run["cases"]:
        case["evidence_file"] = None
        case["correlation_ids"] = []
    _save_run(folder, run)
    for path in (folder / "evidence").glob("*.json"):
        path.unlink()
    (folder / "journal.jsonl").unlink()
    _refused(folder, trust, "verdicts", "KFR-02 er oppgitt som bestått uten bevis", capsys)


def test_another_rows_exchanges_as_the_delete_rows_evidence(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)
    added = _exchanges(folder, "KFR-02")

    def swapped(exchanges: list[dict]) -> list[dict]:
        return [{**x, "case_id": "KFR-07"} for x in added]

    _rewrite(folder, "KFR-07", swapped)
    # The journal still holds KFR-02's own copies: rename them away so only the swap is seen.
    run = _run(folder)
    for case in run["cases"]:
        if case["case_id"] == "KFR-07":
            case["correlation_ids"] = [x["correlation_id"] for x in added if x.get("correlation_id")]
    _save_run(folder, run)
    _refused(folder, trust, "verdicts", "KFR-07", capsys)


def test_a_sandbox_run_relabelled_as_the_test_environment(tmp_path, trust, capsys):
    # The run was made against a sandbox; the forger rewrites the KFR URLs and the declared
    # environment, but the token requests, Host headers and tokens still say loopback.
    folder = make_results_dir(tmp_path, environment="sandbox", kfr_base_url=SANDBOX_URL,
                              maskinporten_issuer=SANDBOX_ISSUER)
    run = _run(folder)
    run["environment"] = {"name": "test", "kfr_base_url": "https://preprod.api.bits.no/kar-ws/api/v1",
                          "maskinporten_issuer": "https://test.maskinporten.no/"}
    _save_run(folder, run)
    for case in run["cases"]:
        if case.get("evidence_file"):
            def kfr_urls(exchanges: list[dict]) -> None:
                for x in exchanges:
                    x["request"]["url"] = x["request"]["url"].replace(
                        SANDBOX_URL, "https://preprod.api.bits.no/kar-ws/api/v1")
            _rewrite(folder, case["case_id"], kfr_urls)
    _refused(folder, trust, "environment", "tokenforespørselen http://127.0.0.1:5999/maskinporten/token", capsys)


def test_another_banks_run_replayed_under_this_banks_name_and_key(tmp_path, trust, capsys):
    # The run was the other bank's: its fids and tokens name it. Rewriting the fids is easy;
    # the tokens' consumer claim still names the bank that really ran.
    folder = make_results_dir(tmp_path, orgnr=OTHER_BANK_ORGNR)
    run = _run(folder)
    ours = BANK_ORGNR
    run["bank"]["orgnr"] = ours
    _save_run(folder, run)
    for case in run["cases"]:
        if case.get("evidence_file"):
            def fids(exchanges: list[dict]) -> None:
                for x in exchanges:
                    x["request"]["url"] = x["request"]["url"].replace(OTHER_BANK_ORGNR, ours)
            _rewrite(folder, case["case_id"], fids)
    target = folder.parent.parent / ours / folder.name
    target.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(target)
    _refused(target, trust, "environment", f"consumer er «0192:{OTHER_BANK_ORGNR}»", capsys)


def test_an_automated_row_confirmed_as_manual(tmp_path, trust, capsys):
    folder = make_results_dir(tmp_path)
    run = _run(folder)
    for case in run["cases"]:
        if case["case_id"] == "KFR-09":
            case.update(manual=True, confirmed_by="Kari Tester", evidence_file=None,
                        correlation_ids=[], outcome="passed")
    _save_run(folder, run)
    _rewrite(folder, "KFR-09", lambda exchanges: [])
    (folder / "evidence" / "KFR-09.json").unlink()
    _refused(folder, trust, "attested", "KFR-09 (automatisert i arket: trinn end_missing)", capsys)


def test_attested_rows_are_counted_apart(tmp_path):
    folder = make_results_dir(tmp_path)
    report = verify_path(build_signed_pack(folder).zip_path, _policy())
    attested = next(c for c in report.checks if c.name == "attested")
    assert attested.ok and "2 rader er bekreftet av en person" in attested.reason
    assert "KFR-21, KFR-22" in attested.reason
