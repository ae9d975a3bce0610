"""Reading a received zip as hostile input.

Packs arrive by e-mail from outside, so the zip is read in memory and never extracted.
Everything that can be refused from the central directory is refused before a single
byte is inflated: bad names (absolute, ``..``, backslashes, drive letters, control
characters), duplicates, symlinks and other special files, encryption, unknown compression,
too many entries, declared sizes over the cap, declared ratios of a bomb. Then every read
is a bounded stream: the declared sizes are not trusted, so the bytes actually inflated are
counted against the per-entry ratio and the total cap as they come.

Every refusal is an ``InvalidPack`` with its own ``code`` and a plain-language message.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

from conformance.errors import InvalidPack
from conformance.pack._text import invalid

MiB = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 256 * 1024
# What zipfile and zlib raise on damaged data; all of it means "unusable pack".
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    IndexError,
    KeyError,
)


@dataclass(frozen=True)
class ZipLimits:
    """Caps for reading an untrusted zip. The defaults fit any real pack many times over:
    a pack is a few MB, KFR's own batch limit is 10 MB per file."""

    max_input_bytes: int = 512 * MiB
    max_entries: int = 10_000
    max_total_uncompressed: int = 512 * MiB
    max_entry_ratio: int = 200  # uncompressed / compressed, checked once an entry passes…
    ratio_floor: int = 1 * MiB  # …this size, so small well-compressing files are fine
    max_name_length: int = 400
    # JSON that is parsed (manifest, evidence) costs many times its size in memory.
    max_json_bytes: int = 32 * MiB


def name_problem(name: str, *, max_length: int = 400) -> str | None:
    """Why ``name`` is not a safe relative member path, or None. Directory entries end in '/'."""
    if not name or name in {"/", "."}:
        return "empty"
    if len(name) > max_length:
        return "too_long"
    if _CONTROL.search(name):
        return "control"
    if "\\" in name:
        return "backslash"
    if name.startswith("/"):
        return "absolute"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "drive"
    parts = name.rstrip("/").split("/")
    if any(part == ".." for part in parts):
        return "parent"
    if any(part in {"", "."} for part in parts):
        return "dot"
    return None


class SafeZip:
    """A zip held in memory, checked on open; read entries with ``read`` or ``digest``."""

    def __init__(self, data: bytes, limits: ZipLimits | None = None, *, lang: str = "nb") -> None:
        self.limits = limits or ZipLimits()
        self.lang = lang
        self._inflated = 0
        if len(data) > self.limits.max_input_bytes:
            raise invalid(
                "zip.input_too_large", lang, size=len(data), cap=self.limits.max_input_bytes
            )
        if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise invalid("zip.not_zip", lang)
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise invalid("zip.corrupt", lang, detail=_detail(exc)) from exc
        self._infos = self._check_directory(infos)

    def _check_directory(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        lang, limits = self.lang, self.limits
        if len(infos) > limits.max_entries:
            raise invalid("zip.too_many_entries", lang, count=len(infos), cap=limits.max_entries)
        files: dict[str, zipfile.ZipInfo] = {}
        seen: set[str] = set()
        declared_total = 0
        for info in infos:
            name = info.filename
            problem = name_problem(name, max_length=limits.max_name_length)
            if problem:
                raise invalid(f"zip.name.{problem}", lang, name=_show(name))
            folded = name.rstrip("/").casefold()
            if folded in seen:
                raise invalid("zip.duplicate", lang, name=_show(name))
            seen.add(folded)
            if info.flag_bits & 0x41:  # traditional or strong encryption
                raise invalid("zip.encrypted", lang, name=_show(name))
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise invalid("zip.symlink", lang, name=_show(name))
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise invalid("zip.special_file", lang, name=_show(name))
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise invalid("zip.compression", lang, name=_show(name))
            if name.endswith("/"):
                if info.file_size:
                    raise invalid("zip.corrupt", lang, detail=_show(name))
                continue
            declared_total += info.file_size
            if declared_total > limits.max_total_uncompressed:
                raise invalid("zip.too_large", lang, cap=limits.max_total_uncompressed)
            if self._ratio_exceeded(info.file_size, info.compress_size):
                raise invalid("zip.bomb", lang, name=_show(name))
            files[name] = info
        return files

    def _ratio_exceeded(self, inflated: int, compressed: int) -> bool:
        limits = self.limits
        return inflated > limits.ratio_floor and inflated > limits.max_entry_ratio * max(
            compressed, 1
        )

    @property
    def names(self) -> list[str]:
        """File entries (directories left out), in the zip's order."""
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def _stream(self, name: str):
        info = self._infos[name]
        produced = 0
        try:
            with self._zip.open(info) as handle:
                while True:
                    chunk = handle.read(_CHUNK)
                    if not chunk:
                        break
                    produced += len(chunk)
                    self._inflated += len(chunk)
                    if self._inflated > self.limits.max_total_uncompressed:
                        raise invalid(
                            "zip.too_large", self.lang, cap=self.limits.max_total_uncompressed
                        )
                    if self._ratio_exceeded(produced, info.compress_size):
                        raise invalid("zip.bomb", self.lang, name=_show(name))
                    yield chunk
        except InvalidPack:
            raise
        except _ZIP_ERRORS as exc:
            raise invalid("zip.corrupt", self.lang, detail=_detail(exc)) from exc
        if produced != info.file_size:
            raise invalid("zip.corrupt", self.lang, detail=_show(name))

    def read(self, name: str) -> bytes:
        """The entry's bytes, inflated under the caps."""
        return b"".join(self._stream(name))

    def digest(self, name: str) -> tuple[str, int]:
        """SHA-256 (hex) and size of the entry, streamed: the bytes are not kept."""
        hasher = hashlib.sha256()
        size = 0
        for chunk in self._stream(name):
            hasher.update(chunk)
            size += len(chunk)
        return hasher.hexdigest(), size

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _show(name: str) -> str:
    """A member name safe to print: control characters escaped, length bounded."""
    shown = name.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 120 else shown[:117] + "…"


def _detail(exc: BaseException) -> str:
    return _show(str(exc) or type(exc).__name__)
