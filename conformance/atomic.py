"""Writing a file all at once or not at all — the one way every module writes results.

A reader (the pack step, an auditor's file share, a crash) sees the old file or the new
one, never half of either: a hidden temporary file beside the target, fsynced, then
``os.replace``d, and the folder synced so the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(target: Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``target`` all at once or not at all: a hidden temporary file beside it,
    fsynced, then ``os.replace``d. On any error the temporary file is removed.
    ``mode`` 0o600 keeps private keys private from the first byte."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every filesystem lets a directory be synced; the rename is what matters
    finally:
        os.close(fd)


def atomic_write_bytes(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    with atomic_file(target, mode=mode) as handle:
        handle.write(data)
