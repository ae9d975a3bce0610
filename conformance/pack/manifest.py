"""The manifest: what a pack claims, as canonical JSON — the bytes the bank signs.

``Manifest.from_bytes`` is strict (every field typed, no duplicate keys, safe file paths):
a ``Manifest`` that exists is well-formed, so the verifier's checks can rely on its shape.
``build_manifest`` hashes every file of a results folder; which files belong in a pack is
decided here once (``member_files``) for the builder and the folder verifier alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import PackError
from conformance.models import Outcome, RunRecord
from conformance.pack._text import invalid, text
from conformance.pack.safezip import name_problem

MANIFEST_FORMAT = "kfr-conformance-manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.p7s"
RUN_RECORD_NAME = "run.json"
EMAIL_NAME = "c3-epost.eml"

_PACK_ZIP = re.compile(r"^\d{9}-KFR-integrasjonstest-\d{4}-\d{2}-\d{2}\.zip$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def pack_file_name(orgnr: str, started_at: str) -> str:
    """``<orgnr>-KFR-integrasjonstest-<YYYY-MM-DD>.zip``, the date being the run's start (UTC)."""
    return f"{orgnr}-KFR-integrasjonstest-{parse_time(started_at).date().isoformat()}.zip"


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time from a run record, in UTC; naive times are taken as UTC."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def is_excluded(relative: str) -> bool:
    """Files in a results folder that never go into the pack: the pack itself, the e-mail,
    hidden and temporary files (an interrupted build may leave ``.<name>.tmp``)."""
    parts = relative.split("/")
    name = parts[-1]
    return (
        any(part.startswith(".") for part in parts)
        or name.endswith((".tmp", ".eml"))
        or (len(parts) == 1 and bool(_PACK_ZIP.match(name)))
    )


def member_files(results_dir: Path) -> list[str]:
    """Relative POSIX paths of every file that goes into the pack and its manifest's file
    list (so not the manifest and its signature), sorted. Symlinks and special files are
    refused: a link could pull a file from outside the run into the pack."""
    found: list[str] = []
    for path in sorted(results_dir.rglob("*")):
        relative = path.relative_to(results_dir).as_posix()
        if is_excluded(relative) or relative in {MANIFEST_NAME, SIGNATURE_NAME}:
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise PackError(text("folder.special", "nb", name=relative))
        if path.is_file():
            if name_problem(relative):
                raise PackError(text(f"zip.name.{name_problem(relative)}", "nb", name=relative))
            found.append(relative)
    return sorted(found)


def file_sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    return digest.hexdigest(), path.stat().st_size


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class CaseEntry:
    id: str
    title: str
    expected: Mapping[str, Any]  # {"text", "status", "error_code"}
    actual: str
    outcome: str
    correlation_ids: tuple[str, ...] = ()
    evidence_file: str | None = None
    actual_status: int | None = None
    actual_error_code: str | None = None
    message: str = ""
    manual: bool = False
    confirmed_by: str | None = None
    confirmed_at: str | None = None
    performed_by: str | None = None  # "verktøyet" | "kjernesystemet"; None in older packs

    @property
    def passed(self) -> bool:
        """Passed, and for a manual row confirmed by a named person."""
        if self.outcome != str(Outcome.PASSED):
            return False
        return not self.manual or bool(self.confirmed_by)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "expected": dict(self.expected),
            "actual": self.actual,
            "actual_status": self.actual_status,
            "actual_error_code": self.actual_error_code,
            "outcome": self.outcome,
            "message": self.message,
            "manual": self.manual,
            "confirmed_by": self.confirmed_by,
            "confirmed_at": self.confirmed_at,
            "correlation_ids": list(self.correlation_ids),
            "evidence_file": self.evidence_file,
            "performed_by": self.performed_by,
        }


@dataclass(frozen=True)
class Manifest:
    run_id: str
    bank: Mapping[str, str]  # {"orgnr", "name"}
    environment: Mapping[str, str]  # {"name", "kfr_base_url", "maskinporten_issuer"}
    sheet: Mapping[str, str]  # {"file_name", "version", "sha256"}
    runner: Mapping[str, str]
    attestation: Mapping[str, str]  # {"tester", "role"}
    started_at: str
    finished_at: str
    counts: Mapping[str, int]
    cases: tuple[CaseEntry, ...] = ()
    files: tuple[FileEntry, ...] = ()
    format: str = field(default=MANIFEST_FORMAT)
    version: int = field(default=MANIFEST_VERSION)

    @property
    def bank_orgnr(self) -> str:
        return self.bank["orgnr"]

    @property
    def is_sandbox(self) -> bool:
        return self.environment.get("name") != "test"

    @property
    def pack_file_name(self) -> str:
        return pack_file_name(self.bank_orgnr, self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "run_id": self.run_id,
            "bank": dict(self.bank),
            "environment": dict(self.environment),
            "sheet": dict(self.sheet),
            "runner": dict(self.runner),
            "attestation": dict(self.attestation),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": dict(self.counts),
            "cases": [case.to_dict() for case in self.cases],
            "files": [entry.to_dict() for entry in self.files],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, UTF-8, two-space indent, one trailing newline."""
        body = json.dumps(self.to_dict(), ensure_ascii=False, indent=2, sort_keys=True)
        return (body + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes, *, lang: str = "nb") -> Manifest:
        """Parse and validate; anything malformed is ``InvalidPack`` with the reason."""
        try:
            data = json.loads(
                raw.decode("utf-8"),
                object_pairs_hook=_no_duplicate_keys,
                parse_constant=_no_constants,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise invalid("manifest.json", lang, detail=str(exc)[:200]) from exc
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise invalid("manifest.format", lang)
        if data.get("version") != MANIFEST_VERSION:
            raise invalid("manifest.version", lang, version=str(data.get("version"))[:20])
        try:
            return _manifest_from_dict(data)
        except _FieldError as exc:
            raise invalid("manifest.field", lang, detail=str(exc)) from exc


class _FieldError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers could read two different manifests from the same signed bytes.
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise _FieldError(f"{where}.{key} mangler / missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _FieldError(f"{where}.{key} har feil type / has the wrong type")
    return value


def _str_map(data: Mapping[str, Any], key: str, required: tuple[str, ...]) -> dict[str, str]:
    value = _get(data, key, dict, "manifest")
    for name in required:
        _get(value, name, str, key)
    if not all(isinstance(v, str) for v in value.values()):
        raise _FieldError(f"{key}: bare tekstverdier / text values only")
    return dict(value)


def _optional(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if data.get(key) is None:
        return None
    return _get(data, key, kind, where)


def _manifest_from_dict(data: Mapping[str, Any]) -> Manifest:
    bank = _str_map(data, "bank", ("orgnr", "name"))
    environment = _str_map(data, "environment", ("name", "kfr_base_url"))
    sheet = _str_map(data, "sheet", ("file_name", "version", "sha256"))
    runner = _str_map(data, "runner", ())
    attestation = _str_map(data, "attestation", ())
    for key in ("started_at", "finished_at"):
        try:
            parse_time(_get(data, key, str, "manifest"))
        except ValueError as exc:
            raise _FieldError(f"manifest.{key}: ikke et tidspunkt / not a time") from exc
    counts = _get(data, "counts", dict, "manifest")
    for key in counts:
        _get(counts, key, int, "counts")
    cases = tuple(
        _case_from_dict(item, i) for i, item in enumerate(_get(data, "cases", list, "manifest"))
    )
    files = tuple(
        _file_from_dict(item, i) for i, item in enumerate(_get(data, "files", list, "manifest"))
    )
    paths = [entry.path for entry in files]
    if len(set(paths)) != len(paths):
        raise _FieldError("files: samme sti to ganger / a path appears twice")
    if {MANIFEST_NAME, SIGNATURE_NAME} & set(paths):
        raise _FieldError("files: lister manifestet selv / lists the manifest itself")
    return Manifest(
        run_id=_get(data, "run_id", str, "manifest"),
        bank=bank,
        environment=environment,
        sheet=sheet,
        runner=runner,
        attestation=attestation,
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        counts=dict(counts),
        cases=cases,
        files=files,
    )


def _case_from_dict(item: Any, index: int) -> CaseEntry:
    where = f"cases[{index}]"
    if not isinstance(item, dict):
        raise _FieldError(f"{where}: ikke et objekt / not an object")
    correlation_ids = _get(item, "correlation_ids", list, where)
    if not all(isinstance(c, str) for c in correlation_ids):
        raise _FieldError(f"{where}.correlation_ids: bare tekst / text only")
    outcome = _get(item, "outcome", str, where)
    if outcome not in {str(o) for o in Outcome}:
        raise _FieldError(f"{where}.outcome: ukjent / unknown «{outcome[:40]}»")
    evidence_file = _optional(item, "evidence_file", str, where)
    if evidence_file is not None and name_problem(evidence_file):
        raise _FieldError(f"{where}.evidence_file: utrygg sti / unsafe path")
    manual = item.get("manual", False)
    if not isinstance(manual, bool):
        raise _FieldError(f"{where}.manual har feil type / has the wrong type")
    return CaseEntry(
        id=_get(item, "id", str, where),
        title=_get(item, "title", str, where),
        expected=_get(item, "expected", dict, where),
        actual=_get(item, "actual", str, where),
        outcome=outcome,
        correlation_ids=tuple(correlation_ids),
        evidence_file=evidence_file,
        actual_status=_optional(item, "actual_status", int, where),
        actual_error_code=_optional(item, "actual_error_code", str, where),
        message=_optional(item, "message", str, where) or "",
        manual=manual,
        confirmed_by=_optional(item, "confirmed_by", str, where),
        confirmed_at=_optional(item, "confirmed_at", str, where),
        performed_by=_optional(item, "performed_by", str, where),
    )


def _file_from_dict(item: Any, index: int) -> FileEntry:
    where = f"files[{index}]"
    if not isinstance(item, dict):
        raise _FieldError(f"{where}: ikke et objekt / not an object")
    path = _get(item, "path", str, where)
    if name_problem(path) or path.endswith("/"):
        raise _FieldError(f"{where}.path: utrygg sti / unsafe path")
    sha256 = _get(item, "sha256", str, where)
    if not _SHA256.match(sha256):
        raise _FieldError(f"{where}.sha256: ikke en SHA-256 / not a SHA-256")
    size = _get(item, "size", int, where)
    if size < 0:
        raise _FieldError(f"{where}.size: negativ / negative")
    return FileEntry(path, sha256, size)


def _texts(data: Mapping[str, Any], keys: tuple[str, ...] = ()) -> dict[str, str]:
    """Text values only (the manifest's maps are str → str): ``keys`` always present,
    other keys kept when they have a value."""
    result = {key: "" if data.get(key) is None else str(data[key]) for key in keys}
    result.update({k: str(v) for k, v in data.items() if k not in result and v is not None})
    return result


def build_manifest(results_dir: Path, record: RunRecord) -> Manifest:
    """The manifest for ``results_dir`` as it is now: ``record`` plus the SHA-256 and size
    of every pack member."""
    files = []
    for relative in member_files(results_dir):
        sha256, size = file_sha256(results_dir / relative)
        files.append(FileEntry(relative, sha256, size))
    cases = tuple(
        CaseEntry(
            id=case.case_id,
            title=case.title,
            expected={
                "text": case.expected.text,
                "status": case.expected.status,
                "error_code": case.expected.error_code,
            },
            actual=case.actual,
            outcome=str(case.outcome),
            correlation_ids=tuple(case.correlation_ids),
            evidence_file=case.evidence_file,
            actual_status=case.actual_status,
            actual_error_code=case.actual_error_code,
            message=case.message,
            manual=case.manual,
            confirmed_by=case.confirmed_by,
            confirmed_at=case.confirmed_at,
            performed_by=case.performed_by,
        )
        for case in record.cases
    )
    return Manifest(
        run_id=record.run_id,
        bank=_texts(record.bank, ("orgnr", "name")),
        environment=_texts(record.environment, ("name", "kfr_base_url", "maskinporten_issuer")),
        sheet=_texts(record.sheet, ("file_name", "version", "sha256")),
        runner=_texts(record.runner),
        attestation=_texts(record.attestation),
        started_at=record.started_at,
        finished_at=record.finished_at,
        counts=record.counts(),
        cases=cases,
        files=tuple(files),
    )
