"""Which column of a sheet holds what: header detection and cell text.

Every worksheet is searched for the row that looks most like a header (it needs an
id-like and an expected-like column); columns are matched by what their header says, in
Norwegian or English, and an id column under a name we do not know is recognised by the
values it holds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

__all__ = ["ROLES", "cell_text"]

# Where to look for the header row.
HEADER_SEARCH_ROWS = 100
HEADER_SEARCH_COLUMNS = 60
# Rows looked at below a header to recognise an id column by its values.
ID_SAMPLE_ROWS = 30
# A header cell is a short label; longer text is an instruction, not a column name.
MAX_HEADER_LENGTH = 60

# fmt: off
ROLES = (
    "id", "title", "description", "preconditions", "test_data", "expected", "actual",
    "status", "comment", "date", "executed_by", "correlation_id", "category", "type",
)

# role → (primary header names, secondary header names), compared after _normalise().
# Primary names say the role outright; secondary ones could also mean something else.
_HEADER_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "id": (
        ("testcase id", "test case id", "testcaseid", "test id", "testid", "tc id", "tcid",
         "case id", "caseid", "testtilfelle", "testtilfelle id", "testtilfelle nr",
         "testtilfellenr", "testnr", "test nr", "testnummer", "test no", "id", "nr", "no",
         "#", "løpenr", "lnr"),
        # "Test case" often heads the id column too; a better-named title column wins it.
        ("nummer", "number", "ref", "referanse", "reference", "test case", "testcase"),
    ),
    "title": (
        ("tittel", "title", "testnavn", "test name", "overskrift", "sammendrag", "summary",
         "kort beskrivelse", "short description", "scenario", "testscenario", "test scenario"),
        ("navn", "name", "test case", "testcase", "testtilfelle", "test", "objective",
         "mål", "hensikt", "formål med testen"),
    ),
    "description": (
        ("beskrivelse", "description", "testbeskrivelse", "test description",
         "beskrivelse av test", "fremgangsmåte", "teststeg", "test steps", "steg", "steps",
         "detaljer", "details", "hva testes", "hva som testes", "what is tested",
         "procedure", "prosedyre", "test procedure", "testprosedyre", "how to test",
         "testformål", "formål", "purpose", "test purpose", "handlinger"),
        ("handling", "action", "test case", "testcase"),
    ),
    "preconditions": (
        ("forutsetninger", "forutsetning", "preconditions", "precondition", "pre conditions",
         "pre condition", "prerequisites", "prerequisite", "forberedelser"),
        ("oppsett", "setup"),
    ),
    "test_data": (
        ("testdata", "test data", "inndata", "input data", "data"),
        ("input", "parametere", "parameters"),
    ),
    "expected": (
        ("forventet resultat", "forventet", "expected result", "expected results", "expected",
         "expected outcome", "forventet respons", "forventet svar", "expected response",
         "forventet utfall", "expect", "expectation", "expectations", "forventning",
         "forventninger", "forventes", "expected behaviour", "expected behavior"),
        ("akseptansekriterier", "acceptance criteria"),
    ),
    "actual": (
        ("faktisk resultat", "faktisk", "actual result", "actual results", "actual",
         "actual outcome", "faktisk respons", "faktisk svar", "actual response"),
        ("resultat", "result", "utfall", "outcome"),
    ),
    "status": (
        ("status", "teststatus", "test status", "ok feilet", "pass fail", "bestått",
         "godkjent", "ok ikke ok", "verdict"),
        ("resultat", "result"),
    ),
    "comment": (
        ("kommentar", "kommentarer", "comment", "comments", "merknad", "merknader", "notes",
         "note", "remarks", "remark", "notater"),
        ("avvik",),
    ),
    "date": (
        ("dato", "date", "testdato", "test date", "dato utført", "utført dato",
         "date executed", "executed on", "execution date", "tested on", "dato testet",
         "testet dato"),
        (),
    ),
    "executed_by": (
        ("utført av", "testet av", "executed by", "tested by", "performed by", "run by",
         "kjørt av", "tester"),
        ("signatur", "signature", "ansvarlig", "testansvarlig", "responsible", "initialer",
         "initials", "sign"),
    ),
    "correlation_id": (
        ("correlationid", "correlation id", "correlation ids", "correlationids",
         "korrelasjons id", "korrelasjonsid", "korrelasjon id", "x correlation id"),
        ("correlation",),
    ),
    "category": (
        ("kategori", "category", "område", "funksjonsområde", "seksjon", "section"),
        ("gruppe", "group", "modul", "module", "funksjon", "function", "tema", "topic",
         "operasjon", "operation", "tjeneste", "service", "endepunkt", "endpoint", "area"),
    ),
    "type": (
        ("type", "testtype", "test type", "manuell automatisk", "automatisk manuell",
         "manual automated", "automated manual", "execution type"),
        ("automatisering", "automation", "automatisert", "automated", "kjøremåte",
         "utførelse"),
    ),
}
# fmt: on


# What a test-case id looks like when it stands alone in a row ("KFR-23", "7", "1.2",
# "TC_04"), as opposed to a section title ("Batch", "Feilhåndtering").
ID_LIKE_RE = re.compile(r"^(?:[A-Za-zÆØÅæøå]{1,10}[-_ ]?)?\d{1,4}(?:[.\-_]\d{1,4}){0,3}[A-Za-z]?$")


def cell_text(value: Any) -> str:
    """A cell's value as text: 1 and 1.0 → "1", dates → ISO, None → ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Ja" if value else "Nei"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-zæøåäöü#]+", " ", text.casefold()).split())


def role_matches(header: str) -> list[tuple[float, str]]:
    """(quality, role) for every role this header text could mean; higher is surer."""
    norm = _normalise(header)
    if not norm or len(header) > MAX_HEADER_LENGTH:
        return []
    matches: list[tuple[float, str]] = []
    padded = f" {norm} "
    for role, (primary, secondary) in _HEADER_NAMES.items():
        best = 0.0
        for base, names in ((3.0, primary), (2.0, secondary)):
            for name in names:
                if norm == name:
                    quality = base
                elif len(name) >= 4 and norm.startswith(name + " "):
                    quality = base - 0.5  # "Forventet resultat (HTTP-status og feilkode)"
                elif len(name) >= 5 and f" {name} " in padded:
                    quality = base - 1.0  # "Bankens kommentar"
                else:
                    continue
                best = max(best, quality)
        if best:
            matches.append((best, role))
    return matches


@dataclass
class HeaderCandidate:
    worksheet: Worksheet
    sheet_index: int
    row: int
    columns: dict[str, int]
    score: float

    def key(self) -> tuple[float, int, int, int]:
        # Best score; on a tie a visible sheet, then the earlier sheet, then the higher row.
        visible = 1 if self.worksheet.sheet_state == "visible" else 0
        return (self.score, visible, -self.sheet_index, -self.row)


def hidden_columns(ws: Worksheet) -> set[int]:
    from openpyxl.utils import column_index_from_string

    hidden: set[int] = set()
    for letter, dim in ws.column_dimensions.items():
        if dim.hidden:
            start = column_index_from_string(letter)
            lo, hi = (dim.min or start), (dim.max or start)
            hidden.update(range(lo, hi + 1))
    return hidden


def _assign_columns(
    cells: Iterable[tuple[int, Any]], hidden: set[int]
) -> tuple[dict[str, int], float]:
    """Give each role the column that names it best; each column serves one role."""
    candidates: list[tuple[float, int, int, str]] = []
    for col, value in cells:
        if not isinstance(value, str):
            continue
        for quality, role in role_matches(value):
            candidates.append((quality, 0 if col in hidden else 1, col, role))
    candidates.sort(key=lambda c: (-c[0], -c[1], c[2]))
    columns: dict[str, int] = {}
    used: set[int] = set()
    total = 0.0
    for quality, _visible, col, role in candidates:
        if role in columns or col in used:
            continue
        columns[role] = col
        used.add(col)
        total += quality
    return columns, total


def headers_in(ws: Worksheet, index: int) -> HeaderCandidate | None:
    """The row of ``ws`` that looks most like a case header (id + expected), if any."""
    best: HeaderCandidate | None = None
    hidden = hidden_columns(ws)
    max_row = min(ws.max_row, HEADER_SEARCH_ROWS)
    max_col = min(ws.max_column, HEADER_SEARCH_COLUMNS)
    for row_index, row in enumerate(
        ws.iter_rows(min_row=1, max_row=max_row, max_col=max_col, values_only=True), start=1
    ):
        texts = [(c, v) for c, v in enumerate(row, start=1) if isinstance(v, str) and v.strip()]
        if len(texts) < 2:
            continue
        columns, quality = _assign_columns(texts, hidden)
        if "expected" in columns and "id" not in columns:
            # An id column under a name we do not know ("Case", "Ref. nr"): found by what
            # it holds, short unique id-like values, as a person would.
            id_col = _id_column_by_content(ws, row_index, texts, set(columns.values()))
            if id_col is not None:
                columns["id"] = id_col
                quality += 1.0
        if "id" not in columns or "expected" not in columns:
            continue
        # Roles count first; how surely they were named breaks ties between rows.
        candidate = HeaderCandidate(ws, index, row_index, columns, len(columns) + quality / 100)
        if best is None or candidate.key() > best.key():
            best = candidate
    return best


def _id_column_by_content(
    ws: Worksheet, header_row: int, texts: list[tuple[int, Any]], used: set[int]
) -> int | None:
    """The header's leftmost unassigned column whose next rows are (nearly) all distinct
    id-like values ("CR-001", "7", "1.2"), or None."""
    last = min(ws.max_row, header_row + ID_SAMPLE_ROWS)
    for col, _name in sorted(texts):
        if col in used:
            continue
        values = [
            cell_text(v)
            for (v,) in ws.iter_rows(
                min_row=header_row + 1, max_row=last, min_col=col, max_col=col, values_only=True
            )
            if cell_text(v)
        ]
        id_like = [v for v in values if ID_LIKE_RE.match(v)]
        if (
            len(id_like) >= 2
            and len(id_like) >= 0.8 * len(values)
            and len(set(id_like)) == len(id_like)
        ):
            return col
    return None


def find_header(wb: Workbook) -> HeaderCandidate | None:
    found = [h for i, ws in enumerate(wb.worksheets) if (h := headers_in(ws, i))]
    return max(found, key=lambda h: h.key()) if found else None
