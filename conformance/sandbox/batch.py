"""The batch file: multipart/form-data parsed from the raw body, and its customer list.

Parsed by hand, not by a multipart library, because KFR's quirks are the point: a quoted
boundary in ``Content-Type`` or a boundary that does not match the body makes KFR answer
403 (FAQ, "Boundary i batch"); a library would quietly accept both.

The ``customers`` field is ``ID[#YYYY-MM-DD],ID[#YYYY-MM-DD],...``. One bad identifier
(KFR-005) or date (KFR-010) rejects the whole file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from conformance.ids import classify

# RFC 2046 boundary characters (the space only inside, never last).
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME = re.compile(r"""\bname\s*=\s*(?:"([^"]*)"|([^\s;"]+))""", re.IGNORECASE)
MAX_FREE_ID_LENGTH = 64  # when ID checks are off (misbehave), still keep rows sane


@dataclass
class BatchRejected(Exception):
    """The file is refused: HTTP status, KFR error code and a message for the bank."""

    status: int
    code: str
    message: str


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


def _boundary_from_body(body: bytes) -> str | None:
    first = body.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    if first.startswith(b"--") and len(first) > 2:
        try:
            return first[2:].decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def split_form(body: bytes, boundary: str | None, *, lenient: bool = False) -> dict[str, bytes]:
    """The named parts of a multipart body. A boundary that does not occur in the body is
    refused with 403 like KFR; ``lenient`` takes the body's own boundary instead."""
    if lenient:
        boundary = _boundary_from_body(body) or boundary
    if not boundary:
        raise BatchRejected(403, "KFR-004", "Boundary i Content-Type finnes ikke i innholdet.")
    delimiter = b"--" + boundary.encode("ascii")
    if not (body.startswith(delimiter) or b"\n" + delimiter in body):
        if not lenient:
            raise BatchRejected(
                403, "KFR-004", "Boundary i Content-Type stemmer ikke med innholdet."
            )
        boundary = _boundary_from_body(body)
        if not boundary:
            raise BatchRejected(400, "KFR-004", "Innholdet er ikke multipart/form-data.")
        delimiter = b"--" + boundary.encode("ascii")
    segments = re.split(rb"(?:\r?\n)?" + re.escape(delimiter), body)
    parts: dict[str, bytes] = {}
    closed = False
    for segment in segments[1:]:  # segments[0] is the preamble
        if segment.startswith(b"--"):
            closed = True
            break
        head_end = segment.find(b"\r\n\r\n")
        sep_len = 4
        if head_end < 0 or (0 <= segment.find(b"\n\n") < head_end):
            head_end, sep_len = segment.find(b"\n\n"), 2
        if head_end < 0:
            raise BatchRejected(400, "KFR-004", "En del av multipart-innholdet mangler hoder.")
        headers = segment[:head_end].decode("latin-1")
        content = segment[head_end + sep_len :]
        name = None
        for line in headers.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                match = _NAME.search(value)
                if match:
                    name = match.group(1) if match.group(1) is not None else match.group(2)
        if name is None:
            raise BatchRejected(
                400, "KFR-004", "En del av multipart-innholdet mangler name i Content-Disposition."
            )
        if name in parts:
            raise BatchRejected(400, "KFR-004", f"Feltet {name} finnes mer enn én gang.")
        parts[name] = content
    if not closed:
        raise BatchRejected(400, "KFR-004", "Multipart-innholdet mangler avsluttende boundary.")
    return parts


@dataclass(frozen=True)
class BatchContent:
    customer_type: str
    entries: list[tuple[str, str | None]]  # (customer id, start date or None = default)

    def serialise(self) -> str:
        """The compact form kept until ingestion: ``id`` or ``id#date``, comma-separated."""
        return ",".join(f"{cid}#{day}" if day else cid for cid, day in self.entries)


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_customers(
    text: str, *, check_ids: bool = True, check_dates: bool = True, keep_dates: bool = True
) -> list[tuple[str, str | None]]:
    """``ID[#YYYY-MM-DD],...`` → entries; the first bad element rejects the whole file.
    A trailing comma (or whitespace) is tolerated, an empty element in the middle is not."""
    items = text.split(",")
    while items and not items[-1].strip():
        items.pop()
    if not items:
        raise BatchRejected(400, "KFR-004", "Filen inneholder ingen kunder.")
    entries: list[tuple[str, str | None]] = []
    for position, raw in enumerate(items, start=1):
        cid, sep, day = raw.strip().partition("#")
        cid = cid.strip()
        if check_ids:
            if classify(cid) is None:
                raise BatchRejected(
                    400, "KFR-005", f"Ugyldig kundeidentifikator i element {position}."
                )
        elif not cid or len(cid) > MAX_FREE_ID_LENGTH or "#" in cid:
            raise BatchRejected(400, "KFR-004", f"Tomt eller for langt element {position}.")
        start: str | None = None
        if sep:
            day = day.strip()
            if _valid_date(day):
                start = day
            elif check_dates:
                raise BatchRejected(
                    400, "KFR-010", f"Ugyldig datoformat i element {position} (bruk YYYY-MM-DD)."
                )
        entries.append((cid, start if keep_dates else None))
    return entries


def parse_batch(
    body: bytes,
    boundary: str | None,
    *,
    lenient_boundary: bool = False,
    check_type: bool = True,
    check_ids: bool = True,
    check_dates: bool = True,
    keep_dates: bool = True,
) -> BatchContent:
    parts = split_form(body, boundary, lenient=lenient_boundary)
    missing = [n for n in ("customer_type", "customers") if n not in parts]
    if missing:
        raise BatchRejected(400, "KFR-004", f"Feltet {' og '.join(missing)} mangler i batchen.")
    try:
        customer_type = parts["customer_type"].decode("utf-8").strip()
        customers = parts["customers"].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchRejected(400, "KFR-004", "Batchen er ikke gyldig UTF-8.") from exc
    if check_type and customer_type != "DSOPBANK":
        raise BatchRejected(400, "KFR-009", "Ugyldig kundeforholdstype (bare DSOPBANK).")
    entries = parse_customers(
        customers, check_ids=check_ids, check_dates=check_dates, keep_dates=keep_dates
    )
    return BatchContent(customer_type="DSOPBANK", entries=entries)
