"""Race-safe file creation for state shared by several sandbox processes on one data_dir."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from conformance.atomic import atomic_write_bytes
from conformance.errors import SandboxError


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"Kan ikke opprette mappen {path}: {exc.strerror or exc}.") from exc
    return path


def create_once(path: Path, make: Callable[[], bytes], *, private: bool = False) -> bytes:
    """The content of ``path``, creating it with ``make()`` if it does not exist yet.

    When two processes start at once, both may call ``make()``, but only one file wins:
    the content is written to a unique temporary file and hard-linked into place, which
    fails if the name exists. The loser reads the winner's file, never a half-written one.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SandboxError(f"Kan ikke lese {path}: {exc.strerror or exc}.") from exc
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(make())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its file
        except OSError:
            # A file system without hard links: fall back to an exclusive create-and-copy.
            with contextlib.suppress(FileExistsError):
                fd = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644
                )
                with os.fdopen(fd, "wb") as fh:
                    fh.write(tmp.read_bytes())
        return path.read_bytes()
    except OSError as exc:
        raise SandboxError(f"Kan ikke skrive {path}: {exc.strerror or exc}.") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    ensure_dir(path.parent)
    try:
        atomic_write_bytes(path, data, mode=0o600 if private else 0o644)
    except OSError as exc:
        raise SandboxError(f"Kan ikke skrive {path}: {exc.strerror or exc}.") from exc
