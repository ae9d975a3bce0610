"""The batch's ``customers`` text, validated as it streams in.

The format is ``ID[#YYYY-MM-DD],ID[#YYYY-MM-DD],...``. One bad identifier (KFR-005) or
date (KFR-010) rejects the whole file; a trailing comma (or whitespace) is tolerated, an
empty element in the middle is not. The text arrives in pieces of any size, split
anywhere (even inside a UTF-8 character), and a 10 MB file must not be held as Python
objects: every complete element is checked and written out in compact form
(``id`` or ``id#date``, comma-separated) to a binary sink, and only the element that
straddles two pieces is kept — in a bounded form, since one "element" may be megabytes
of padding.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from dataclasses import dataclass
from typing import IO

from conformance.sandbox.identifiers import acceptable_customer_id

MAX_FREE_ID_LENGTH = 64  # when ID checks are off (misbehave), still keep rows sane
SLICE_BYTES = 64 * 1024
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Longer than any value the checks accept; stands in for a field that grew past the cap.
_OVERLONG = "x" * (MAX_FREE_ID_LENGTH + 1)

Entry = tuple[str, str | None]  # (customer id, start date or None = default)


@dataclass
class BatchRejected(Exception):
    """The file is refused: HTTP status, KFR error code and a message for the bank."""

    status: int
    code: str
    message: str


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


class _Field:
    """One side of an element's ``#``, stripped of surrounding whitespace, kept bounded:
    what matters is its value when short, or only that it is longer than any valid value."""

    __slots__ = ("overlong", "text", "trailing_space")

    def __init__(self) -> None:
        self.text = ""
        self.trailing_space = False  # whitespace was cut off the end to stay bounded
        self.overlong = False

    def add(self, piece: str) -> None:
        if self.overlong:
            return
        if not self.text:
            piece = piece.lstrip()
            if not piece:
                return
        if self.trailing_space:
            # Anything but more whitespace makes the field longer than the cap.
            if piece.strip():
                self.overlong, self.text = True, ""
            return
        self.text += piece
        if len(self.text) > MAX_FREE_ID_LENGTH:
            stripped = self.text.rstrip()
            if len(stripped) > MAX_FREE_ID_LENGTH:
                self.overlong, self.text = True, ""
            else:
                self.text, self.trailing_space = stripped, True

    def value(self) -> str:
        return _OVERLONG if self.overlong else self.text.strip()


class _PartialElement:
    """The element that straddles pieces: ``id`` and, after the first ``#``, the date."""

    __slots__ = ("cid", "day")

    def __init__(self) -> None:
        self.cid = _Field()
        self.day: _Field | None = None

    def add(self, piece: str) -> None:
        if self.day is None:
            before, sep, after = piece.partition("#")
            self.cid.add(before)
            if not sep:
                return
            self.day = _Field()
            piece = after
        self.day.add(piece)

    def parts(self) -> tuple[str, str, str]:
        if self.day is None:
            return self.cid.value(), "", ""
        return self.cid.value(), "#", self.day.value()


class CustomerListParser:
    """Feed the ``customers`` part's bytes in any pieces, then ``end()``.

    ``error`` holds the first problem (the whole file is then refused), ``utf8_error``
    whether the text is not UTF-8 (checked to the end: it outranks a bad element).
    Accepted entries go to ``sink`` in compact form and, with ``collect``, to ``entries``.
    """

    def __init__(
        self,
        sink: IO[bytes] | None = None,
        *,
        collect: bool = False,
        check_ids: bool = True,
        check_dates: bool = True,
        keep_dates: bool = True,
        strict_birth_dates: bool = False,
    ) -> None:
        self._sink = sink
        self.entries: list[Entry] | None = [] if collect else None
        self._check_ids = check_ids
        self._check_dates = check_dates
        self._keep_dates = keep_dates
        self._strict = strict_birth_dates
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._partial = _PartialElement()
        self._position = 0  # elements seen, blanks included (messages count from 1)
        self._pending_blank: int | None = None  # first blank element not yet known to be trailing
        self.count = 0
        self.error: BatchRejected | None = None
        self.utf8_error = False
        self._ended = False

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        # In slices, so that a large read never becomes one large list of strings.
        for start in range(0, len(data), SLICE_BYTES):
            if self.utf8_error:
                return
            try:
                text = self._decoder.decode(data[start : start + SLICE_BYTES])
            except UnicodeDecodeError:
                self.utf8_error = True
                return
            if self.error is None and text:
                self._take(text)

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if not self.utf8_error:
            try:
                tail = self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.utf8_error = True
                return
            if self.error is None:
                if tail:
                    self._take(tail)
                self._element(*self._partial.parts())
        if self.error is None and self.count == 0:
            self.error = BatchRejected(400, "KFR-004", "Filen inneholder ingen kunder.")

    # ------------------------------------------------------------------ elements

    def _take(self, text: str) -> None:
        items = text.split(",")
        self._partial.add(items[0])
        if len(items) == 1:
            return
        self._element(*self._partial.parts())
        self._partial = _PartialElement()
        accepted: list[str] = []
        for raw in items[1:-1]:
            if self.error is not None:
                break
            cid, sep, day = raw.strip().partition("#")
            entry = self._element(cid.strip(), sep, day.strip(), write=False)
            if entry is not None:
                accepted.append(entry)
        self._write(accepted)
        if self.error is None:
            self._partial.add(items[-1])

    def _element(self, cid: str, sep: str, day: str, *, write: bool = True) -> str | None:
        """Check one complete element; its compact form when accepted (written at once
        unless ``write`` is False: the caller writes a whole piece's entries in one go)."""
        if self.error is not None:
            return None
        self._position += 1
        if not cid and not sep:  # blank: fine at the end, an error if anything follows
            if self._pending_blank is None:
                self._pending_blank = self._position
            return None
        if self._pending_blank is not None:
            self._reject_id(self._pending_blank, "")
            return None
        position = self._position
        if self._check_ids:
            if not acceptable_customer_id(cid, strict_birth_dates=self._strict):
                self._reject_id(position, cid)
                return None
        elif not cid or len(cid) > MAX_FREE_ID_LENGTH or "#" in cid:
            self._reject_id(position, cid)
            return None
        start: str | None = None
        if sep:
            if _valid_date(day):
                start = day
            elif self._check_dates:
                self.error = BatchRejected(
                    400, "KFR-010", f"Ugyldig datoformat i element {position} (bruk YYYY-MM-DD)."
                )
                return None
        if not self._keep_dates:
            start = None
        self.count += 1
        if self.entries is not None:
            self.entries.append((cid, start))
        compact = f"{cid}#{start}" if start else cid
        if write:
            self._write([compact])
        return compact

    def _reject_id(self, position: int, cid: str) -> None:
        if self._check_ids:
            self.error = BatchRejected(
                400, "KFR-005", f"Ugyldig kundeidentifikator i element {position}."
            )
        else:
            self.error = BatchRejected(400, "KFR-004", f"Tomt eller for langt element {position}.")

    def _write(self, compact: list[str]) -> None:
        if not compact or self._sink is None:
            return
        text = ",".join(compact)
        # The first entry written gets no comma before it.
        if self.count > len(compact):
            text = "," + text
        self._sink.write(text.encode("utf-8"))


def parse_customers(
    text: str,
    *,
    check_ids: bool = True,
    check_dates: bool = True,
    keep_dates: bool = True,
    strict_birth_dates: bool = False,
) -> list[Entry]:
    """``ID[#YYYY-MM-DD],...`` → entries; the first bad element rejects the whole file."""
    parser = CustomerListParser(
        collect=True,
        check_ids=check_ids,
        check_dates=check_dates,
        keep_dates=keep_dates,
        strict_birth_dates=strict_birth_dates,
    )
    parser.feed(text.encode("utf-8"))
    parser.end()
    if parser.error is not None:
        raise parser.error
    return parser.entries or []
