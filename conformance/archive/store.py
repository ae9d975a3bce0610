"""The archive folder: adding packs crash-safely, finding orphans, repairing them.

Layout (every path in the index is relative to the archive folder)::

    index.sqlite3                      the index (see ``index.py``)
    .lock                              writers (add, repair) hold an flock on it
    <orgnr>/<file>.zip                 archived packs, never overwritten
    <orgnr>/.<sha256>.<file>.part      a pack being added (only while ``add`` runs)
    ukjent/<file>.zip                  packs whose bank could not be read

How an add survives a kill at any moment:

1. the bytes go to ``.<sha256>.<file>.part`` in the bank's folder and are fsynced;
2. one transaction: choose a free final name, insert the row, hard-link the temp file to
   the final name (a link never overwrites), fsync the folder, commit;
3. the temp name is removed.

So a committed row always has its file. A kill before 2 leaves a temp file whose name
carries the SHA-256 of what it should hold: ``repair`` completes it when the bytes match
and removes it when they do not (the source pack is still wherever it came from). A kill
inside 2 leaves the file without its row (SQLite rolls the row back): ``repair`` verifies
the file again and indexes it. A kill before 3 leaves a temp copy of an indexed pack:
``repair`` removes it. A row whose file disappeared later is marked ``missing``, never
deleted, so the index keeps the record of what was once there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.archive import replay
from conformance.archive.index import (
    INDEX_FILE,
    MISSING,
    PRESENT,
    ArchiveError,
    Index,
    PackEntry,
    open_index,
)
from conformance.archive.policy import to_record
from conformance.archive.replay import ReplayMatch
from conformance.archive.verdict import (
    UNKNOWN_BANK_DIR,
    bank_dir,
    judge,
    manifest_facts,
    sha256_hex,
)
from conformance.errors import InvalidPack
from conformance.pack.manifest import pack_file_name

try:  # POSIX; on Windows the archive runs without the writers' lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
TEMP_SUFFIX = ".part"
ARCHIVED_MODE = 0o444
MAX_PACK_BYTES = 512 << 20  # the verifier's own input cap; larger files are not packs
_TEMP_NAME = re.compile(r"^\.(?P<sha>[0-9a-f]{64})\.(?P<name>.+)\.part$")
_BANK_DIR = re.compile(r"^(\d{9}|" + UNKNOWN_BANK_DIR + r")$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

ADDED = "added"
RESTORED = "restored"  # a pack recorded as missing, put back under its row
DUPLICATE = "duplicate"
FAILED = "failed"


@dataclass(frozen=True)
class AddOutcome:
    """What happened to one input: ``action`` is added, restored, duplicate or failed
    (nothing stored)."""

    source: str
    action: str
    message: str
    entry: PackEntry | None = None
    links: tuple[ReplayMatch, ...] = ()  # other packs sharing its evidence

    @property
    def standing(self) -> str | None:
        return None if self.entry is None else replay.standing(self.entry, self.links)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "action": self.action,
            "message": self.message,
            "standing": self.standing,
            "replayed": bool(replay.flagged(self.links)),
            "links": [m.to_dict() for m in self.links],
            "entry": self.entry.to_dict() if self.entry else None,
        }


@dataclass
class Consistency:
    """Rows and files that do not match one another."""

    orphan_files: list[str] = field(default_factory=list)  # a pack file with no row
    missing_files: list[PackEntry] = field(default_factory=list)  # a row whose file is gone
    stray_temps: list[str] = field(default_factory=list)  # temp files left by a killed add
    known_missing: list[PackEntry] = field(default_factory=list)  # marked missing by repair
    writer_active: bool = False  # an add or repair held the lock while we looked

    @property
    def ok(self) -> bool:
        return not (self.orphan_files or self.missing_files or self.stray_temps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "orphan_files": self.orphan_files,
            "missing_files": [e.path for e in self.missing_files],
            "stray_temps": self.stray_temps,
            "known_missing": [e.path for e in self.known_missing],
            "writer_active": self.writer_active,
        }


@dataclass
class RepairOutcome:
    actions: list[str] = field(default_factory=list)  # Norwegian, one line per fix

    def to_dict(self) -> dict[str, Any]:
        return {"actions": self.actions}


def safe_file_name(name: str) -> str:
    """A pack's file name fit for the archive: plain characters, ends in ``.zip``."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).lstrip(".")
    if not base.lower().endswith(".zip"):
        base += ".zip"
    stem = base[:-4][:150] or "pakke"
    return stem + ".zip"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync; the file is read-only (0444) so nobody edits an archived pack by
    accident (verify-all would catch it, but better not to)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o644)  # a temp file left by a killed add is rewritten, not appended
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fchmod(fh.fileno(), ARCHIVED_MODE)
        os.fsync(fh.fileno())


def _place(temp: Path, final: Path) -> None:
    """Give ``temp`` the name ``final`` without ever replacing an existing file."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise ArchiveError(f"{final} finnes allerede; arkivet overskriver aldri en fil.") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links (some file shares): the writers' lock and the
        # name check made ``final`` free, so a rename is as safe here.
        if final.exists():
            raise ArchiveError(
                f"{final} finnes allerede; arkivet overskriver aldri en fil."
            ) from exc
        os.replace(temp, final)
        return
    temp.unlink()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mtime_iso(path: Path) -> str:
    moment = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    source: str  # for messages: the path, plus the attachment for an e-mail
    name: str  # the pack's file name as it arrived
    data: bytes | None
    problem: str | None = None
    name_from_manifest: bool = False  # an e-mail attachment: name it as the builder would


def _read_limited(path: Path) -> bytes:
    if path.stat().st_size > MAX_PACK_BYTES:
        raise ArchiveError(
            f"{path} er større enn {MAX_PACK_BYTES >> 20} MiB og er ikke en resultatpakke."
        )
    return path.read_bytes()


def _from_email(path: Path) -> _Candidate:
    """The pack attached to a C-3 e-mail, found by the verifier's own rule (exactly one zip).
    Its name is decided once the manifest is read (see ``Archive.add_bytes``)."""
    from conformance.pack.verify import pack_from_email

    try:
        data = pack_from_email(_read_limited(path))
    except InvalidPack as exc:
        return _Candidate(str(path), path.name, None, exc.message)
    return _Candidate(f"{path} (vedlegg)", f"{path.stem}.zip", data, name_from_manifest=True)


def _candidate(path: Path) -> _Candidate:
    try:
        if path.suffix.lower() == ".eml":
            return _from_email(path)
        return _Candidate(str(path), path.name, _read_limited(path))
    except ArchiveError as exc:
        return _Candidate(str(path), path.name, None, exc.message)
    except OSError as exc:
        return _Candidate(str(path), path.name, None, f"Kan ikke leses: {exc.strerror or exc}")


def iter_inputs(paths: Iterable[Path], *, skip: Path | None = None) -> Iterator[Path]:
    """The files to add: files as given; folders searched recursively for ``.zip`` and
    ``.eml`` (sorted, so imports are repeatable), leaving out ``skip`` (the archive)."""
    skip_resolved = skip.resolve() if skip else None
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.suffix.lower() not in (".zip", ".eml") or not found.is_file():
                    continue
                if skip_resolved and found.resolve().is_relative_to(skip_resolved):
                    continue
                yield found
        else:
            yield path


# --- the archive ---------------------------------------------------------------------------


class Archive:
    """An archive folder and its open index."""

    def __init__(self, root: Path, index: Index) -> None:
        self.root = root
        self.index = index

    @classmethod
    def open(cls, root: Path, *, create: bool = False) -> Archive:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ArchiveError(f"{root} er ikke en mappe.")
        archive = cls(root, open_index(root, create=create))
        try:
            archive.index_old_evidence()
        except BaseException:
            archive.close()
            raise
        return archive

    def index_old_evidence(self) -> int:
        """Fingerprint packs added before index v3 (or whose file was away then) from
        their stored bytes, and fill in run id, tester and rows. Their verdicts stay as
        they were. Returns how many packs were indexed."""
        pending = [
            e
            for e in self.index.unfingerprinted()
            if e.state == PRESENT and self.file_of(e).is_file()
        ]
        if not pending:
            return 0
        from conformance.archive.evidence import extract
        from conformance.pack.verify import VerificationPolicy, verify_pack_bytes

        done = 0
        with self.writer_lock():
            for entry in pending:
                data = self.file_of(entry).read_bytes()
                if sha256_hex(data) != entry.sha256:
                    continue  # changed since it was added: verify-all reports it
                try:
                    # The default policy is enough: only the manifest and the verifier's
                    # CorrelationID records are used, not its verdict.
                    report = verify_pack_bytes(data, VerificationPolicy())
                except InvalidPack:
                    report = None
                manifest = report.manifest if report is not None else None
                with self.index.transaction():
                    if manifest is not None:
                        self.index.set_facts(entry.id or 0, **manifest_facts(manifest))
                    self.index.set_evidence(entry.id or 0, extract(data, report, manifest))
                done += 1
        return done

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file_of(self, entry: PackEntry) -> Path:
        return self.root.joinpath(*entry.path.split("/"))

    def entries(self, **filters: Any) -> list[PackEntry]:
        return self.index.entries(**filters)

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Held by add and repair: one writer at a time, released by the kernel on a kill."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _writer_active(self) -> bool:
        if fcntl is None:  # pragma: no cover
            return False
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- add ------------------------------------------------------------------------------

    def add(
        self,
        paths: Iterable[Path],
        policy: Any,
        *,
        on_outcome: Callable[[AddOutcome], None] | None = None,
    ) -> list[AddOutcome]:
        """Add every pack in ``paths`` (files, e-mails, folders). Each pack is its own
        transaction, so a failure or a kill never takes the packs before it along."""
        outcomes = []
        for path in iter_inputs(paths, skip=self.root):
            if not path.exists():
                outcome = AddOutcome(str(path), FAILED, "Finnes ikke.")
            else:
                candidate = _candidate(path)
                if candidate.data is None:
                    outcome = AddOutcome(candidate.source, FAILED, candidate.problem or "")
                else:
                    outcome = self.add_bytes(
                        candidate.data,
                        candidate.name,
                        policy,
                        source=candidate.source,
                        name_from_manifest=candidate.name_from_manifest,
                    )
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        return outcomes

    def add_bytes(
        self,
        data: bytes,
        name: str,
        policy: Any,
        *,
        source: str = "",
        name_from_manifest: bool = False,
    ) -> AddOutcome:
        """Add one pack given as bytes; ``name`` is the file name it arrived under."""
        source = source or name
        sha = sha256_hex(data)
        known = self.index.by_sha256(sha)
        if known is not None and (known.state == MISSING or not self.file_of(known).exists()):
            with self.writer_lock():  # the bytes are here: put the lost file back
                return self._restore(data, sha, source)
        if known is not None:
            return _duplicate(source, known)
        entry = judge(data, policy, source_name=Path(name).name)
        if name_from_manifest and entry.orgnr and entry.run_started_at:
            with contextlib.suppress(ValueError):
                entry.source_name = pack_file_name(entry.orgnr, entry.run_started_at)
        with self.writer_lock():
            outcome = self._store(data, entry, source, policy)
        if outcome.action == ADDED and outcome.entry is not None:
            links = tuple(replay.links_of(self.index, outcome.entry))
            outcome = AddOutcome(outcome.source, ADDED, outcome.message, outcome.entry, links)
        return outcome

    def _store(self, data: bytes, entry: PackEntry, source: str, policy: Any) -> AddOutcome:
        """Write, then index and place in one transaction (caller holds the writer lock)."""
        folder_name = bank_dir(entry.orgnr)
        folder = self.root / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_file_name(entry.source_name)
        temp = folder / f".{entry.sha256}.{name}{TEMP_SUFFIX}"
        _write_synced(temp, data)
        final: Path | None = None
        placed: Path | None = None
        try:
            with self.index.transaction():
                known = self.index.by_sha256(entry.sha256)
                if known is not None:  # another process added it meanwhile
                    temp.unlink()
                    return _duplicate(source, known)
                final = self._free_name(folder, folder_name, name)
                entry.path = f"{folder_name}/{final.name}"
                self.index.add_certificates(to_record(policy)[1])
                self.index.insert(entry)
                _place(temp, final)
                placed = final
                _fsync_dir(folder)
        except BaseException:
            # Not committed: take back what was placed so no file is left without its row.
            if placed is not None and self.index.by_sha256(entry.sha256) is None:
                placed.unlink(missing_ok=True)
            temp.unlink(missing_ok=True)
            raise
        verdict = "gyldig" if entry.is_valid else "UGYLDIG"
        return AddOutcome(source, ADDED, f"Lagt til som {entry.path} ({verdict}).", entry)

    def _restore(self, data: bytes, sha: str, source: str) -> AddOutcome:
        """The bytes of a pack whose file is gone came in again: put them back under its
        row (a kill half-way leaves a file under the row's name, which repair accepts)."""
        known = self.index.by_sha256(sha)  # again, now that we hold the lock
        if known is None or (known.state == PRESENT and self.file_of(known).exists()):
            return _duplicate(source, known) if known else AddOutcome(source, FAILED, "")
        target = self.file_of(known)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{known.sha256}.{target.name}{TEMP_SUFFIX}"
        _write_synced(temp, data)
        try:
            if target.exists():  # something else took the name meanwhile: never overwrite
                target = self._free_name(target.parent, target.parent.name, target.name)
            _place(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        rel = f"{target.parent.name}/{target.name}"
        with self.index.transaction():
            self.index.set_state(known.id, PRESENT, path=rel)
        restored = self.index.by_sha256(known.sha256)
        return AddOutcome(source, RESTORED, f"Manglet i arkivet; lagt tilbake som {rel}.", restored)

    def _free_name(self, folder: Path, folder_name: str, name: str) -> Path:
        stem, suffix = name[:-4], name[-4:]
        for n in range(1, 100_000):
            candidate = name if n == 1 else f"{stem}-{n}{suffix}"
            if not (folder / candidate).exists() and not self.index.by_path(
                f"{folder_name}/{candidate}"
            ):
                return folder / candidate
        raise ArchiveError(f"Fant ikke et ledig filnavn for {name} i {folder}.")

    # -- consistency ------------------------------------------------------------------------

    def _pack_files(self) -> tuple[list[str], list[Path]]:
        """Pack files (relative paths) and temp files in the bank folders."""
        packs: list[str] = []
        temps: list[Path] = []
        if not self.root.is_dir():
            return packs, temps
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or not _BANK_DIR.match(folder.name):
                continue
            for item in sorted(folder.iterdir()):
                if not item.is_file():
                    continue
                if item.name.startswith(".") and item.name.endswith(TEMP_SUFFIX):
                    temps.append(item)
                elif item.name.lower().endswith(".zip") and not item.name.startswith("."):
                    packs.append(f"{folder.name}/{item.name}")
        return packs, temps

    def scan(self) -> Consistency:
        """Compare rows and files (names and presence only; ``verify-all`` reads the bytes)."""
        result = Consistency(writer_active=self._writer_active())
        files, temps = self._pack_files()
        on_disk = set(files)
        indexed = set()
        for entry in self.index.entries():
            indexed.add(entry.path)
            if entry.state == MISSING:
                if entry.path in on_disk:  # it came back: repair re-checks it
                    result.orphan_files.append(entry.path)
                else:
                    result.known_missing.append(entry)
            elif entry.path not in on_disk:
                result.missing_files.append(entry)
        result.orphan_files += [p for p in files if p not in indexed]
        result.stray_temps = [f"{t.parent.name}/{t.name}" for t in temps]
        return result

    def repair(self, policy: Any) -> RepairOutcome:
        """Make rows and files agree without losing a pack (see the module docstring)."""
        out = RepairOutcome()
        with self.writer_lock():
            _, temps = self._pack_files()
            for temp in temps:
                self._repair_temp(temp, policy, out)
            state = self.scan()
            for rel in state.orphan_files:
                self._repair_orphan(rel, policy, out)
            for entry in state.missing_files:
                with self.index.transaction():
                    self.index.set_state(entry.id, MISSING)
                out.actions.append(f"{entry.path}: filen mangler; raden er merket som manglende.")
        return out

    def _repair_temp(self, temp: Path, policy: Any, out: RepairOutcome) -> None:
        rel = f"{temp.parent.name}/{temp.name}"
        match = _TEMP_NAME.match(temp.name)
        actual = _file_sha256(temp)
        if match is None or actual != match["sha"]:
            temp.unlink()
            out.actions.append(
                f"{rel}: ufullstendig midlertidig fil fjernet (pakken ble aldri lagt til)."
            )
            return
        known = self.index.by_sha256(actual)
        if known is not None and self.file_of(known).exists():
            temp.unlink()
            out.actions.append(f"{rel}: kopi av {known.path}, som allerede er arkivert; fjernet.")
            return
        if known is not None:  # the row lost its file, and here are the bytes: put them back
            target = self.file_of(known)
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(temp, target)
            _fsync_dir(target.parent)
            with self.index.transaction():
                self.index.set_state(known.id, PRESENT)
            out.actions.append(f"{rel}: lagt tilbake som {known.path}.")
            return
        data = temp.read_bytes()
        entry = judge(data, policy, source_name=match["name"], origin="repair")
        entry.added_at = _mtime_iso(temp)
        outcome = self._store(data, entry, rel, policy)
        out.actions.append(f"{rel}: avbrutt tillegg fullført; {outcome.message}")

    def _repair_orphan(self, rel: str, policy: Any, out: RepairOutcome) -> None:
        path = self.root / rel
        data = path.read_bytes()
        sha = sha256_hex(data)
        known = self.index.by_sha256(sha)
        if known is not None and known.path == rel:
            with self.index.transaction():
                self.index.set_state(known.id, PRESENT)
            out.actions.append(f"{rel}: filen er tilbake; raden er merket som til stede.")
            return
        if known is not None and known.state == PRESENT and self.file_of(known).exists():
            if _file_sha256(self.file_of(known)) == sha:
                path.unlink()  # byte-for-byte the same as an archived pack: nothing is lost
                out.actions.append(f"{rel}: identisk kopi av {known.path}; fjernet.")
            else:
                out.actions.append(
                    f"{rel}: samme innhold som {known.path} skulle ha, men den filen er endret; "
                    "begge er beholdt — sjekk med verify-all."
                )
            return
        if known is not None:  # indexed under another name whose file is gone: adopt this one
            with self.index.transaction():
                self.index.set_state(known.id, PRESENT, path=rel)
            out.actions.append(f"{rel}: knyttet til raden som manglet filen sin ({known.path}).")
            return
        entry = judge(data, policy, source_name=path.name, origin="repair")
        entry.path = rel
        entry.added_at = _mtime_iso(path)
        with self.index.transaction():
            self.index.add_certificates(to_record(policy)[1])
            self.index.insert(entry)
        verdict = "gyldig" if entry.is_valid else "UGYLDIG"
        out.actions.append(f"{rel}: fil uten rad; verifisert og registrert ({verdict}).")


def _duplicate(source: str, known: PackEntry) -> AddOutcome:
    return AddOutcome(
        source, DUPLICATE, f"Allerede arkivert som {known.path}; ingenting endret.", known
    )


def is_archive(folder: Path) -> bool:
    return (folder / INDEX_FILE).is_file()
