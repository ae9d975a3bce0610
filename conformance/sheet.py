"""Read the integration-test sheet: xlsx → (:class:`SheetInfo`, [:class:`CaseSpec`]).

Bits owns the official sheet and may change it at any time: add a cover sheet, a title
block, merged cells, section rows, hide columns or rows, rename headers or switch them to
English, type IDs as numbers. So nothing here assumes a position:

- :mod:`conformance.sheet_columns` finds the header row and what each column holds;
- :mod:`conformance.sheet_rows` turns the rows below it into cases, and gives every row
  it does not read as written a :class:`RowNotice` — no row is dropped silently;
- :mod:`conformance.expectation` reads status and error code from the "expected result"
  prose (:func:`parse_expectation`).

This module checks the file, finds the sheet's version and puts it together. What the
reader decides, so the rest of the engine does not have to:

- a *case* is a row with an id or an expectation and more text; section titles, footers
  and repeated headers are not cases (but are noticed);
- the *title* is the title column when there is one, else the first sentence of the
  description;
- a row is *manual* when its type or category column, or its own text, says so.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook

from conformance.errors import SheetError
from conformance.expectation import parse_expectation
from conformance.models import CaseSpec
from conformance.sheet_columns import (
    HEADER_SEARCH_COLUMNS,
    HEADER_SEARCH_ROWS,
    ROLES,
    HeaderCandidate,
    cell_text,
    find_header,
)
from conformance.sheet_rows import (
    MAX_DATA_ROWS,
    RowNotice,
    cases_elsewhere,
    read_cases,
    row_in_case_id,
    unread_columns,
)

__all__ = [
    "MAX_DATA_ROWS",
    "ROLES",
    "RowNotice",
    "SheetInfo",
    "cell_text",
    "parse_expectation",
    "read_sheet",
    "read_sheet_data",
    "row_in_case_id",
]

# A sheet is a few hundred kilobytes; anything far bigger is not the integration-test sheet.
MAX_SHEET_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class SheetInfo:
    """Where the cases were found, and the file's identity (for the pack and the writer).

    ``notices`` lists every non-empty row (and unread column) that was not read as a
    plain case, so that no row of the sheet is ever dropped silently.
    """

    path: Path
    file_name: str
    sha256: str
    version: str | None
    worksheet: str
    header_row: int
    columns: dict[str, int] = field(default_factory=dict)  # role → 1-based column index
    notices: tuple[RowNotice, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "file_name": self.file_name,
            "sha256": self.sha256,
            "version": self.version,
            "worksheet": self.worksheet,
            "header_row": self.header_row,
            "columns": dict(self.columns),
            "notices": [notice.to_dict() for notice in self.notices],
        }

    def notice_lines(self, *, limit: int = 20) -> list[str]:
        """Norwegian lines for the start of a run: every warning (up to ``limit``, then a
        count), and the rows that are plainly no case, by row number on one line."""
        warnings_ = [n for n in self.notices if n.warning]
        columns = [n for n in self.notices if n.kind == "unread_column"]
        plain = [n for n in self.notices if not n.warning and n.kind != "unread_column"]
        lines = [f"ark: {n.describe()}" for n in warnings_[:limit]]
        if len(warnings_) > limit:
            lines.append(
                f"ark: … og {len(warnings_) - limit} merknader til "
                f"(se «kfr-conformance sheet {self.file_name}»)"
            )
        if plain:
            by_sheet: dict[str, list[str]] = {}
            for notice in plain:
                by_sheet.setdefault(notice.worksheet, []).append(str(notice.row))
            where = "; ".join(f"«{ws}» rad {', '.join(rows)}" for ws, rows in by_sheet.items())
            lines.append(f"ark: ikke testtilfeller (seksjonstitler, merknader o.l.): {where}")
        lines.extend(f"ark: arket «{n.worksheet}»: {n.message}" for n in columns)
        return lines


# --------------------------------------------------------------------------- version

_VERSION_LABELLED_RE = re.compile(
    r"(?<!\w)(?:versjon|version|ver\.?)\s*(?:nr\.?|no\.?)?\s*[:.]?\s*v?\s*(\d+(?:\.\d+)*[a-z]?)(?![\d.]*\d)",
    re.IGNORECASE,
)
_VERSION_LABEL_ONLY_RE = re.compile(r"^\s*(?:versjon|version|ver\.?)\s*(?:nr\.?)?\s*:?\s*$", re.I)
_VERSION_BARE_RE = re.compile(r"^\s*[vV]\s?(\d+(?:\.\d+)+)\s*$")
_VERSION_FILENAME_RE = re.compile(
    r"(?<![a-z0-9])v(?:er(?:sjon|sion)?)?[ _-]?(\d+(?:[._]\d+)+)", re.I
)


def _version_value(value: Any) -> str | None:
    if isinstance(value, float):
        return repr(value)  # 1.0 typed as a number is version "1.0", not "1"
    text = cell_text(value).strip()
    match = re.match(r"^v?\s*(\d+(?:\.\d+)*[a-z]?)\b", text, re.IGNORECASE)
    return match.group(1) if match else None


def _find_version(wb: Workbook, header: HeaderCandidate) -> str | None:
    labelled: str | None = None
    bare: str | None = None
    for ws in wb.worksheets:
        # On the case sheet only the title block counts: descriptions may name API versions.
        last_row = header.row if ws is header.worksheet else min(ws.max_row, HEADER_SEARCH_ROWS)
        for row in ws.iter_rows(min_row=1, max_row=last_row, max_col=HEADER_SEARCH_COLUMNS):
            values = [c.value for c in row]
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    continue
                if labelled is None:
                    if _VERSION_LABEL_ONLY_RE.match(value):
                        # "Versjon" | 1.0 — the value sits in the next non-empty cell.
                        nxt = next((v for v in values[i + 1 :] if v not in (None, "")), None)
                        found = _version_value(nxt) if nxt is not None else None
                        if found:
                            labelled = found
                    else:
                        match = _VERSION_LABELLED_RE.search(value)
                        if match:
                            labelled = match.group(1)
                if bare is None and (match := _VERSION_BARE_RE.match(value)):
                    bare = match.group(1)
            if labelled:
                return labelled
    if bare:
        return bare
    props = wb.properties
    if props.version and (found := _version_value(props.version)):
        return found
    if props.title and (match := _VERSION_LABELLED_RE.search(props.title)):
        return match.group(1)
    return None


# --------------------------------------------------------------------------- entry point

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise SheetError(
            f"Finner ikke arket «{path}».",
            hint="Sjekk stien, eller utelat --sheet for å bruke det medfølgende arket.",
        )
    if not path.is_file():
        raise SheetError(
            f"«{path}» er ikke en fil.", hint="Oppgi stien til .xlsx-filen, ikke en mappe."
        )
    size = path.stat().st_size
    if size > MAX_SHEET_BYTES:
        raise SheetError(
            f"«{path.name}» er {size // (1024 * 1024)} MB; et testark er langt mindre.",
            hint="Kontroller at det er KFR-Integrasjonstester.xlsx fra Bits.",
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SheetError(f"Kan ikke lese «{path}»: {exc.strerror or exc}.") from exc


def _check_format(path: Path, data: bytes) -> None:
    if data.startswith(_CFB_MAGIC):
        if _ENCRYPTION_STREAM in data:
            raise SheetError(
                f"«{path.name}» er passordbeskyttet (kryptert), og kan ikke leses.",
                hint="Åpne arket i Excel, fjern passordet (Fil → Info → Beskytt arbeidsbok) og lagre det som .xlsx.",
            )
        raise SheetError(
            f"«{path.name}» er i det gamle .xls-formatet.",
            hint="Åpne det i Excel eller LibreOffice og lagre det som Excel-arbeidsbok (.xlsx).",
        )
    if not data.startswith(b"PK") or not zipfile.is_zipfile(io.BytesIO(data)):
        raise SheetError(
            f"«{path.name}» er ikke en Excel-arbeidsbok (.xlsx).",
            hint="Bruk KFR-Integrasjonstester.xlsx slik den kom fra Bits.",
        )


def _load(path: Path, data: bytes) -> Workbook:
    try:
        with warnings.catch_warnings():
            # openpyxl warns about Excel extensions it drops; reading does not need them.
            warnings.simplefilter("ignore")
            return load_workbook(io.BytesIO(data), data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise SheetError(
            f"«{path.name}» kan ikke leses som .xlsx ({type(exc).__name__}: {exc}).",
            hint="Åpne arket i Excel og lagre det på nytt som .xlsx.",
        ) from exc


def read_sheet(path: Path) -> tuple[SheetInfo, list[CaseSpec]]:
    """Read the integration-test sheet; raise :class:`SheetError` with a plain message if
    it is missing, not an xlsx, encrypted, has no header row or has no cases."""
    path = Path(path)
    return read_sheet_data(path, _read_bytes(path))


def read_sheet_data(path: Path, data: bytes) -> tuple[SheetInfo, list[CaseSpec]]:
    """:func:`read_sheet` for bytes already in memory (the copy inside a pack); ``path``
    only names the sheet in messages and in the result."""
    path = Path(path)
    if len(data) > MAX_SHEET_BYTES:
        raise SheetError(f"«{path.name}» er {len(data) // (1024 * 1024)} MB; et testark er langt mindre.")
    _check_format(path, data)
    wb = _load(path, data)
    header = find_header(wb)
    if header is None:
        raise SheetError(
            f"Fant ingen overskriftsrad med testtilfeller i «{path.name}».",
            hint="Arket trenger en rad med kolonneoverskrifter, minst en ID-kolonne (f.eks. «Testcase-ID») "
            "og en kolonne for forventet resultat (f.eks. «Forventet resultat»).",
        )
    cases, notices = read_cases(header)
    notices = unread_columns(header) + notices + cases_elsewhere(wb, header)
    if not cases:
        raise SheetError(
            f"Fant ingen testtilfeller under overskriftsraden (rad {header.row}) i «{path.name}», "
            f"arket «{header.worksheet.title}».",
            hint="Et testtilfelle er en rad med både ID og forventet resultat.",
        )
    info = SheetInfo(
        path=path,
        file_name=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        version=_find_version(wb, header) or _version_from_filename(path.name),
        worksheet=header.worksheet.title,
        header_row=header.row,
        columns=dict(sorted(header.columns.items(), key=lambda item: item[1])),
        notices=tuple(notices),
    )
    return info, cases


def _version_from_filename(name: str) -> str | None:
    match = _VERSION_FILENAME_RE.search(Path(name).stem)
    return match.group(1).replace("_", ".") if match else None
