"""Results folders from a real run: one sandbox run per test session, then relabelled.

Verification re-judges every row from its recorded exchanges, so a results folder for pack
tests must hold real evidence. Running the whole sheet for every test would be slow; this
module runs it once per session (``pytest --bank`` in a subprocess against a fresh embedded
sandbox, the bundled sheet copied as a "bank-supplied" sheet with its own version, manual
rows confirmed) and hands out copies.

A copy can be *relabelled*: another bank, Bits' test environment instead of the sandbox,
another start time. Relabelling rewrites every place a real pack would carry those facts
(URLs, ``Host`` headers, token claims, fids, run id, times, date parameters), consistently
— that is, it forges a perfect pack, which is exactly what a bank with its own key could do
and what no verifier can tell from the pack alone (the defence is matching CorrelationIDs
against KFR's own logs). The forgery tests start from these honest copies and break one thing.
"""

from __future__ import annotations

import atexit
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_ORGNR = "311000004"
OSLO = ZoneInfo("Europe/Oslo")
_TEMPLATE: Path | None = None
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


def supplied_sheet(target: Path, version: str = "1.3") -> Path:
    """The bundled sheet with another version in its header: a sheet "from Bits" whose
    SHA-256 differs from the bundled reconstruction's."""
    source = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"
    workbook = load_workbook(source)
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows(max_row=6):
            for cell in row:
                if isinstance(cell.value, str) and re.search(r"[Vv]ersjon", cell.value):
                    cell.value = re.sub(r"\d+(\.\d+)+", version, cell.value) if re.search(
                        r"\d+\.\d+", cell.value) else cell.value
                elif cell.value == "1.0":
                    cell.value = version
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    workbook.save(buffer)
    target.write_bytes(buffer.getvalue())
    return target


def run_sheet(work: Path, orgnr: str = TEMPLATE_ORGNR, *, extra: tuple[str, ...] = (),
              sheet: Path | None = None, manual: bool = True) -> Path:
    """Run the whole sheet as ``orgnr`` against a fresh sandbox in ``work``; return the
    results folder (no pack: tests sign with their own certificates)."""
    work.mkdir(parents=True, exist_ok=True)
    sheet = sheet or supplied_sheet(work / "sheet" / "KFR-Integrasjonstester.xlsx")
    args = [sys.executable, "-m", "pytest", f"--bank={orgnr}", "--sheet", str(sheet),
            "--reports-dir", str(work / "reports"), "--sandbox-data-dir", str(work / "sandbox"),
            "--ingest-rate", "0", "--no-pack", "-p", "no:cacheprovider", "-q",
            "--tester", "Kari Tester", "--tester-role", "Utvikler"]
    if manual:
        confirmations = work / "manuelle.toml"
        confirmations.write_text(
            '[cases."KFR-21"]\nstatus = "OK"\nby = "Kari Tester"\ncomment = "Rutine gjennomgått"\n'
            '[cases."KFR-22"]\nstatus = "OK"\nby = "Kari Tester"\ncomment = "Kjernesystemet oppdaterer KFR"\n',
            encoding="utf-8",
        )
        args += ["--manual", str(confirmations)]
    env = {**os.environ, "KFR_CONFORMANCE_HOME": str(work / "home")}
    done = subprocess.run([*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    folders = sorted((work / "reports" / orgnr).glob("*/run.json"))
    if not folders:
        raise RuntimeError(f"the sandbox run left no results:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return folders[-1].parent


def template() -> Path:
    """The session's one honest, all-passing sandbox run (built on first use)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        work = Path(tempfile.mkdtemp(prefix="kfr-real-run-"))
        atexit.register(shutil.rmtree, work, True)
        _TEMPLATE = run_sheet(work)
    return _TEMPLATE


# ---------------------------------------------------------------- relabelling


def _shift_time(value: str, delta: dt.timedelta, fmt: str | None = None) -> str:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    shifted = moment + delta
    text = shifted.astimezone(dt.UTC).isoformat(timespec="microseconds" if "." in value else "seconds")
    return text.replace("+00:00", "Z") if value.endswith("Z") else text


def relabel(
    folder: Path,
    *,
    orgnr: str | None = None,
    name: str | None = None,
    environment: str | None = None,
    kfr_base_url: str | None = None,
    maskinporten_issuer: str | None = None,
    started_at: dt.datetime | None = None,
    seed: int | None = None,
) -> Path:
    """Rewrite a results folder in place as if the run had been another bank's, in another
    environment, at another time; returns the folder (renamed when the run id changes)."""
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    old_org = run["bank"]["orgnr"]
    old_base = run["environment"]["kfr_base_url"].rstrip("/")
    old_issuer = run["environment"]["maskinporten_issuer"]
    new_org = orgnr or old_org
    new_env = environment or run["environment"]["name"]
    if kfr_base_url is None and new_env == "test":
        kfr_base_url = "https://preprod.api.bits.no/kar-ws/api/v1"
    if maskinporten_issuer is None and new_env == "test":
        maskinporten_issuer = "https://test.maskinporten.no/"
    new_base = (kfr_base_url or old_base).rstrip("/")
    new_issuer = maskinporten_issuer or old_issuer
    old_start = dt.datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
    delta = (started_at - old_start) if started_at else dt.timedelta(0)
    day_shift = dt.timedelta(days=((old_start + delta).astimezone(OSLO).date()
                                   - old_start.astimezone(OSLO).date()).days)
    old_day = old_start.astimezone(OSLO).date()

    def shift_dates(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            try:
                day = dt.date.fromisoformat(match.group(1))
            except ValueError:
                return match.group(1)
            return (day + day_shift).isoformat() if abs((day - old_day).days) <= 60 else match.group(1)
        return _DATE.sub(one, text)

    def url(value: str) -> str:
        if value.startswith(old_base):
            value = new_base + value[len(old_base):]
        elif value.startswith(old_issuer):
            value = new_issuer + value[len(old_issuer):]
        value = value.replace(f"/financialInstitutions/{old_org}/", f"/financialInstitutions/{new_org}/")
        value = value.replace(f"/financialInstitutions/{old_org}?", f"/financialInstitutions/{new_org}?")
        return shift_dates(value)

    import random
    import uuid

    rng = random.Random(seed)
    fresh: dict[str, str] = {}

    def correlation(value: Any) -> Any:
        if seed is None or not isinstance(value, str):
            return value
        if value not in fresh:
            fresh[value] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return fresh[value]

    def exchange(ex: dict[str, Any]) -> dict[str, Any]:
        ex["correlation_id"] = correlation(ex.get("correlation_id"))
        request = ex.get("request") or {}
        headers = request.get("headers") or {}
        for key in list(headers):
            if key.lower() == "correlationid":
                headers[key] = correlation(headers[key])
        if isinstance(request.get("url"), str):
            request["url"] = url(request["url"])
            host = re.sub(r"^[a-z]+://", "", request["url"]).split("/")[0]
            headers = request.get("headers") or {}
            for key in list(headers):
                if key.lower() == "host":
                    headers[key] = host
        if isinstance(ex.get("started_at"), str):
            ex["started_at"] = _shift_time(ex["started_at"], delta)
        response = ex.get("response") or {}
        claims = response.get("token_claims")
        if isinstance(claims, dict):
            if "iss" in claims:
                claims["iss"] = new_issuer
            consumer = claims.get("consumer")
            if isinstance(consumer, dict) and consumer.get("ID") == f"0192:{old_org}":
                consumer["ID"] = f"0192:{new_org}"
            for key in ("iat", "exp"):
                if isinstance(claims.get(key), int):
                    claims[key] += int(delta.total_seconds())
        body = response.get("body")
        if isinstance(body, str) and old_org in body:
            response["body"] = body.replace(old_org, new_org)
        return ex

    for path in sorted((folder / "evidence").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["exchanges"] = [exchange(e) for e in data["exchanges"]]
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for path in sorted(folder.glob("journal*.jsonl")):
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        path.write_text("".join(json.dumps(exchange(e), ensure_ascii=False, separators=(",", ":")) + "\n"
                                for e in lines), encoding="utf-8")
    run["bank"] = {"orgnr": new_org, "name": name or run["bank"]["name"]}
    run["environment"] = {"name": new_env, "kfr_base_url": new_base, "maskinporten_issuer": new_issuer}
    for key in ("started_at", "finished_at"):
        run[key] = _shift_time(run[key], delta)
    for case in run["cases"]:
        case["correlation_ids"] = [correlation(c) for c in case.get("correlation_ids") or []]
        for key in ("started_at", "finished_at"):
            if case.get(key):
                case[key] = _shift_time(case[key], delta)
        case["actual"] = shift_dates(case.get("actual") or "")
    new_start = dt.datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
    suffix = run["run_id"].split("-", 1)[1] if seed is None else f"{rng.getrandbits(24):06x}"
    run["run_id"] = new_start.strftime("%Y%m%dT%H%M%SZ") + "-" + suffix
    (folder / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    target = folder.parent.parent / new_org / run["run_id"]
    if target != folder:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)
    return target


def copy_template(root: Path, **relabelling: Any) -> Path:
    """A fresh copy of the session's honest run under ``root/<orgnr>/<run id>``, relabelled."""
    source = template()
    target = root / "_copy" / source.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for leftover in ("manifest.json", "manifest.json.p7s", "c3-epost.eml"):
        (target / leftover).unlink(missing_ok=True)
    for pack in target.glob("*.zip"):
        pack.unlink()
    folder = relabel(target, **relabelling)
    rewrite_outputs(folder)
    return folder


def rewrite_outputs(folder: Path) -> None:
    """The filled sheet and report.html again from run.json, as the runner writes them."""
    from conformance.models import RunRecord
    from conformance.results import write_outputs

    record = RunRecord.from_json((folder / "run.json").read_bytes())
    written = write_outputs(folder, record)
    assert not written.problems, written.problems
