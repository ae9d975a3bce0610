"""Resumable state files for ``upload`` and ``confirm``: JSON, written atomically, locked.

A state file is rewritten whole (temporary file, fsync, rename) at every step that must
survive a crash, so after ``kill -9`` it holds either the step before or the step after —
never half of one. A lock (``flock``; ``msvcrt`` on Windows) on a ``.lock`` file beside it
keeps two processes from working from one state; the operating system releases it when a
process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from conformance.atomic import atomic_write_bytes
from conformance.errors import UsageError

__all__ = ["StateLock", "load_state", "save_state", "utc_now"]


def utc_stamp(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return utc_stamp(dt.datetime.now(dt.UTC).timestamp())


def parse_utc(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load_state(path: Path, fmt: str) -> dict[str, Any] | None:
    """The state in ``path``, None when there is none; a file of another kind or a
    damaged one is a usage error (never silently replaced)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"Kan ikke lese statusfilen {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UsageError(
            f"Statusfilen {path} er ikke gyldig JSON.",
            hint="Den skrives atomisk og skal ikke kunne bli halvskrevet; er den redigert for hånd?",
        ) from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise UsageError(f"{path} er ikke en statusfil av typen {fmt}.")
    return data


def save_state(path: Path, data: dict[str, Any]) -> None:
    data["updated_at"] = utc_now()
    atomic_write_bytes(path, (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode())


class StateLock:
    """Exclusive, non-blocking lock beside a state file, held for a ``with`` block."""

    def __init__(self, state_path: Path) -> None:
        self.path = Path(str(state_path) + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> StateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError as exc:
            os.close(fd)
            raise UsageError(
                f"En annen prosess arbeider allerede med {self.path.with_suffix('')}.",
                hint="Vent til den er ferdig, eller bruk en annen --state.",
            ) from exc
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
