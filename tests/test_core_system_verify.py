"""A pack that claims the core system performed a row must show it, or ``verify`` refuses it.

Every forgery starts from the results folder of a real core-system run (the reference core
system through the gateway against the sandbox), is edited the way a bank could edit its
own folder — evidence and journal kept consistent — and signed again with the bank's own
key. ``verify`` then refuses it, naming the ``core_system`` check and what the claim lacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from core_system_support import CoreSystemBank, run_dir_of

from conformance.auth import Credentials
from conformance.ids import synthetic_orgnr
from conformance.pack.build import build_pack
from conformance.pack.verify import VerificationPolicy, VerificationReport, verify_path
from conformance.sandbox import RunningSandbox


def _pytest(bank: CoreSystemBank, reports: Path, home: Path, *extra: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env["KFR_CONFORMANCE_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *bank.args(reports, f"--manual={bank.manual_file()}", *extra)],
        cwd=bank.folder, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_dir_of(reports, bank.orgnr)


@pytest.fixture(scope="module")
def core_bank(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> CoreSystemBank:
    return CoreSystemBank.register(sandbox, tmp_path_factory.mktemp("core-bank"))


@pytest.fixture(scope="module")
def core_run(core_bank: CoreSystemBank, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the whole sheet with the reference core system performing its rows."""
    return _pytest(core_bank, tmp_path_factory.mktemp("reports"), tmp_path_factory.mktemp("home"),
                   "--core-system", core_bank.command(), "--core-system-timeout=3")


def _policy(sandbox: RunningSandbox) -> VerificationPolicy:
    from cryptography import x509

    roots = tuple(x509.load_pem_x509_certificates((sandbox.data_dir / "ca.pem").read_bytes()))
    return VerificationPolicy(trust_roots=roots, allow_sandbox=True, allow_bundled_sheet=True)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / run_dir.name
    shutil.copytree(run_dir, folder)
    for old in folder.glob("*.zip"):
        old.unlink()
    return folder


def _rewrite(folder: Path, case_id: str, edit: Callable[[list[dict]], list[dict]]) -> None:
    """Edit a row's exchanges the same way in its evidence file and in the journal."""
    path = folder / "evidence" / f"{case_id}.json"
    document = json.loads(path.read_text())
    document["exchanges"] = edit(document["exchanges"])
    path.write_text(json.dumps(document, ensure_ascii=False))
    journal = folder / "journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    others = [x for x in lines if x.get("case_id") != case_id]
    journal.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                               for x in others + edit([x for x in lines if x.get("case_id") == case_id])))


def _edit_run(folder: Path, case_id: str, **fields: object) -> None:
    path = folder / "run.json"
    run = json.loads(path.read_text())
    for case in run["cases"]:
        if case["case_id"] == case_id:
            case.update(fields)
    path.write_text(json.dumps(run, ensure_ascii=False, indent=2))


def _signed(folder: Path, bank: CoreSystemBank, sandbox: RunningSandbox) -> VerificationReport:
    """Signed again with the bank's own key (a valid signature), then verified as Bits would."""
    creds = Credentials.load(bank.credentials.p12, password=bank.credentials.password)
    pack = build_pack(folder, certificate=creds.certificate, private_key=creds.private_key, chain=creds.chain)
    return verify_path(pack.zip_path, _policy(sandbox))


def _failed(report: VerificationReport) -> dict[str, str]:
    return {c.name: c.reason for c in report.failed}


def test_the_honest_core_system_pack_verifies_after_signing_again(
    core_run: Path, core_bank: CoreSystemBank, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    report = _signed(_copy(core_run, tmp_path), core_bank, sandbox)
    assert report.ok, _failed(report)


def test_the_tools_request_passed_off_as_the_core_systems_is_refused(
    core_run: Path, core_bank: CoreSystemBank, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    folder = _copy(core_run, tmp_path)

    def not_through_the_gateway(exchanges: list[dict]) -> list[dict]:
        for ex in exchanges:
            if ex.get("role") == "main":
                ex.pop("source", None)
        return exchanges

    _rewrite(folder, "KFR-02", not_through_the_gateway)
    failed = _failed(_signed(folder, core_bank, sandbox))
    assert "KFR-02 er oppgitt som utført av kjernesystemet, men beviset har ingen forespørsel «main» " \
           "fra kjernesystemet gjennom opptaksgatewayen" in failed["core_system"]
    # The judge, asked again from the pack, agrees: the row did not pass.
    assert "KFR-02: pakken sier «OK», bevisene gir «Feilet»" in failed["verdicts"]


def test_a_plain_run_claimed_as_the_core_systems_is_refused(
    core_bank: CoreSystemBank, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    """A bank that never connected its core system claims it did."""
    run_dir = _pytest(core_bank, tmp_path / "plain", tmp_path / "home", "-k", "KFR-02 or KFR-21 or KFR-22")
    folder = _copy(run_dir, tmp_path / "forged")
    _edit_run(folder, "KFR-02", performed_by="kjernesystemet")
    failed = _failed(_signed(folder, core_bank, sandbox))
    assert "KFR-02 er oppgitt som utført av kjernesystemet, men beviset har ingen forespørsel «main»" \
        in failed["core_system"]


def test_the_core_systems_requests_with_another_banks_token_are_refused(
    core_run: Path, core_bank: CoreSystemBank, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    folder = _copy(core_run, tmp_path)
    other = synthetic_orgnr()
    while other == core_bank.orgnr:
        other = synthetic_orgnr()

    def other_banks_token(exchanges: list[dict]) -> list[dict]:
        for ex in exchanges:
            if ex.get("source") == "gateway":
                ex["token_claims"]["consumer"]["ID"] = f"0192:{other}"
        return exchanges

    _rewrite(folder, "KFR-03", other_banks_token)
    failed = _failed(_signed(folder, core_bank, sandbox))
    assert (f"KFR-03: kjernesystemets forespørsel «main» hadde ikke bankens eget token "
            f"(consumer er «0192:{other}», ikke 0192:{core_bank.orgnr})") in failed["core_system"]
    assert "consumer" in failed["environment"]


def test_a_core_system_row_without_the_tools_state_check_is_refused(
    core_run: Path, core_bank: CoreSystemBank, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    folder = _copy(core_run, tmp_path)
    removed: list[str] = []

    def without_check(exchanges: list[dict]) -> list[dict]:
        removed.extend(ex["correlation_id"] for ex in exchanges if ex.get("role") == "check")
        return [ex for ex in exchanges if ex.get("role") != "check"]

    _rewrite(folder, "KFR-04", without_check)
    run = json.loads((folder / "run.json").read_text())
    ids = next(c["correlation_ids"] for c in run["cases"] if c["case_id"] == "KFR-04")
    _edit_run(folder, "KFR-04", correlation_ids=[i for i in ids if i not in removed])
    failed = _failed(_signed(folder, core_bank, sandbox))
    assert "KFR-04: beviset har ikke verktøyets oppslag av KFRs tilstand etter kjernesystemets forespørsler" \
        in failed["core_system"]
    assert set(failed) == {"core_system", "verdicts"}
