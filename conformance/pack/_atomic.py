"""Writing a file all at once or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Write ``target`` all at once or not at all: a hidden temporary file beside it,
    fsynced, then ``os.replace``d. On any error the temporary file is removed."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
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


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_file(target) as handle:
        handle.write(data)
