"""Batch files on disk: the ``customers`` text KFR takes, written in pieces of bounded size
and read back element by element without holding a whole file in memory."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.atomic import atomic_file
from conformance.errors import UsageError

__all__ = [
    "FILE_GLOB",
    "BatchFile",
    "BatchFileWriter",
    "batch_file_name",
    "expand_batch_paths",
    "iter_elements",
    "read_batch_file",
    "sha256_of",
]

FILE_PREFIX = "kfr-batch-"
FILE_GLOB = f"{FILE_PREFIX}*.txt"
READ_CHUNK = 1 << 20


def batch_file_name(number: int) -> str:
    return f"{FILE_PREFIX}{number:04d}.txt"


@dataclass(frozen=True)
class BatchFile:
    name: str
    path: Path
    ids: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ids": self.ids, "bytes": self.bytes, "sha256": self.sha256}


class BatchFileWriter:
    """Appends entries (``ID`` or ``ID#YYYY-MM-DD``) to numbered files of at most
    ``max_bytes`` each. Each file is written atomically: it appears whole or not at all."""

    FLUSH_EVERY = 65_536

    def __init__(self, out_dir: Path, max_bytes: int) -> None:
        self.out_dir = Path(out_dir)
        self.max_bytes = max_bytes
        self.files: list[BatchFile] = []
        self._stack: contextlib.ExitStack | None = None
        self._handle = None
        self._digest = hashlib.sha256()
        self._pending: list[str] = []
        self._size = 0
        self._count = 0

    def add_many(self, entries: Iterable[str]) -> None:
        limit = self.max_bytes
        for entry in entries:
            needed = len(entry) + (1 if self._count else 0)
            if self._count and self._size + needed > limit:
                self._finish()
                needed = len(entry)
            if self._handle is None:
                if needed > limit:
                    raise UsageError(f"Største filstørrelse {limit} byte er mindre enn én ID.")
                self._open()
            self._pending.append(entry)
            self._size += needed
            self._count += 1
            if len(self._pending) >= self.FLUSH_EVERY:
                self._flush()

    def close(self) -> list[BatchFile]:
        if self._handle is not None:
            self._finish()
        return self.files

    def abort(self) -> None:
        """Drop the file being written (its temporary file is removed)."""
        if self._stack is not None:
            stack, self._stack, self._handle = self._stack, None, None
            with contextlib.suppress(RuntimeError):
                stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def _open(self) -> None:
        self._stack = contextlib.ExitStack()
        path = self.out_dir / batch_file_name(len(self.files) + 1)
        self._handle = self._stack.enter_context(atomic_file(path))
        self._path = path
        self._digest = hashlib.sha256()
        self._size = self._count = 0
        self._written_any = False

    def _flush(self) -> None:
        if not self._pending:
            return
        data = ",".join(self._pending).encode("ascii")
        if self._written_any:
            data = b"," + data
        self._handle.write(data)
        self._digest.update(data)
        self._written_any = True
        self._pending = []

    def _finish(self) -> None:
        self._flush()
        assert self._stack is not None
        self._stack.close()  # fsync + rename: the file is complete on disk
        self.files.append(
            BatchFile(self._path.name, self._path, self._count, self._size, self._digest.hexdigest())
        )
        self._stack = self._handle = None


def iter_elements(path: Path) -> Iterator[str]:
    """The comma-separated elements of a batch file, in order, read in 1 MiB pieces.
    Bytes that are not ASCII come through as they are (latin-1) for the checks to name."""
    with open(path, "rb") as handle:
        carry = ""
        while True:
            chunk = handle.read(READ_CHUNK)
            if not chunk:
                break
            parts = (carry + chunk.decode("latin-1")).split(",")
            carry = parts.pop()
            yield from parts
        yield carry


def read_batch_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"Kan ikke lese {path}: {exc.strerror or exc}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def expand_batch_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder stands for its ``kfr-batch-*.txt`` files (else its ``*.txt``),
    in name order. Missing paths and empty folders are usage errors."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(path.glob(FILE_GLOB)) or sorted(path.glob("*.txt"))
            if not inside:
                raise UsageError(f"Mappen {path} har ingen batchfiler ({FILE_GLOB}).")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path} finnes ikke.")
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(path)
    return unique
