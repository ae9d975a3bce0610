"""Soak: whole runs against the realistic sandbox with random gateway faults.

Each run is the main job (``pytest --bank`` in a subprocess, as a bank would start it) against
an embedded sandbox in realistic mode (an API gateway in front of KFR), with a seeded mix of
gateway faults: 429 with ``Retry-After``, 502/503 from the gateway, and every issued token
revoked once at a random moment (the gateway then answers 401 until the client renews it).
KFR itself behaves correctly, so:

- a *false verdict* is any row judged **Feilet**, in any session (the environment's faults
  are never the bank's failure); rows judged **Feil i miljø** are counted, not excused, and
  then run again as the C-3 blockers tell a bank to — inside the same run, with
  ``--resume RUN-ID -k …`` (at most twice), the faults still on;
- every pack must pass ``verify`` (told to accept the sandbox's URLs) on every check except
  the row outcomes themselves;
- an all-OK run must reach a C-3 e-mail but for one thing: the runner refuses to write it
  for a KFR that is not Bits' test environment (by design). The script checks that this is
  the only blocker, then builds the e-mail with the runner's own ``build_email`` (the pack
  and the filled sheet attached, as the runner would) and runs ``verify`` on that ``.eml``
  as Bits would, told to accept the sandbox's URLs: every all-OK run's e-mail must pass.

Usage: ``python benchmarks/soak_realistic.py [--runs 20] [--seed 1] [--out FILE]``.
Prints one line per run and a summary; ``--out`` writes the summary as Markdown.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from openpyxl import load_workbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.models import Outcome, RunRecord  # noqa: E402
from conformance.pack.build import self_check_blockers  # noqa: E402
from conformance.pack.email import build_email, email_blockers, find_filled_sheet  # noqa: E402
from conformance.pack.verify import VerificationPolicy, verify_path  # noqa: E402
from conformance.sandbox import Faults, SandboxSettings, start_sandbox  # noqa: E402

ORGNR = "311000004"


def supplied_sheet(target: Path) -> Path:
    """The bundled sheet with another version: stands in for the sheet Bits sends."""
    workbook = load_workbook(ROOT / "testcases" / "KFR-Integrasjonstester.xlsx")
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows(max_row=6):
            for cell in row:
                if isinstance(cell.value, str) and "Versjon: 1.0" in cell.value:
                    cell.value = cell.value.replace("Versjon: 1.0", "Versjon: 1.3")
    buffer = io.BytesIO()
    workbook.save(buffer)
    target.write_bytes(buffer.getvalue())
    return target


def faults_for(seed: int) -> Faults:
    rng = random.Random(seed)
    return Faults(
        seed=seed,
        throttle_rate=rng.choice((0.03, 0.06, 0.1)),
        retry_after_s=rng.choice((1, 2)),
        gateway_error_rate=rng.choice((0.02, 0.04, 0.06)),
        gateway_error_statuses=(502, 503),
    )


MAX_RESUMES = 2


def one_run(sandbox, bank, sheet: Path, work: Path, seed: int) -> dict:
    """One bank's run: the whole sheet, then — as the C-3 blockers advise — the rows the
    environment failed again inside the same run (``--resume RUN-ID -k …``), faults still on."""
    reports = work / f"run-{seed}"
    manual = work / "manual.toml"
    manual.write_text('[KFR-21]\nstatus = "OK"\nby = "Soak"\n[KFR-22]\nstatus = "OK"\nby = "Soak"\n',
                      encoding="utf-8")
    args = [sys.executable, "-m", "pytest", f"--bank={bank.orgnr}", "--kfr-env=test",
            f"--kfr-base-url={sandbox.kfr_base_url}", f"--maskinporten-url={sandbox.maskinporten_issuer}",
            f"--client-id={bank.client_id}", f"--cert={bank.p12}", f"--alt-scope={bank.alt_scope}",
            f"--sheet={sheet}", f"--manual={manual}", f"--reports-dir={reports}",
            "--tester=Soak", "--contact=soak@example.invalid", "-p", "no:cacheprovider", "-q"]
    env = {**os.environ, "KFR_CONFORMANCE_HOME": str(work / "home")}
    started = time.perf_counter()
    done = _session(sandbox, args, env, seed)
    run_dirs = sorted((reports / bank.orgnr).glob("*/run.json"))
    if not run_dirs:
        return {"seed": seed, "broken": done.stdout[-2000:] + done.stderr[-2000:]}
    folder = run_dirs[-1].parent
    record = RunRecord.from_json((folder / "run.json").read_bytes())
    failed = _rows(record, Outcome.FAILED)
    errors_first = _rows(record, Outcome.ERROR)
    resumes = 0
    while resumes < MAX_RESUMES and (again := [c.case_id for c in record.cases
                                               if c.outcome in (Outcome.ERROR, Outcome.NOT_RUN)]):
        resumes += 1
        _session(sandbox, [*args, f"--resume={record.run_id}", "-k", " or ".join(again)], env,
                 seed * 1000 + resumes)
        record = RunRecord.from_json((folder / "run.json").read_bytes())
        failed += _rows(record, Outcome.FAILED)  # a false verdict in any session counts
    elapsed = time.perf_counter() - started
    counts = record.counts()
    retried = sum(1 for c in record.cases if c.attempts > 1)
    expects_401 = {c.case_id for c in record.cases if c.expected.status == 401}
    faults_met = _faults_met(folder / "journal.jsonl", expects_401)
    zip_path = next(folder.glob("*.zip"))
    policy = VerificationPolicy(
        trust_roots=tuple(x509.load_pem_x509_certificates(sandbox.ca_pem)),
        accepted_kfr_base_urls=(sandbox.kfr_base_url,),
        accepted_maskinporten_issuers=(sandbox.maskinporten_issuer,),
    )
    report = verify_path(zip_path, policy)
    refused = [f"{c.name}: {c.reason[:200]}" for c in report.failed if c.name != "cases"]
    all_ok = counts["passed"] == counts["total"]
    blockers = email_blockers(record) + self_check_blockers(zip_path)
    only_environment = all(" – Miljø:" in b for b in blockers)
    email_verified = False
    if all_ok and only_environment:
        eml = folder / "c3-epost-soak.eml"
        message = build_email(record, zip_path, filled_sheet=find_filled_sheet(folder))
        eml.write_bytes(message.as_bytes())
        by_email = verify_path(eml, policy)
        email_verified = by_email.ok
        refused += [f"e-mail {c.name}: {c.reason[:200]}" for c in by_email.failed]
    return {
        "seed": seed, "seconds": round(elapsed, 1), "passed": counts["passed"], "total": counts["total"],
        "failed": failed, "errors_first": errors_first, "resumes": resumes,
        "errors": _rows(record, Outcome.ERROR), "retried_rows": retried, "verify_refused": refused,
        "faults_met": faults_met, "all_ok": all_ok,
        "email_ready": all_ok and bool(blockers) and only_environment and report.ok and email_verified,
    }


def _session(sandbox, args: list[str], env: dict[str, str], seed: int) -> subprocess.CompletedProcess:
    """One pytest session with this seed's faults, every token revoked once at a random moment."""
    sandbox.set_faults(faults_for(seed))
    revoked = threading.Timer(random.Random(seed * 7919).uniform(1.0, 6.0), sandbox.revoke_tokens)
    revoked.start()
    try:
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    finally:
        revoked.cancel()
        sandbox.set_faults(Faults())


def _rows(record: RunRecord, outcome: Outcome) -> list[str]:
    return [f"{c.case_id}: {c.message} / {c.actual}"[:400] for c in record.cases if c.outcome is outcome]


def _faults_met(journal: Path, expects_401: set[str]) -> dict[str, int]:
    """What the run met from the environment, counted from its own journal: throttling,
    gateway 5xx, and the gateway's 401 for a revoked token (not in rows that expect one)."""
    met = {"429": 0, "5xx": 0, "gateway_401": 0}
    for line in journal.read_text(encoding="utf-8").splitlines():
        exchange = json.loads(line)
        response = exchange.get("response") or {}
        status = response.get("status")
        if status == 429:
            met["429"] += 1
        elif isinstance(status, int) and status >= 500:
            met["5xx"] += 1
        elif (status == 401 and "statusCode" in str(response.get("body") or "")
              and exchange.get("case_id") not in expects_401):
            met["gateway_401"] += 1
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kfr-soak-"))
    results = []
    try:
        sheet = supplied_sheet(work / "KFR-Integrasjonstester.xlsx")
        settings = SandboxSettings(data_dir=work / "sandbox", realistic=True, ingest_rate=None)
        with start_sandbox(settings) as sandbox:
            bank = sandbox.register_bank(ORGNR, name="Soak Bank ASA", out_dir=work / "creds")
            for seed in range(args.seed, args.seed + args.runs):
                result = one_run(sandbox, bank, sheet, work, seed)
                results.append(result)
                print(json.dumps(result, ensure_ascii=False), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    broken = [r for r in results if "broken" in r]
    ran = [r for r in results if "broken" not in r]
    false_verdicts = sum(len(r["failed"]) for r in ran)
    refused = sum(1 for r in ran if r["verify_refused"])
    all_ok = [r for r in ran if r["all_ok"]]
    email = sum(1 for r in all_ok if r["email_ready"])
    summary = [
        f"runs: {len(results)} ({len(broken)} broken)",
        f"false verdicts (rows judged Feilet): {false_verdicts}",
        f"rows judged Feil i miljø in the first session: {sum(len(r['errors_first']) for r in ran)} "
        f"(in {sum(1 for r in ran if r['errors_first'])} runs); resumed sessions: "
        f"{sum(r['resumes'] for r in ran)}; rows still Feil i miljø after them: {sum(len(r['errors']) for r in ran)}",
        f"rows that needed another attempt: {sum(r['retried_rows'] for r in ran)}",
        "faults met (from the journals): "
        + ", ".join(f"{k} {sum(r['faults_met'][k] for r in ran)}" for k in ("429", "5xx", "gateway_401")),
        f"packs verify refuses (any check but the outcomes): {refused}",
        f"all-OK runs (after any resumed session): {len(all_ok)}; of these with a C-3 e-mail that verify accepts (blocked only by the sandbox URL): {email}",
        f"median run time: {sorted(r['seconds'] for r in ran)[len(ran) // 2] if ran else '-'} s",
    ]
    print("\n".join(summary))
    if args.out:
        args.out.write_text("\n".join(f"- {line}" for line in summary) + "\n", encoding="utf-8")
    ok = not broken and false_verdicts == 0 and refused == 0 and email == len(all_ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
