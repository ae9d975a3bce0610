"""`pytest --bank=ORGNR --core-system "<command>"` against the sandbox, with the reference core
system (``tests/core_system_ref.py``) as the bank's command: one process per action, its own
Maskinporten client, KFR reached only through the recording gateway the runner starts.

The good core system performs its rows and every row passes, the robustness rows pass, and
the pack verifies. Each broken variant fails exactly the rows it should — and no other —
with a message naming the rule it broke; robustness rows are reported apart and never
change the C-2 result.
"""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest

# Kept imported: pytester's in-process runs drop and re-import Python modules, but not the
# TSA client's compiled extension, which must keep matching the classes in use.
import rfc3161_client  # noqa: F401
from core_system_support import (
    CORE_ROWS,
    MANUAL,
    CoreSystemBank,
    evidence,
    outcomes,
    record_of,
    robustness,
    run_dir_of,
)

from conformance.models import PERFORMED_BY_CORE, PERFORMED_BY_TOOL
from conformance.pack.build import self_check_blockers
from conformance.pack.manifest import Manifest
from conformance.pack.safezip import SafeZip
from conformance.pack.verify import VerificationPolicy, verify_path
from conformance.sandbox import RunningSandbox

OBSERVE_S = 1.5


@pytest.fixture
def bank(sandbox: RunningSandbox, tmp_path: Path) -> CoreSystemBank:
    return CoreSystemBank.register(sandbox, tmp_path / "bank")


def run(pytester: pytest.Pytester, bank: CoreSystemBank, reports: Path, variant: str = "good",
        *extra: str) -> tuple[pytest.RunResult, Path]:
    result = pytester.runpytest_inprocess(*bank.args(
        reports, "--core-system", bank.command(variant), "--core-system-timeout=3",
        f"--profile={bank.profile(observe=OBSERVE_S)}", f"--manual={bank.manual_file()}", *extra,
    ))
    return result, run_dir_of(reports, bank.orgnr)


def verify(run_dir: Path, sandbox: RunningSandbox):
    pack = next(run_dir.glob("*.zip"))
    policy = VerificationPolicy(trust_roots=_roots(sandbox), allow_sandbox=True, allow_bundled_sheet=True)
    return verify_path(pack, policy)


def _roots(sandbox: RunningSandbox) -> tuple:
    from cryptography import x509

    return tuple(x509.load_pem_x509_certificates((sandbox.data_dir / "ca.pem").read_bytes()))


# ---------------------------------------------------------------- the good core system


def test_the_good_core_system_performs_its_rows_every_row_passes_and_the_pack_verifies(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: CoreSystemBank, tmp_path: Path,
) -> None:
    result, run_dir = run(pytester, bank, tmp_path / "r", "good", "--robustness")
    out = result.stdout.str()
    result.assert_outcomes(passed=22 + 4)
    assert set(outcomes(run_dir).values()) == {"passed"}
    assert "Kjernesystemet utfører: " + ", ".join(CORE_ROWS) in out
    assert "KFR-base-URL for kjernesystemet (opptaksgatewayen): http://127.0.0.1:" in out

    record = record_of(run_dir)
    performed = {c.case_id: c.performed_by for c in record.cases}
    assert {c for c, p in performed.items() if p == PERFORMED_BY_CORE} == set(CORE_ROWS)
    assert performed["KFR-06"] == PERFORMED_BY_TOOL and performed["KFR-19"] == PERFORMED_BY_TOOL
    assert all(performed[c] is None for c in MANUAL)

    # The row's request came from the core system through the gateway, with the bank's own
    # token (claims only, never the token); the tool's own lookup checked KFR afterwards.
    added = evidence(run_dir, "KFR-02")
    main = [e for e in added if e["role"] == "main"]
    assert [e["source"] for e in main] == ["gateway"] and main[0]["response"]["status"] == 201
    assert main[0]["token_claims"]["consumer"]["ID"] == f"0192:{bank.orgnr}"
    assert main[0]["request"]["headers"]["authorization"] == "[REDACTED]"
    check = next(e for e in added if e["role"] == "check")
    assert "source" not in check and check["request"]["headers"]["CustomerID"] == main[0]["request"]["headers"]["customerid"]
    ended = evidence(run_dir, "KFR-07")
    assert [(e["role"], e["operation"], e.get("source")) for e in ended if e["role"] != "token"] == [
        ("setup", "add", "gateway"), ("main", "end", "gateway"), ("check", "lookup", None)]
    history = [(e["role"], e.get("source")) for e in evidence(run_dir, "KFR-08") if e["role"] in ("setup", "setup-end")]
    assert history == [("setup", "gateway"), ("setup-end", "gateway")]
    # Rows about malformed requests stay the tool's.
    assert all("source" not in e for e in evidence(run_dir, "KFR-19"))

    # run.json, the manifest and the filled sheet say who performed each row.
    manifest = Manifest.from_bytes((run_dir / "manifest.json").read_bytes())
    assert {c.id: c.performed_by for c in manifest.cases} == performed
    sheet = openpyxl.load_workbook(run_dir / "KFR-Integrasjonstester-utfylt.xlsx")["Testtilfeller"]
    executed = {str(cell.value): [str(c.value) for c in row if c.value]
                for row in sheet.iter_rows() for cell in row if str(cell.value).startswith("KFR-")}
    assert any("(kjernesystemet)" in cell for cell in executed["KFR-02"])
    assert any("(verktøyet)" in cell for cell in executed["KFR-06"])
    report = (run_dir / "report.html").read_text()
    assert "kjernesystemet (bankens egen integrasjon, gjennom opptaksgatewayen)" in report
    assert 'data-section="robustness"' in report

    # The robustness rows passed, apart from the sheet: not in run.json, not in the manifest.
    rows = robustness(run_dir)
    assert {r: rows[r]["outcome"] for r in rows} == {"ROB-503": "passed", "ROB-429": "passed",
                                                      "ROB-401": "passed", "ROB-200": "passed"}
    assert not any(c.case_id.startswith("ROB") for c in record.cases)
    assert not any(c.id.startswith("ROB") for c in manifest.cases)
    assert {"robustness.json", "robustness/ROB-503.json"} <= {f.path for f in manifest.files}
    assert "Robusthet (rapporteres for seg, inngår ikke i C-2-resultatet):" in out

    report = verify(run_dir, sandbox)
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    core_check = next(c for c in report.checks if c.name == "core_system")
    assert core_check.reason.startswith(f"{len(CORE_ROWS)} rader utført av kjernesystemet")
    # The core system's access token (in its own state) is nowhere in the results or the pack.
    token = json.loads((bank.folder / "state-good" / "core-system-state.json").read_text())["access_token"]
    assert token and token.count(".") == 2
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    # The gateway's own journal is in the pack too.
    with SafeZip(next(run_dir.glob("*.zip")).read_bytes()) as pack:
        assert "gateway/gateway.jsonl" in pack.names


# ---------------------------------------------------------------- broken variants

LATER_CORE_ROWS = frozenset(CORE_ROWS) - {"KFR-02"}   # KFR-02's request is the core system's first
VARIANTS = {
    # variant: (sheet rows that fail, robustness rows that fail, rule, words of its reason)
    "reuse-correlation-id": (LATER_CORE_ROWS, None, "correlation-id-unique", "på nytt"),
    "token-per-call": (LATER_CORE_ROWS, None, "token-reused", "hentet et nytt token"),
    "quoted-boundary": ({"KFR-08", "KFR-10", "KFR-11"}, None, "boundary-unquoted", "anførselstegn"),
    "forget-end": ({"KFR-07", "KFR-08"}, None, "expected-request-seen", "kjernesystemet sendte ingen avslutning"),
    "already-exists-error": ({"KFR-05"}, {"ROB-200"}, "already-exists-accepted", "behandlet det som en feil"),
    # The reference system's broken retry gives up on every retryable answer, 429 included.
    "no-retry-503": (set(), {"ROB-503", "ROB-429"}, "nothing-lost", "prøvde aldri igjen"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_broken_variant_fails_exactly_its_rows_with_the_rule_it_broke(
    pytester: pytest.Pytester, sandbox: RunningSandbox, bank: CoreSystemBank, tmp_path: Path, variant: str,
) -> None:
    rows, robust_rows, rule, words = VARIANTS[variant]
    extra = ["--robustness"] if robust_rows is not None else []
    result, run_dir = run(pytester, bank, tmp_path / "r", variant, *extra)
    got = outcomes(run_dir)
    assert {c for c, o in got.items() if o != "passed"} == set(rows), got
    cases = {c.case_id: c for c in record_of(run_dir).cases}
    for case_id in rows:
        assert f"[{rule}]" in cases[case_id].message and words in cases[case_id].message, cases[case_id].message
    if robust_rows is None:
        return
    found = robustness(run_dir)
    assert {r for r, row in found.items() if row["outcome"] != "passed"} == robust_rows
    for row_id in robust_rows:
        assert f"[{rule}]" in found[row_id]["message"] or variant == "no-retry-503"
    if variant == "no-retry-503":
        # Caught there, and only there: the sheet's result, the pack and its verdict are
        # those of a run without robustness rows.
        assert "[nothing-lost]" in found["ROB-503"]["message"] and words in found["ROB-503"]["message"]
        assert record_of(run_dir).counts()["total"] == 22
        report = verify(run_dir, sandbox)
        assert report.ok, [(c.name, c.reason) for c in report.failed]
        blockers = self_check_blockers(next(run_dir.glob("*.zip")))  # the C-3 gate
        assert blockers and not any("ROB-" in b for b in blockers)   # (only the sandbox blocks)
        result.assert_outcomes(passed=22 + 2, failed=2)
