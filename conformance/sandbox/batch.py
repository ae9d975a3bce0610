"""The batch file: multipart/form-data parsed from the raw body as it streams in.

Parsed by hand, not by a multipart library, because KFR's quirks are the point: a quoted
boundary in ``Content-Type`` or a boundary that does not match the body makes KFR answer
403 (FAQ, "Boundary i batch"); a library would quietly accept both.

``BatchStream`` takes the body in pieces of any size and never holds more than one piece
plus a few bytes: the ``customers`` part goes straight to ``CustomerListParser`` (which
writes the accepted entries to a sink), the small ``customer_type`` field is kept, other
parts are discarded. KFR's 10 MB limit counts the ``customers`` part alone
(``max_file_bytes``); the rest of the form may add ``FORM_ALLOWANCE`` on top. Going over
either raises ``BatchTooLarge`` at once, so the caller can stop reading.

A gateway refuses by size, before anyone reads the IDs: when the body may hold a file part
over the limit (its declared length is over it, or unknown), the caller passes a ``hold``
file, the part is written there unread, and its IDs are validated from there only once the
part has ended within the limit. A file over the limit is thus refused as soon as the limit
is passed, without validating a million IDs first; the answer is the same either way, since
the 413 outranks anything wrong inside the file.

The body is split the way ``re.split(rb"(?:\\r?\\n)?--BOUNDARY", body)`` splits it; the
answers, and which of several problems is reported, are the same whatever the pieces:
a boundary that never starts a line (403) → a broken part, in order → a missing closing
boundary → a missing field → not UTF-8 → a wrong ``customer_type`` (KFR-009) → the first
bad customer element (KFR-005/KFR-010).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO

from conformance.sandbox.customer_list import (
    MAX_FREE_ID_LENGTH,
    BatchRejected,
    CustomerListParser,
    Entry,
    parse_customers,
)

__all__ = [
    "FORM_ALLOWANCE",
    "MAX_FREE_ID_LENGTH",
    "BatchContent",
    "BatchRejected",
    "BatchStream",
    "BatchTooLarge",
    "boundary_from_content_type",
    "parse_batch",
    "parse_customers",
]

# RFC 2046 boundary characters (the space only inside, never last).
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_NAME = re.compile(r"""\bname\s*=\s*(?:"([^"]*)"|([^\s;"]+))""", re.IGNORECASE)

FORM_ALLOWANCE = 1024 * 1024  # the body outside the customers part: boundaries, headers, fields
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_FIELD_BYTES = 64 * 1024  # customer_type
MAX_PARTS = 100
FIRST_LINE_CAP = 4096  # lenient mode looks for the boundary on the body's first line
HOLD_READ_BYTES = 1024 * 1024  # a held file part is validated in pieces of this size


class BatchTooLarge(BatchRejected):
    """413: the file part (or the whole form) is over the limit."""


def _too_large(message: str) -> BatchTooLarge:
    return BatchTooLarge(413, "KFR-004", message)


def _bad_form(message: str) -> BatchRejected:
    return BatchRejected(400, "KFR-004", message)


def boundary_from_content_type(value: str, *, accept_quoted: bool = False) -> str | None:
    """The boundary from a ``multipart/form-data`` Content-Type, or raise BatchRejected.

    Returns None when the boundary is not usable but ``accept_quoted`` (the
    ``accept_any_boundary`` misbehaviour) asks to find it in the body instead.
    """
    mime, _, params = value.partition(";")
    if mime.strip().lower() != "multipart/form-data":
        raise BatchRejected(400, "KFR-004", "Content-Type må være multipart/form-data.")
    boundary: str | None = None
    for param in params.split(";"):
        key, eq, raw = param.strip().partition("=")
        if eq and key.strip().lower() == "boundary":
            boundary = raw.strip()
            break
    if boundary is None:
        if accept_quoted:
            return None
        raise BatchRejected(403, "KFR-004", "Content-Type mangler boundary.")
    if boundary.startswith('"'):
        if not accept_quoted:
            raise BatchRejected(
                403, "KFR-004", "Boundary i Content-Type kan ikke stå i anførselstegn (se KFR FAQ)."
            )
        boundary = boundary.strip('"')
    if not _BOUNDARY.match(boundary):
        if accept_quoted:
            return None
        raise BatchRejected(403, "KFR-004", "Ugyldig boundary i Content-Type.")
    return boundary


def _header_end(data: bytes | bytearray) -> tuple[int, int] | None:
    """Where a part's header block ends: (index, separator length), the blank line that
    comes first (CRLF CRLF or LF LF), or None."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    if crlf >= 0:
        return crlf, 4
    return None


def _part_name(headers: bytes | bytearray) -> str | None:
    name = None
    for line in bytes(headers).decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            match = _NAME.search(value)
            if match:
                name = match.group(1) if match.group(1) is not None else match.group(2)
    return name


def _strip_line_end(data: bytes) -> bytes:
    """Drop the line end that belongs to the delimiter after ``data``."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


@dataclass(frozen=True)
class BatchContent:
    customer_type: str
    entries: list[Entry]

    def serialise(self) -> str:
        """The compact form kept until ingestion: ``id`` or ``id#date``, comma-separated."""
        return ",".join(f"{cid}#{day}" if day else cid for cid, day in self.entries)


class BatchStream:
    """``feed(piece)`` as the body arrives, then ``finish()`` → the number of entries.

    Raises ``BatchRejected`` as soon as the answer is certain (a broken form, a file over
    the limit), otherwise at ``finish()``. Accepted entries are written to ``sink``.
    With ``hold`` (and ``max_file_bytes``), the ``customers`` part waits there unread until
    it is known to be within the limit (see the module's docstring).
    """

    def __init__(
        self,
        boundary: str | None,
        *,
        sink: IO[bytes] | None = None,
        collect: bool = False,
        lenient_boundary: bool = False,
        check_type: bool = True,
        check_ids: bool = True,
        check_dates: bool = True,
        keep_dates: bool = True,
        strict_birth_dates: bool = False,
        max_file_bytes: int | None = None,
        hold: IO[bytes] | None = None,
    ) -> None:
        self.customers = CustomerListParser(
            sink,
            collect=collect,
            check_ids=check_ids,
            check_dates=check_dates,
            keep_dates=keep_dates,
            strict_birth_dates=strict_birth_dates,
        )
        self._header_boundary = boundary
        self._check_type = check_type
        self._max_file = max_file_bytes
        # Without a limit nothing can be refused by size, so nothing needs holding back.
        self._hold = hold if max_file_bytes is not None else None
        self._held = 0  # bytes of the customers part waiting in ``hold``
        self._max_body = None if max_file_bytes is None else max_file_bytes + FORM_ALLOWANCE
        self._buf = bytearray()
        self._prev: int | None = None  # the last byte consumed (None: at the start)
        self._at_start = True
        self.received = 0
        self._file_bytes = 0
        self._delim = b""
        # What it means when no delimiter ever starts a line: 403 like KFR, or (lenient
        # mode with the Content-Type's boundary) "not multipart"; None: no requirement.
        self._unaligned: BatchRejected | None = None
        self._aligned = False
        self._broken: BatchRejected | None = None  # the first broken part, in order
        self._closed = False
        self._parts: set[str] = set()
        self._part: str | None = None
        self._customer_type = bytearray()
        if lenient_boundary:
            self._state = "first_line"
        else:
            if not boundary:
                raise BatchRejected(
                    403, "KFR-004", "Boundary i Content-Type finnes ikke i innholdet."
                )
            self._use_boundary(boundary)
            self._unaligned = BatchRejected(
                403, "KFR-004", "Boundary i Content-Type stemmer ikke med innholdet."
            )
            self._state = "preamble"

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self._max_body is not None and self.received > self._max_body:
            raise _too_large(f"skjemaet er større enn {self._max_body} byte")
        self._buf += data
        self._run(final=False)
        self._raise_when_certain()

    def finish(self) -> int:
        self._run(final=True)
        if not self._aligned and self._unaligned is not None:
            raise self._unaligned
        if self._broken is not None:
            raise self._broken
        if not self._closed:
            raise _bad_form("Multipart-innholdet mangler avsluttende boundary.")
        missing = [n for n in ("customer_type", "customers") if n not in self._parts]
        if missing:
            raise _bad_form(f"Feltet {' og '.join(missing)} mangler i batchen.")
        try:
            customer_type = self._customer_type.decode("utf-8").strip()
        except UnicodeDecodeError:
            customer_type = None
        self._validate_held()
        self.customers.end()
        if customer_type is None or self.customers.utf8_error:
            raise _bad_form("Batchen er ikke gyldig UTF-8.")
        if self._check_type and customer_type != "DSOPBANK":
            raise BatchRejected(400, "KFR-009", "Ugyldig kundeforholdstype (bare DSOPBANK).")
        if self.customers.error is not None:
            raise self.customers.error
        return self.customers.count

    # ------------------------------------------------------------------ the state machine

    def _use_boundary(self, boundary: str) -> None:
        self._delim = b"--" + boundary.encode("ascii")

    def _consume(self, count: int) -> bytes:
        taken = bytes(self._buf[:count])
        if taken:
            self._prev = taken[-1]
            self._at_start = False
            del self._buf[:count]
        return taken

    def _delimiter_at(self, index: int) -> None:
        """Note a delimiter at ``index`` of the buffer: does it start a line?"""
        before = self._buf[index - 1] if index > 0 else self._prev
        if (index == 0 and self._at_start) or before == 0x0A:
            self._aligned = True

    def _fail(self, problem: BatchRejected) -> None:
        if self._broken is None:
            self._broken = problem
        self._part = None
        self._state = "epilogue"

    def _raise_when_certain(self) -> None:
        # A broken part is the answer unless the 403 for an unaligned boundary (which
        # outranks it) may still come: that is settled once a delimiter starts a line.
        if self._broken is not None and (self._aligned or self._unaligned is None):
            raise self._broken

    def _run(self, *, final: bool) -> None:
        steps = {
            "first_line": self._first_line,
            "preamble": self._preamble,
            "segment_start": self._segment_start,
            "headers": self._headers,
            "content": self._content,
            "epilogue": self._epilogue,
        }
        while steps[self._state](final):
            pass

    def _first_line(self, final: bool) -> bool:
        """Lenient mode: the body's first line names the boundary, if it is one."""
        buf = self._buf
        start = 0
        while start < len(buf) and buf[start] in b"\r\n":
            start += 1
        newline = buf.find(b"\n", start)
        if newline < 0 and not final and len(buf) - start <= FIRST_LINE_CAP:
            return False
        first = bytes(buf[start : newline if newline >= 0 else len(buf)]).rstrip(b"\r")
        from_body: str | None = None
        if first.startswith(b"--") and 2 < len(first) <= FIRST_LINE_CAP:
            try:
                from_body = first[2:].decode("ascii")
            except UnicodeDecodeError:
                from_body = None
        boundary = from_body or self._header_boundary
        if not boundary:
            raise BatchRejected(403, "KFR-004", "Boundary i Content-Type finnes ikke i innholdet.")
        self._use_boundary(boundary)
        if from_body is None:
            self._unaligned = _bad_form("Innholdet er ikke multipart/form-data.")
        self._state = "preamble"
        return True

    def _preamble(self, final: bool) -> bool:
        index = self._buf.find(self._delim)
        if index < 0:
            keep = 0 if final else len(self._delim)
            self._consume(max(0, len(self._buf) - keep))
            return False
        self._delimiter_at(index)
        self._consume(index + len(self._delim))
        self._state = "segment_start"
        return True

    def _segment_start(self, final: bool) -> bool:
        """After a delimiter: ``--`` closes the form, anything else starts a part."""
        buf, delim = self._buf, self._delim
        if len(buf) < len(delim) + 1 and not final:
            return False
        if buf[:2] == b"--" and not buf.startswith(delim) and not buf[1:].startswith(delim):
            self._closed = True
            self._state = "epilogue"
            return True
        if len(self._parts) >= MAX_PARTS:
            self._fail(_bad_form(f"Batchen har mer enn {MAX_PARTS} deler."))
            return True
        self._state = "headers"
        return True

    def _headers(self, final: bool) -> bool:
        buf, delim = self._buf, self._delim
        index = buf.find(delim)
        if index >= 0:
            # The whole part is here: take it as one segment.
            self._delimiter_at(index)
            segment = _strip_line_end(self._consume(index))
            self._consume(len(delim))
            end = _header_end(segment)
            if end is None:
                self._fail(_bad_form("En del av multipart-innholdet mangler hoder."))
                return True
            if self._start_part(segment[: end[0]]):
                self._emit(segment[end[0] + end[1] :])
                self._end_part()
                if self._broken is None:
                    self._state = "segment_start"
            return True
        end = _header_end(buf)
        # A header block is only certain once no delimiter can start inside its blank line.
        if end is not None and (final or len(buf) >= end[0] + end[1] + len(delim)):
            headers = self._consume(end[0])
            self._consume(end[1])
            if self._start_part(headers):
                self._state = "content"
            return True
        if final:
            self._fail(_bad_form("En del av multipart-innholdet mangler hoder."))
            return True
        if len(buf) > MAX_HEADER_BYTES:
            self._fail(_bad_form("Hodene i en del av multipart-innholdet er for store."))
            return True
        return False

    def _start_part(self, headers: bytes | bytearray) -> bool:
        name = _part_name(headers)
        if name is None:
            self._fail(
                _bad_form("En del av multipart-innholdet mangler name i Content-Disposition.")
            )
            return False
        if name in self._parts:
            self._fail(_bad_form(f"Feltet {name} finnes mer enn én gang."))
            return False
        self._parts.add(name)
        self._part = name
        return True

    def _content(self, final: bool) -> bool:
        buf, delim = self._buf, self._delim
        index = buf.find(delim)
        if index >= 0:
            self._delimiter_at(index)
            self._emit(_strip_line_end(self._consume(index)))
            self._consume(len(delim))
            self._end_part()
            if self._broken is None:
                self._state = "segment_start"
            return True
        if final:
            self._emit(self._consume(len(buf)))
            self._end_part()
            self._state = "epilogue"
            return True
        # Keep what could still turn out to be a line end and a delimiter.
        ready = len(buf) - (len(delim) + 1)
        if ready > 0:
            self._emit(self._consume(ready))
        return False

    def _emit(self, data: bytes) -> None:
        if not data or self._part is None:
            return
        if self._part == "customers":
            self._file_bytes += len(data)
            if self._max_file is not None and self._file_bytes > self._max_file:
                raise _too_large(f"filen (customers) er større enn {self._max_file} byte")
            if self._hold is not None:
                self._hold.write(data)
                self._held += len(data)
            else:
                self.customers.feed(data)
        elif self._part == "customer_type":
            if len(self._customer_type) + len(data) > MAX_FIELD_BYTES:
                self._fail(_bad_form("Feltet customer_type er for langt."))
                return
            self._customer_type += data

    def _end_part(self) -> None:
        if self._part == "customers":
            self._validate_held()
            self.customers.end()
        self._part = None

    def _validate_held(self) -> None:
        """The held customers part has ended within the limit: now read its IDs."""
        if self._hold is None or not self._held:
            return
        hold, self._held = self._hold, 0
        hold.seek(0)
        while piece := hold.read(HOLD_READ_BYTES):
            self.customers.feed(piece)
        hold.seek(0)
        hold.truncate()

    def _epilogue(self, final: bool) -> bool:
        """After the closing delimiter or a broken part: only look for a delimiter that
        starts a line, if that is still open."""
        if self._aligned or self._unaligned is None:
            self._consume(len(self._buf))
            return False
        index = self._buf.find(self._delim)
        if index >= 0:
            self._delimiter_at(index)
            self._consume(index + len(self._delim))
            return True
        keep = 0 if final else len(self._delim)
        self._consume(max(0, len(self._buf) - keep))
        return False


def parse_batch(
    body: bytes,
    boundary: str | None,
    *,
    lenient_boundary: bool = False,
    check_type: bool = True,
    check_ids: bool = True,
    check_dates: bool = True,
    keep_dates: bool = True,
    strict_birth_dates: bool = False,
) -> BatchContent:
    """A whole body at once (tests, small files): the same parser as the stream."""
    stream = BatchStream(
        boundary,
        collect=True,
        lenient_boundary=lenient_boundary,
        check_type=check_type,
        check_ids=check_ids,
        check_dates=check_dates,
        keep_dates=keep_dates,
        strict_birth_dates=strict_birth_dates,
    )
    stream.feed(body)
    stream.finish()
    return BatchContent(customer_type="DSOPBANK", entries=stream.customers.entries or [])
