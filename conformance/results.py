"""Writing a run's results folder: run.json, the filled sheet, report.html, the signed pack.

Used by the plugin at the end of a session and by ``kfr-conformance pack DIR`` when a
folder is rebuilt (e.g. after manual rows were confirmed). Each artefact is written on its
own: one that fails is reported and the others are still written, so nothing recorded is
lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.atomic import atomic_write_bytes
from conformance.errors import ConformanceError
from conformance.models import CaseResult, RunRecord

if TYPE_CHECKING:
    from conformance.sheet import SheetInfo

RUN_FILE = "run.json"
ORIGINAL_DIR = "original"
EVIDENCE_DIR = "evidence"


def filled_sheet_name(original_name: str) -> str:
    stem = Path(original_name).stem
    return f"{stem}-utfylt.xlsx"


def correlation_ids(exchanges: Sequence[dict[str, Any]]) -> list[str]:
    """CorrelationIDs the bank sent to KFR, in order, without repeats (token calls have none)."""
    seen: list[str] = []
    for ex in exchanges:
        cid = ex.get("correlation_id")
        if cid and cid not in seen:
            seen.append(cid)
    return seen


def copy_original_sheet(sheet: Path, results_dir: Path) -> Path:
    target = results_dir / ORIGINAL_DIR / sheet.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sheet, target)
    return target


def copy_bindings(bindings: Path, results_dir: Path) -> Path:
    """The bank's bindings file beside the sheet, as ``original/bindings.toml`` or ``.json``:
    verify binds the sheet's rows with it, as the run did (without it, rows bound only by the
    file would be "not automated" to verify, and the bank's own pack refused). A resumed run
    with a new file replaces the old one."""
    from conformance.binding import bindings_are_json

    raw = bindings.read_bytes()
    target = results_dir / ORIGINAL_DIR / ("bindings.json" if bindings_are_json(bindings, raw) else "bindings.toml")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob("bindings.*"):
        stale.unlink()
    target.write_bytes(raw)
    return target


def load_record(results_dir: Path) -> RunRecord:
    path = results_dir / RUN_FILE
    try:
        return RunRecord.from_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ConformanceError(
            f"{results_dir} er ikke en resultatmappe fra kfr-conformance (mangler {RUN_FILE})."
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConformanceError(f"{path} kan ikke leses: {exc}") from exc


@dataclass
class WriteOutcome:
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def write_outputs(
    results_dir: Path, record: RunRecord, sheet_info: SheetInfo | None = None
) -> WriteOutcome:
    """run.json, the filled sheet and report.html from a record. Never raises.

    ``sheet_info`` is the sheet as the caller already read it (the plugin reads it before
    row 1): when it describes the very bytes in ``original/`` (same SHA-256), the filled
    sheet is written from it instead of reading and parsing the sheet a second time."""
    out = WriteOutcome()
    try:
        atomic_write_bytes(results_dir / RUN_FILE, record.to_json())
        out.written.append(results_dir / RUN_FILE)
    except OSError as exc:
        out.problems.append(f"run.json kunne ikke skrives: {exc}")

    original = results_dir / ORIGINAL_DIR / record.sheet.get("file_name", "")
    try:
        from conformance.sheet_writer import write_filled_sheet

        info = _sheet_info_of(original, sheet_info)
        target = results_dir / filled_sheet_name(record.sheet.get("file_name", "ark.xlsx"))
        write_filled_sheet(
            info, record.cases, target,
            run_by=_run_by(record), environment=record.environment.get("name", "sandbox"),
            run_id=record.run_id, bank=record.bank,
        )
        out.written.append(target)
    except Exception as exc:  # keep going: the report and the pack still matter
        out.problems.append(f"Utfylt regneark kunne ikke skrives: {_why(exc)}")

    try:
        from conformance.report import write_report

        out.written.append(write_report(record, results_dir))
    except Exception as exc:
        out.problems.append(f"report.html kunne ikke skrives: {_why(exc)}")
    return out


def _sheet_info_of(original: Path, known: SheetInfo | None) -> SheetInfo:
    """The filled sheet is always written from the pack's own copy of the sheet: ``known``
    is used for it only when the copy's bytes are the ones ``known`` was read from."""
    if (
        known is not None
        and original.is_file()
        and hashlib.sha256(original.read_bytes()).hexdigest() == known.sha256
    ):
        return dataclasses.replace(known, path=original)
    from conformance.sheet import read_sheet

    info, _ = read_sheet(original)
    return info


def _run_by(record: RunRecord) -> str:
    tester = record.attestation.get("tester") or ""
    role = record.attestation.get("role") or ""
    return f"{tester} ({role})" if tester and role else tester or role or "kfr-conformance"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConformanceError):
        return exc.diagnostics()
    return f"{type(exc).__name__}: {exc}"


def ordered_results(specs_in_order: Sequence[Any], results: dict[str, CaseResult],
                    fallback) -> list[CaseResult]:
    """The run's cases in sheet order; rows without a result get ``fallback(spec)``."""
    return [results.get(spec.case_id) or fallback(spec) for spec in specs_in_order]
