"""The runner end to end: `pytest --bank=<orgnr>` against real sandboxes over loopback HTTP.

Whole runs are started as real pytest sessions — in a subprocess where the command line
itself matters (the README's main job, usage errors, -n 4), in-process with ``pytester``
where many short runs are needed (a deliberately wrong KFR per case, faults).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sheet_layouts import LAYOUTS, UNKNOWN_ROW, build_layout

from conformance.models import Outcome, RunRecord
from conformance.sandbox import Faults, RunningSandbox

ROOT = Path(__file__).resolve().parent.parent
AUTOMATED = [f"KFR-{n:02d}" for n in range(1, 21)]
MANUAL = ["KFR-21", "KFR-22"]
BANK = "311000004"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env["KFR_CONFORMANCE_HOME"] = str(home)
    env.update(extra)
    return env


def run_pytest(args: list[str], home: Path, *, cwd: Path = ROOT, timeout: float = 180,
               **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd, env=_env(home, **env), capture_output=True, text=True, timeout=timeout,
    )


def single_run_dir(reports: Path, orgnr: str = BANK) -> Path:
    runs = sorted((reports / orgnr).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def outcomes(run_dir: Path) -> dict[str, str]:
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    return {c.case_id: str(c.outcome) for c in record.cases}


# ------------------------------------------------------------------ the main job


def test_main_job_runs_the_whole_bundled_sheet_against_the_embedded_sandbox(tmp_path: Path) -> None:
    home, reports = tmp_path / "home", tmp_path / "reports"
    manual = tmp_path / "manual.toml"
    manual.write_text(
        '[KFR-21]\nstatus = "OK"\ncomment = "Sletting venter på batch i kjernesystemet"\nby = "Kari"\n'
        '[KFR-22]\nstatus = "OK"\ncomment = "Hendelser sendes fortløpende"\nby = "Kari"\n',
        encoding="utf-8",
    )
    proc = run_pytest([f"--bank={BANK}", f"--reports-dir={reports}", f"--manual={manual}",
                       "--tester=Kari Nordmann", "--tester-role=IT-ansvarlig"], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "22 passed" in proc.stdout
    assert "SANDBOX" in proc.stdout
    run_dir = single_run_dir(reports)
    assert f"Resultater: {run_dir}" in proc.stdout
    assert outcomes(run_dir) == {case: "passed" for case in AUTOMATED + MANUAL}

    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    assert record.environment["name"] == "sandbox"
    assert record.attestation["tester"] == "Kari Nordmann"
    assert record.sheet["version"] and len(record.sheet["sha256"]) == 64
    for case in record.cases:
        if case.case_id in AUTOMATED:
            assert case.evidence_file and (run_dir / case.evidence_file).is_file()
            # the token row talks only to Maskinporten; KFR-15 leaves CorrelationID out on purpose
            if case.case_id not in ("KFR-01", "KFR-15"):
                assert case.correlation_ids, case.case_id
    assert (run_dir / "KFR-Integrasjonstester-utfylt.xlsx").is_file()
    assert (run_dir / "report.html").is_file()
    packs = list(run_dir.glob(f"{BANK}-KFR-integrasjonstest-*.zip"))
    assert len(packs) == 1

    # The pack verifies against the sandbox CA that `kfr-conformance sandbox ca` prints.
    ca = subprocess.run([sys.executable, "-m", "conformance.cli", "sandbox", "ca"],
                        env=_env(home), capture_output=True, text=True, check=True).stdout
    (tmp_path / "ca.pem").write_text(ca)
    verify = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "verify", str(packs[0]),
         "--trust", str(tmp_path / "ca.pem"), "--allow-sandbox", "--allow-bundled-sheet"],
        env=_env(home), capture_output=True, text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "verify", str(packs[0]),
         "--trust", str(tmp_path / "ca.pem")],
        env=_env(home), capture_output=True, text=True,
    )
    assert refused.returncode == 1
    assert "sandbox" in refused.stdout.lower() or "sandkasse" in refused.stdout.lower()
    assert_no_secrets(run_dir, home)


def assert_no_secrets(run_dir: Path, home: Path) -> None:
    """No token, assertion, private key or password anywhere under the results folder."""
    jwt = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
    key_markers = (b"PRIVATE KEY", b"assertion=ey", b"Bearer ey")
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files
    import zipfile

    blobs: list[tuple[str, bytes]] = [(str(p), p.read_bytes()) for p in files]
    for path in files:
        if path.suffix in {".zip", ".xlsx"}:
            with zipfile.ZipFile(path) as zf:
                blobs += [(f"{path}!{n}", zf.read(n)) for n in zf.namelist()]
    for name, data in blobs:
        assert not jwt.search(data), f"a JWT in {name}"
        for marker in key_markers:
            assert marker not in data, f"{marker!r} in {name}"


# ------------------------------------------------------------------ usage errors


def test_without_bank_the_sheet_is_a_one_line_usage_error(tmp_path: Path) -> None:
    proc = run_pytest(["--sheet=testcases/KFR-Integrasjonstester.xlsx"], tmp_path)
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "--bank" in errors[0], proc.stderr


def test_an_invalid_orgnr_stops_before_anything_runs(tmp_path: Path) -> None:
    proc = run_pytest(["--bank=311000005", f"--reports-dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 4
    assert "311000005" in proc.stderr and "organisasjonsnummer" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("url", [
    "https://api.bits.no/kar-ws/api/v1",
    "https://API.BITS.NO./kar-ws/api/v1",
    "https://api.bits.no:443/kar-ws/api/v1/",
])
def test_production_is_refused_before_any_request(tmp_path: Path, url: str) -> None:
    cert = tmp_path / "cert.p12"
    cert.write_bytes(b"not used: refused before the certificate is read")
    proc = run_pytest([f"--bank={BANK}", "--kfr-env=test", f"--kfr-base-url={url}",
                       "--client-id=x", f"--cert={cert}", f"--reports-dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 4
    assert "produksjon" in proc.stderr.lower()
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ in-process runs against a given sandbox


def run_against(pytester: pytest.Pytester, sb: RunningSandbox, reports: Path, *args: str,
                orgnr: str = BANK) -> tuple[Any, Path]:
    result = pytester.runpytest_inprocess(
        f"--bank={orgnr}", f"--kfr-base-url={sb.kfr_base_url}",
        f"--maskinporten-url={sb.maskinporten_issuer}", f"--sandbox-data-dir={sb.data_dir}",
        f"--reports-dir={reports}", f"--sheet={ROOT / 'testcases' / 'KFR-Integrasjonstester.xlsx'}",
        "-p", "no:cacheprovider", *args,
    )
    runs = sorted((reports / orgnr).iterdir())
    return result, runs[-1]


# Which rows a deliberately wrong KFR must make fail (the switches live in the sandbox).
MISBEHAVIOUR_CASES = {
    "skip_customer_id_check": ["KFR-13"],
    "skip_type_check": ["KFR-14"],
    "skip_correlation_check": ["KFR-15"],
    "skip_fid_check": ["KFR-16"],
    "skip_auth": ["KFR-17"],
    "skip_scope_check": ["KFR-18"],
    "always_201": ["KFR-05"],
    "delete_missing_204": ["KFR-09"],
    "forget_history": ["KFR-08"],
    "ignore_batch_dates": ["KFR-10"],
    "skip_batch_date_check": ["KFR-12"],
    "accept_any_boundary": ["KFR-19"],
    "no_size_limit": ["KFR-20"],
    "lookup_empty": ["KFR-02", "KFR-03", "KFR-04", "KFR-06"],
    "token_wrong_scope": ["KFR-01"],
    "end_returns_200": ["KFR-07"],
    "never_ingest": ["KFR-11"],
}


@pytest.mark.parametrize("switch", sorted(MISBEHAVIOUR_CASES))
def test_each_case_fails_when_kfr_answers_wrongly(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path, switch: str,
) -> None:
    cases = MISBEHAVIOUR_CASES[switch]
    extra = ["--ingest-rate=250"]
    if switch == "never_ingest":
        sandbox.set_faults(Faults(misbehave=frozenset({switch})))
    else:
        sandbox.set_faults(Faults(misbehave=frozenset({switch})))
    result, run_dir = run_against(pytester, sandbox, tmp_path / "r", "-k", " or ".join(cases), *extra)
    got = outcomes(run_dir)
    for case in cases:
        assert got[case] == "failed", (switch, case, got[case])
    assert "Feilet" in result.stdout.str()


def test_a_correct_kfr_passes_every_automated_case(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    result, run_dir = run_against(pytester, sandbox, tmp_path / "r")
    got = outcomes(run_dir)
    assert {c: got[c] for c in AUTOMATED} == {c: "passed" for c in AUTOMATED}
    assert {c: got[c] for c in MANUAL} == {c: "pending" for c in MANUAL}
    result.assert_outcomes(passed=20, skipped=2)


@pytest.mark.parametrize("faults", [
    Faults(latency_ms=30),
    Faults(fail_next=4),
    Faults(error_rate_500=0.3, seed=11),
    Faults(error_rate_504=0.3, seed=12),
    Faults(drop_rate=0.3, seed=13),
    Faults(token_lifetime_s=1, latency_ms=40),
], ids=["latency", "5xx-burst", "500s", "504s", "dropped", "early-expiry"])
def test_faults_give_error_in_environment_or_pass_never_a_false_verdict(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path, faults: Faults,
) -> None:
    sandbox.set_faults(faults)
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", "-k", "not KFR-20")
    got = outcomes(run_dir)
    wrong = {c: o for c, o in got.items() if c in AUTOMATED and c != "KFR-20" and o not in ("passed", "error")}
    assert not wrong, wrong
    if faults.latency_ms and not (faults.error_rate_500 or faults.drop_rate or faults.fail_next):
        # latency alone (and tokens expiring mid-run, which must be renewed) breaks nothing
        assert {o for c, o in got.items() if c in AUTOMATED and c != "KFR-20"} == {"passed"}
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    for case in record.cases:
        if case.outcome is Outcome.ERROR:
            assert case.message and "Intern feil" not in case.message, case


def test_parallel_run_gives_the_same_outcomes_as_a_serial_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    serial = run_pytest([f"--bank={BANK}", f"--reports-dir={tmp_path / 's'}"], home)
    parallel = run_pytest([f"--bank={BANK}", f"--reports-dir={tmp_path / 'p'}", "-n", "4"], home)
    assert serial.returncode == parallel.returncode == 0, parallel.stdout + parallel.stderr
    s, p = outcomes(single_run_dir(tmp_path / "s")), outcomes(single_run_dir(tmp_path / "p"))
    assert s == p and set(s) == set(AUTOMATED + MANUAL)
    # every worker journalled its own exchanges
    assert list(single_run_dir(tmp_path / "p").glob("journal-gw*.jsonl"))


# ------------------------------------------------------------------ other sheets


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_other_sheet_layouts_run_to_the_same_outcomes(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path, layout: str,
) -> None:
    sheet = build_layout(tmp_path / f"{layout}.xlsx", LAYOUTS[layout])
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", f"--sheet={sheet}")
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    by_title = {c.title: c for c in record.cases}
    for case in record.cases:
        if case.title == UNKNOWN_ROW.title:
            assert case.outcome is Outcome.NOT_AUTOMATED
        elif case.manual:
            assert case.outcome is Outcome.PENDING, case
        else:
            assert case.outcome is Outcome.PASSED, (case.case_id, case.title, case.message)
    assert len(by_title) >= 22


def test_a_bindings_file_binds_a_row_the_text_cannot(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    sheet = build_layout(tmp_path / "unknown.xlsx", LAYOUTS["unknown_row"])
    from conformance.sheet import read_sheet

    _, cases = read_sheet(sheet)
    unknown_id = next(c.case_id for c in cases if c.title == UNKNOWN_ROW.title)
    bindings = tmp_path / "bindings.toml"
    bindings.write_text(f'[bindings]\n"{unknown_id}" = "lookup_own_bank"\n', encoding="utf-8")
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", f"--sheet={sheet}",
                             f"--bindings={bindings}", "-k", unknown_id)
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    case = next(c for c in record.cases if c.case_id == unknown_id)
    assert case.binding == "lookup_own_bank"
    assert case.outcome is Outcome.PASSED  # the row's own expectation (HTTP 200) was met
    # The pack carries the bindings, so verify binds the row as the run did, and says so.
    assert (run_dir / "original" / "bindings.toml").read_bytes() == bindings.read_bytes()
    from conformance.pack.verify import VerificationPolicy, verify_path

    report = verify_path(next(run_dir.glob("*.zip")), VerificationPolicy(allow_sandbox=True))
    checks = {c.name: c for c in report.checks}
    assert checks["verdicts"].ok, checks["verdicts"].reason
    assert checks["rows"].ok and f"{unknown_id} → lookup_own_bank" in checks["rows"].reason


def test_a_partial_run_marks_the_rest_not_run(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", "-k", "KFR-02 or KFR-09")
    got = outcomes(run_dir)
    assert got["KFR-02"] == got["KFR-09"] == "passed"
    assert {o for c, o in got.items() if c not in ("KFR-02", "KFR-09")} == {"not_run"}


def test_an_interrupted_run_keeps_what_it_did(tmp_path: Path) -> None:
    home, reports = tmp_path / "home", tmp_path / "reports"
    # A slow ingestion rate makes the batch rows wait, so the kill lands mid-run.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--bank={BANK}",
         f"--reports-dir={reports}", "--ingest-rate=0.5"],
        cwd=ROOT, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        journal = None
        while time.monotonic() < deadline:
            runs = list((reports / BANK).glob("*/journal.jsonl")) if (reports / BANK).exists() else []
            if runs and (runs[0].parent / "evidence" / "KFR-09.json").exists():
                journal = runs[0]
                break
            time.sleep(0.1)
        assert journal is not None, "the run never got going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    assert {ex["case_id"] for ex in lines} >= {"KFR-01", "KFR-02", "KFR-09"}
    evidence = json.loads((journal.parent / "evidence" / "KFR-02.json").read_text())
    assert evidence["exchanges"] and evidence["case_id"] == "KFR-02"


# ------------------------------------------------------------------ the test environment and C-3


def test_a_test_environment_run_elsewhere_gets_no_c3_email_but_verifies_when_accepted(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: Any, tmp_path: Path,
) -> None:
    """`--kfr-env test` pointed at a local KFR (the real one is not reachable here) with the
    bundled sheet: every row passes, but the session verifies its own pack as Bits will and
    writes no C-3 e-mail — the evidence shows another environment and the tool's own sheet.
    `verify` accepts the pack once told to accept exactly those."""
    manual = tmp_path / "manual.json"
    manual.write_text(json.dumps({c: {"status": "OK", "by": "Kari", "comment": "utført"} for c in MANUAL}))
    reports = tmp_path / "r"
    result = pytester.runpytest_inprocess(
        f"--bank={bank.orgnr}", "--kfr-env=test", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--client-id={bank.client_id}",
        f"--cert={bank.p12}", f"--alt-scope={bank.alt_scope}", f"--manual={manual}",
        f"--reports-dir={reports}", "--contact=kari@example.invalid", "--tester=Kari Nordmann",
        f"--sheet={ROOT / 'testcases' / 'KFR-Integrasjonstester.xlsx'}", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=22)
    run_dir = single_run_dir(reports, bank.orgnr)
    out = result.stdout.str()
    assert "SANDBOX" not in out
    assert not (run_dir / "c3-epost.eml").exists()
    assert "C-3-e-post er ikke laget" in out
    assert "avviser pakken – Miljø" in out and sandbox.kfr_base_url in out
    assert "avviser pakken – Testark" in out and "rekonstruerte" in out

    from conformance.cli import main

    pack = next(run_dir.glob("*.zip"))
    args = ["verify", str(pack), "--trust", str(bank.ca_pem), f"--accept-kfr-url={sandbox.kfr_base_url}",
            f"--accept-maskinporten-url={sandbox.maskinporten_issuer}", "--allow-bundled-sheet"]
    assert main(args) == 0
    assert main(args[:4] + args[5:]) == 1  # an unknown KFR URL is not Bits' test environment
    assert main(args[:-1]) == 1  # nor is the tool's own sheet Bits' sheet


def test_a_run_with_failures_gets_no_c3_email_and_says_why(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: Any, tmp_path: Path,
) -> None:
    sandbox.set_faults(Faults(misbehave=frozenset({"skip_type_check"})))
    reports = tmp_path / "r"
    result = pytester.runpytest_inprocess(
        f"--bank={bank.orgnr}", "--kfr-env=test", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--client-id={bank.client_id}",
        f"--cert={bank.p12}", f"--alt-scope={bank.alt_scope}", f"--reports-dir={reports}",
        f"--sheet={ROOT / 'testcases' / 'KFR-Integrasjonstester.xlsx'}", "-p", "no:cacheprovider",
    )
    out = result.stdout.str()
    assert result.ret == 1
    run_dir = single_run_dir(reports, bank.orgnr)
    assert not (run_dir / "c3-epost.eml").exists()
    assert "C-3-e-post er ikke laget" in out and "KFR-14" in out


def test_a_broken_or_foreign_certificate_stops_before_anything_runs(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: Any, other_bank: Any, tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.p12"
    broken.write_bytes(b"\x30\x82garbage")
    reports = tmp_path / "r"
    common = [f"--bank={bank.orgnr}", "--kfr-env=test", f"--kfr-base-url={sandbox.kfr_base_url}",
              f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--client-id={bank.client_id}",
              f"--reports-dir={reports}", "-p", "no:cacheprovider"]
    result = pytester.runpytest_inprocess(*common, f"--cert={broken}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "PKCS#12" in result.stderr.str()
    result = pytester.runpytest_inprocess(*common, f"--cert={other_bank.p12}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert other_bank.orgnr in result.stderr.str() and "MP-122" in result.stderr.str()
    assert not reports.exists(), "nothing ran, nothing was written"


def test_alluredir_gets_each_exchange_as_a_redacted_attachment(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    allure_dir = tmp_path / "allure"
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", "-k", "KFR-01 or KFR-09",
                             f"--alluredir={allure_dir}")
    attachments = list(allure_dir.glob("*-attachment.json"))
    journal = [line for line in (run_dir / "journal.jsonl").read_text().splitlines() if line]
    assert len(attachments) == len(journal) >= 2
    for path in attachments:
        data = path.read_text()
        assert json.loads(data)["request"]["method"] in {"POST", "DELETE", "GET"}
        assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ", data), path


# ------------------------------------------------------------------ KFR-18 without another scope


def _evidence_operations(run_dir: Path, case_id: str) -> list[tuple[str, str, int | None]]:
    data = json.loads((run_dir / "evidence" / f"{case_id}.json").read_text())
    return [(e["role"], e["operation"], (e.get("response") or {}).get("status")) for e in data["exchanges"]]


def test_kfr18_for_a_client_with_only_the_write_scope_is_a_manual_row_decided_at_start_up(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: Any, tmp_path: Path,
) -> None:
    """A client with only bits:kundeforhold.write cannot get a KFR token without it: the row
    is decided at start-up to be a manual procedure, with one message saying what to do."""
    reports = tmp_path / "r"
    args = [f"--bank={bank.orgnr}", "--kfr-env=test", f"--kfr-base-url={sandbox.kfr_base_url}",
            f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--client-id={bank.client_id}",
            f"--cert={bank.p12}", f"--reports-dir={reports}", "-p", "no:cacheprovider"]
    result = pytester.runpytest_inprocess(*args, "-k", "KFR-18")
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "MANUELL denne gangen: KFR-18" in out and "--alt-scope SCOPE" in out
    run_dir = single_run_dir(reports, bank.orgnr)
    case = next(c for c in RunRecord.from_json((run_dir / "run.json").read_bytes()).cases
                if c.case_id == "KFR-18")
    assert case.outcome is Outcome.PENDING and "Samarbeidsportalen" in case.message
    assert not (run_dir / "evidence" / "KFR-18.json").exists()  # nothing was sent
    # Confirmed by a person, it counts as attested: shown apart, and Bits decides.
    manual = tmp_path / "m.toml"
    manual.write_text('[KFR-18]\nstatus = "OK"\nby = "Kari"\ncomment = "kjernesystemet fikk KFR-002"\n')
    result = pytester.runpytest_inprocess(*args, "-k", "KFR-18", f"--manual={manual}",
                                          f"--resume={run_dir.name}")
    result.assert_outcomes(passed=1)
    case = next(c for c in RunRecord.from_json((run_dir / "run.json").read_bytes()).cases
                if c.case_id == "KFR-18")
    assert case.attested and case.confirmed_by == "Kari" and case.confirmed_at


def test_kfr18_with_a_scope_the_client_lacks_fails_with_advice_to_choose_another(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    _, run_dir = run_against(pytester, sandbox, tmp_path / "r", "--alt-scope=bits:finnes.ikke", "-k", "KFR-18")
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    case = next(c for c in record.cases if c.case_id == "KFR-18")
    assert case.outcome is Outcome.FAILED
    assert "MP-200" in case.message and "velg et scope klienten allerede har" in case.message
    assert "ikke Bits som gir det" in case.message
    ops = _evidence_operations(run_dir, "KFR-18")
    assert ops == [("token-alt", "token", 400)]


# ------------------------------------------------------------------ rerun inside a run


def test_resume_reruns_rows_inside_the_same_run_and_keeps_every_attempt(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    reports = tmp_path / "r"
    # The first session: KFR-07 fails because KFR answers 200 to a DELETE.
    sandbox.set_faults(Faults(misbehave=frozenset({"end_returns_200"})))
    _, run_dir = run_against(pytester, sandbox, reports, "-k", "KFR-02 or KFR-07")
    assert outcomes(run_dir)["KFR-07"] == "failed"
    kfr02 = (run_dir / "evidence" / "KFR-02.json").read_bytes()
    sandbox.set_faults(Faults())
    _, again = run_against(pytester, sandbox, reports, f"--resume={run_dir.name}", "-k", "KFR-07 or KFR-09")
    assert again == run_dir and len(list((reports / BANK).iterdir())) == 1
    got = outcomes(run_dir)
    assert got["KFR-02"] == got["KFR-07"] == got["KFR-09"] == "passed"
    assert {o for c, o in got.items() if c not in ("KFR-02", "KFR-07", "KFR-09")} == {"not_run"}
    assert (run_dir / "evidence" / "KFR-02.json").read_bytes() == kfr02  # not run again: untouched
    exchanges = json.loads((run_dir / "evidence" / "KFR-07.json").read_text())["exchanges"]
    assert {e["session"] for e in exchanges} == {1, 2}  # the failed session is kept, and dated
    record = RunRecord.from_json((run_dir / "run.json").read_bytes())
    assert [s["session"] for s in record.sessions] == [1, 2] and record.sessions[1]["rows"] == ["KFR-07", "KFR-09"]
    case = next(c for c in record.cases if c.case_id == "KFR-07")
    assert "Økt 1: Feilet" in case.message
    # verify re-derives the same verdicts from both sessions' evidence.
    from conformance.pack.verify import VerificationPolicy, verify_path

    report = verify_path(next(run_dir.glob("*.zip")), VerificationPolicy(allow_sandbox=True, allow_bundled_sheet=True))
    failed = {c.name for c in report.failed}
    # No trust roots given: neither the signer nor the sandbox TSA's timestamp is trusted.
    assert failed <= {"certificate", "timestamp", "cases"}, [(c.name, c.reason) for c in report.failed]


def test_resume_refuses_another_sheet(pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path) -> None:
    reports = tmp_path / "r"
    _, run_dir = run_against(pytester, sandbox, reports, "-k", "KFR-02")
    sheet = build_layout(tmp_path / "other.xlsx", LAYOUTS[sorted(LAYOUTS)[0]])
    result = pytester.runpytest_inprocess(
        f"--bank={BANK}", f"--kfr-base-url={sandbox.kfr_base_url}", f"--sandbox-data-dir={sandbox.data_dir}",
        f"--reports-dir={reports}", f"--sheet={sheet}", f"--resume={run_dir.name}", "-p", "no:cacheprovider",
    )
    assert result.ret == 4
    assert "et annet testark" in result.stderr.str()
