"""Read the integration-test sheet: xlsx → (:class:`SheetInfo`, [:class:`CaseSpec`]).

Bits owns the official sheet and may change it at any time: add a cover sheet, a title
block, merged cells, section rows, hide columns, rename headers or switch them to English,
type IDs as numbers. So nothing here assumes a position. Every worksheet is searched for
the row that looks most like a header (it needs at least an id-like and an expected-like
column), columns are matched by what their header says, and the expectation is read from
the prose of the "expected result" column (:func:`parse_expectation`).

What the reader decides, so the rest of the engine does not have to:

- a *case* is a row with an id and an expectation; any other row below the header (blank,
  a section title, a footer, a repeated header) is not a case;
- the *title* is the title column when there is one, else the first sentence of the
  description;
- a row is *manual* when its type or category column, or its own text, says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from conformance.errors import SheetError
from conformance.models import CaseSpec, Expectation

__all__ = [
    "ROLES",
    "RowNotice",
    "SheetInfo",
    "cell_text",
    "parse_expectation",
    "read_sheet",
    "row_in_case_id",
]

# A sheet is a few hundred kilobytes; anything far bigger is not the integration-test sheet.
MAX_SHEET_BYTES = 50 * 1024 * 1024
# Where to look for the header row, and how far to read below it.
HEADER_SEARCH_ROWS = 100
HEADER_SEARCH_COLUMNS = 60
# Rows looked at below a header to recognise an id column by its values.
ID_SAMPLE_ROWS = 30
# Filled rows below the header; far more is not an integration-test sheet, and the sheet
# is refused rather than read in part.
MAX_DATA_ROWS = 5000
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

_MANUAL_RE = re.compile(r"(?<!\w)(?:manuel(?:le|lt|l|t)|manual(?:ly)?)(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class RowNotice:
    """A row the reader did not read as written: read with a caveat (``case_id`` is the
    case it became), or not read at all (``case_id`` is None). ``message`` says why and
    what happens, in Norwegian; ``kind`` is for code and tests.

    ``warning`` notices may hide a test case (a row without id or expectation, hidden,
    merged, on another worksheet); the others are rows that are plainly no case (a
    section title, a repeated header, a column nobody reads).
    """

    worksheet: str
    row: int
    kind: str
    message: str
    case_id: str | None = None
    warning: bool = True

    def describe(self) -> str:
        return f"arket «{self.worksheet}», rad {self.row}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "worksheet": self.worksheet,
            "row": self.row,
            "kind": self.kind,
            "message": self.message,
            "case_id": self.case_id,
            "warning": self.warning,
        }


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


# --------------------------------------------------------------------------- expectations

_CODE_RE = re.compile(r"(?<![\w-])(KFR|ERR|MP)-(\d{3})(?!\d)", re.IGNORECASE)

# A number that is part of a date, time, decimal, range or longer number is never a status.
_NUM = r"(?<![\d.,/:-])(\d{3})(?!\d|[.,/:-]\d)"
_LABEL = (
    r"(?:http|https|status|statuskode|statuscode|responskode|respons|response|svarkode|"
    r"returkode|kode|code|svar|svarer|returnerer|returneres|returns?|returned|responds?)"
)
_LABELLED_RE = re.compile(
    rf"(?<!\w){_LABEL}(?:/[123](?:\.[01])?)?(?:[\s-]+{_LABEL})*[\s-]*[:=]?\s*(\d{{3}})(?!\d|[.,/:-]\d)",
    re.IGNORECASE,
)


def _reason_phrases() -> dict[str, set[int]]:
    phrases: dict[str, set[int]] = {}
    for status in HTTPStatus:
        phrases.setdefault(status.phrase.lower(), set()).add(status.value)
    # Names used by other RFCs and tools for the same codes.
    for phrase, code in (
        ("payload too large", 413),
        ("content too large", 413),
        ("request entity too large", 413),
        ("unprocessable content", 422),
        ("unprocessable entity", 422),
        ("no content", 204),
        ("ok", 200),
    ):
        phrases.setdefault(phrase, set()).add(code)
    return phrases


_PHRASES = _reason_phrases()
_PHRASED_RE = re.compile(
    _NUM
    + r"\s*[-–:]?\s*\(?\s*("
    + "|".join(re.escape(p) for p in sorted(_PHRASES, key=len, reverse=True))
    + r")(?!\w)",
    re.IGNORECASE,
)
# A bare number counts only at the very start ("201", "404, KFR-008", "(201)") and only
# when it is a registered HTTP status, so "250 per sekund" is not mistaken for one.
_LEADING_RE = re.compile(r"^\W{0,2}" + _NUM)
_KNOWN_STATUSES = {s.value for s in HTTPStatus}
# Free phrasing, where a status has no "HTTP"/"status" label: "gir 400 med KFR-005", "should
# get a 404 back", "bekreftes med 204.", "Upload refused (403)", "no longer active; 204".
# A bare number counts only between cues on both sides that a status would have: a verb of
# answering (or "med"/"with") before it, and the end of the clause, an error code or a word
# like "back"/"tilbake" after it; "får 200 kunder" and "med 250 per sekund" are not statuses.
_ANSWER_VERBS = (
    r"(?:gir|gi|ga|får|få|fikk|gets?|got|getting|receives?|received|yields?|answers?|"
    r"answered|repl(?:y|ies|ied)|respond(?:s|ed)?|expects?|forventer|results? in|"
    r"resulterer i|ends? with|ender med|fails? with|feiler med|med|with|by|=|→|->)"
)
_ARTICLE = r"(?:(?:a|an|en|et|the|status|kode|code)\s+)?"
_AFTER_STATUS = (
    r"(?=\s*(?:$|[.,;:!?)\]/–-]|(?:back|tilbake|response|respons|svar|reply|answer|error|"
    r"feil|code|kode|status|statuskode|and|og|or|eller|with|med|from|fra|if|hvis|når|when|"
    r"fordi|because)(?!\w)|(?:KFR|ERR|MP)-\d))"
)
_VERB_STATUS_RE = re.compile(
    rf"(?<!\w){_ANSWER_VERBS}\s+{_ARTICLE}{_NUM}{_AFTER_STATUS}", re.IGNORECASE
)
# "400 med KFR-005", "403 / KFR-003": a number right before an error code.
_BEFORE_CODE_RE = re.compile(_NUM + r"(?=[^\d.;!?]{0,25}?(?<![\w-])(?:KFR|ERR|MP)-\d{3})", re.I)
# "(201)" on its own, and a number that ends the text after a separator ("…; 204").
_PARENTHESISED_RE = re.compile(r"\(\s*" + _NUM + r"\s*\)")
_TRAILING_RE = re.compile(r"[;,:=–-]\s*" + _NUM + r"\s*[.!]?\s*$")
_FREE_STATUS_RES = (_VERB_STATUS_RE, _BEFORE_CODE_RE, _PARENTHESISED_RE, _TRAILING_RE)


def parse_expectation(text: str) -> Expectation:
    """HTTP status and error code from the prose of an "expected result" cell.

    Recognises e.g. "HTTP 404 Not Found med feilkode KFR-008", "400 Bad Request with error
    code KFR-010", "Responskode 201 Created", "Status: 204", "201 (Created)", and free
    phrasing: "gir 400 med KFR-005", "should get a 404 back", "Upload refused (403)".
    Dates, orgnrs, counts and sizes such as "10 MB" never yield a status. Labelled statuses
    win over free phrasing; among equals the first in the text wins.
    """
    text = (text or "").strip()
    found: list[tuple[int, int]] = []  # (position, status)
    for match in _LABELLED_RE.finditer(text):
        status = int(match.group(1))
        if 100 <= status <= 599:
            found.append((match.start(1), status))
    for match in _PHRASED_RE.finditer(text):
        status = int(match.group(1))
        if status in _PHRASES.get(match.group(2).lower(), set()):
            found.append((match.start(1), status))
    if not found:
        leading = _LEADING_RE.match(text)
        if leading and int(leading.group(1)) in _KNOWN_STATUSES:
            found.append((leading.start(1), int(leading.group(1))))
    if not found:
        for pattern in _FREE_STATUS_RES:
            for match in pattern.finditer(text):
                number = int(match.group(1))
                if number >= 200 and number in _KNOWN_STATUSES:
                    found.append((match.start(1), number))
    status: int | None = min(found)[1] if found else None
    code_match = _CODE_RE.search(text)
    error_code = f"{code_match.group(1).upper()}-{code_match.group(2)}" if code_match else None
    return Expectation(text=text, status=status, error_code=error_code)


# --------------------------------------------------------------------------- cells


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


def _role_matches(header: str) -> list[tuple[float, str]]:
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
class _HeaderCandidate:
    worksheet: Worksheet
    sheet_index: int
    row: int
    columns: dict[str, int]
    score: float

    def key(self) -> tuple[float, int, int, int]:
        # Best score; on a tie a visible sheet, then the earlier sheet, then the higher row.
        visible = 1 if self.worksheet.sheet_state == "visible" else 0
        return (self.score, visible, -self.sheet_index, -self.row)


def _hidden_columns(ws: Worksheet) -> set[int]:
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
        for quality, role in _role_matches(value):
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


def _headers_in(ws: Worksheet, index: int) -> _HeaderCandidate | None:
    """The row of ``ws`` that looks most like a case header (id + expected), if any."""
    best: _HeaderCandidate | None = None
    hidden = _hidden_columns(ws)
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
        candidate = _HeaderCandidate(ws, index, row_index, columns, len(columns) + quality / 100)
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
        id_like = [v for v in values if _ID_LIKE_RE.match(v)]
        if (
            len(id_like) >= 2
            and len(id_like) >= 0.8 * len(values)
            and len(set(id_like)) == len(id_like)
        ):
            return col
    return None


def _find_header(wb: Workbook) -> _HeaderCandidate | None:
    found = [h for i, ws in enumerate(wb.worksheets) if (h := _headers_in(ws, i))]
    return max(found, key=lambda h: h.key()) if found else None


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


def _find_version(wb: Workbook, header: _HeaderCandidate) -> str | None:
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


# --------------------------------------------------------------------------- rows


def _first_sentence(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    sentence = match.group(1).rstrip(".") if match else text
    if len(sentence) <= limit:
        return sentence
    cut = sentence[:limit].rsplit(" ", 1)[0]
    return cut + " …"


def _normalise_case_id(value: Any) -> str:
    return " ".join(cell_text(value).split())


def _is_repeated_header(values: dict[str, str]) -> bool:
    roles_of_id = {role for _, role in _role_matches(values.get("id", ""))}
    roles_of_expected = {role for _, role in _role_matches(values.get("expected", ""))}
    return "id" in roles_of_id and "expected" in roles_of_expected


def _is_manual(values: dict[str, str]) -> bool:
    fields = ("type", "category", "title", "description", "expected")
    return any(_MANUAL_RE.search(values.get(name, "")) for name in fields)


# What a test-case id looks like when it stands alone in a row ("KFR-23", "7", "1.2",
# "TC_04"), as opposed to a section title ("Batch", "Feilhåndtering").
_ID_LIKE_RE = re.compile(r"^(?:[A-Za-zÆØÅæøå]{1,10}[-_ ]?)?\d{1,4}(?:[.\-_]\d{1,4}){0,3}[A-Za-z]?$")
# Ids the reader makes up carry the row they came from: "Rad 17" for a row without an
# id, "KFR-05 (rad 17)" for a second row with the same id (typed twice or merged).
_ROW_IN_ID_RE = re.compile(r"^(?:Rad (\d+)|.+ \(rad (\d+)\))$")


def row_in_case_id(case_id: str) -> int | None:
    """The sheet row an id made up by the reader points at, or None for a sheet's own id."""
    match = _ROW_IN_ID_RE.match(case_id)
    return int(match.group(1) or match.group(2)) if match else None


def _filled_rows(ws: Worksheet) -> dict[int, dict[int, Any]]:
    """row → {column: value} for every non-blank cell.

    Walks only the cells the file has (openpyxl keeps them in ``_cells``), so a stray
    cell at row 1 048 576 costs nothing and no blank run can stop the reading early."""
    rows: dict[int, dict[int, Any]] = {}
    for (row, col), cell in ws._cells.items():
        value = cell.value
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        rows.setdefault(row, {})[col] = value
    return rows


@dataclass(frozen=True)
class _Merge:
    value: Any
    first_row: int
    last_row: int


def _vertical_merges(ws: Worksheet, below: int) -> dict[tuple[int, int], _Merge]:
    """(row, column) → the merged value, for cells of a merged range spanning several rows
    below the header: only the range's top-left cell holds the value in the file."""
    merges: dict[tuple[int, int], _Merge] = {}
    for rng in ws.merged_cells.ranges:
        if rng.max_row <= below or rng.min_row == rng.max_row:
            continue
        value = ws.cell(row=rng.min_row, column=rng.min_col).value
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        merge = _Merge(value, rng.min_row, rng.max_row)
        for row in range(max(rng.min_row + 1, below + 1), rng.max_row + 1):
            merges[(row, rng.min_col)] = merge
    return merges


def _row_hidden(ws: Worksheet, row: int) -> bool:
    dim = ws.row_dimensions.get(row)  # .get: indexing would add a dimension entry
    return bool(dim is not None and dim.hidden)


class _RowReader:
    """Turns the rows below a header into cases and notices; never skips a filled row
    without a notice."""

    def __init__(self, header: _HeaderCandidate) -> None:
        self.header = header
        self.ws = header.worksheet
        self.columns = header.columns
        self.cases: list[CaseSpec] = []
        self.notices: list[RowNotice] = []
        self._seen: set[str] = set()
        # Visible columns whose header names no role: their text still tells what a row
        # is about (binding reads it), though no field of the case holds it.
        self.unread = _unread_column_names(header)

    def notice(
        self, row: int, kind: str, message: str, case_id: str | None = None, *, warning: bool = True
    ) -> None:
        self.notices.append(RowNotice(self.ws.title, row, kind, message, case_id, warning))

    def read(self) -> None:
        filled = _filled_rows(self.ws)
        merges = _vertical_merges(self.ws, self.header.row)
        rows = sorted(r for r in filled if r > self.header.row)
        if len(rows) > MAX_DATA_ROWS:
            raise SheetError(
                f"Arket «{self.ws.title}» har {len(rows)} utfylte rader under overskriften "
                f"(rad {self.header.row}); et testark har langt færre.",
                hint=f"Over {MAX_DATA_ROWS} rader leses ikke, og arket leses heller ikke "
                "delvis. Kontroller at det er KFR-Integrasjonstester.xlsx fra Bits.",
            )
        for row in rows:
            self._read_row(row, filled[row], merges)

    def _read_row(
        self, row: int, own: dict[int, Any], merges: dict[tuple[int, int], _Merge]
    ) -> None:
        values: dict[str, str] = {}
        merged_roles: dict[str, _Merge] = {}
        for role, col in self.columns.items():
            if col in own:
                values[role] = cell_text(own[col])
            elif (merge := merges.get((row, col))) is not None:
                values[role] = cell_text(merge.value)
                merged_roles[role] = merge
            else:
                values[role] = ""
        values["id"] = _normalise_case_id(values["id"])
        values["other_text"] = "\n".join(
            f"{name}: {cell_text(own[col])}" for col, name in self.unread.items() if col in own
        )
        case_id, expected = values["id"], values["expected"].strip()
        known_cols = set(self.columns.values())
        if not any(col in known_cols for col in own) and not values["other_text"]:
            texts = ", ".join(f"«{_short(cell_text(v))}»" for v in own.values())
            self.notice(
                row,
                "outside_columns",
                f"tekst bare i kolonner arket ikke leser ({texts}); ikke et testtilfelle.",
            )
            return
        if _is_repeated_header(values):
            self.notice(
                row,
                "repeated_header",
                "overskriftsraden gjentas; ikke et testtilfelle.",
                warning=False,
            )
            return
        if (
            "id" in merged_roles
            and not expected
            and self.cases
            and self._continues(merged_roles["id"])
        ):
            self._append_continuation(row, values, merged_roles["id"])
            return
        if case_id and expected:
            self._add_case(row, values, merged_roles)
        elif case_id:
            if len(own) == 1 and not _ID_LIKE_RE.match(case_id):
                self.notice(
                    row,
                    "section",
                    f"«{_short(case_id)}» står alene; leses som "
                    "seksjonstittel, ikke som testtilfelle.",
                    warning=False,
                )
            else:
                self._add_case(row, values, merged_roles)
        elif expected:
            if len(own) >= 2:
                self._add_case(row, values, merged_roles, made_up_id=f"Rad {row}")
            else:
                self.notice(
                    row,
                    "expected_only",
                    f"bare «Forventet resultat» er fylt ut («{_short(expected)}»), uten "
                    "ID eller beskrivelse; ikke lest som testtilfelle.",
                )
        elif len(own) == 1:
            (value,) = own.values()
            self.notice(
                row,
                "note",
                f"«{_short(cell_text(value))}» står alene; leses som "
                "seksjonstittel eller merknad, ikke som testtilfelle.",
                warning=False,
            )
        else:
            self.notice(
                row,
                "no_id_no_expected",
                "raden har tekst, men verken ID eller forventet resultat; ikke lest som "
                "testtilfelle. Fyll inn ID og forventet resultat om det er et testtilfelle.",
            )

    def _continues(self, merge: _Merge) -> bool:
        last = self.cases[-1]
        return merge.first_row <= last.row <= merge.last_row

    def _append_continuation(self, row: int, values: dict[str, str], merge: _Merge) -> None:
        """A row under a merged id cell with no expectation of its own is more text of the
        case above (one case written over several rows): its text joins that case."""
        last = self.cases[-1]
        extra = {
            name: values.get(name, "").strip()
            for name in ("description", "preconditions", "test_data")
            if values.get(name, "").strip()
        }
        self.cases[-1] = replace(
            last,
            **{
                name: "\n".join(p for p in (getattr(last, name), text) if p)
                for name, text in extra.items()
            },
        )
        self.notice(
            row,
            "continuation",
            f"ID-cellen er slått sammen over rad {merge.first_row}–{merge.last_row} og "
            f"raden har ikke eget forventet resultat; teksten er lagt til "
            f"testtilfellet «{last.case_id}» (rad {last.row}).",
            last.case_id,
        )

    def _add_case(
        self,
        row: int,
        values: dict[str, str],
        merged_roles: dict[str, _Merge],
        made_up_id: str | None = None,
    ) -> None:
        case_id = made_up_id or values["id"]
        if case_id in self._seen:
            # Two rows with one id would collide as test ids and file names; keep both.
            case_id = f"{case_id} (rad {row})"
        self._seen.add(case_id)
        description = values.get("description", "").strip()
        title = values.get("title", "").strip() or _first_sentence(description) or case_id
        manual = _is_manual(values)
        case = CaseSpec(
            case_id=case_id,
            title=" ".join(title.split()),
            expected=parse_expectation(values["expected"]),
            description=description,
            preconditions=values.get("preconditions", "").strip(),
            test_data=values.get("test_data", "").strip(),
            manual=manual,
            sheet_name=self.ws.title,
            row=row,
            category=values.get("category", "").strip(),
            other_text=values["other_text"],
        )
        self.cases.append(case)
        self._explain(row, case, values, merged_roles, made_up_id)

    def _explain(
        self,
        row: int,
        case: CaseSpec,
        values: dict[str, str],
        merged_roles: dict[str, _Merge],
        made_up_id: str | None,
    ) -> None:
        cid = case.case_id
        if made_up_id:
            self.notice(
                row,
                "no_id",
                f"raden har forventet resultat, men ingen ID; lest som testtilfellet «{cid}».",
                cid,
            )
        elif cid != values["id"]:
            self.notice(
                row,
                "duplicate_id",
                f"ID-en «{values['id']}» er brukt før i arket; lest som «{cid}».",
                cid,
            )
        for role, merge in merged_roles.items():
            name = {"id": "ID-en", "expected": "forventet resultat"}.get(role, f"«{role}»")
            self.notice(
                row,
                f"merged_{role}",
                f"{name} er hentet fra en sammenslått celle "
                f"(rad {merge.first_row}–{merge.last_row}); lest som «{cid}».",
                cid,
            )
        if not values["expected"].strip() and not case.manual:
            self.notice(
                row,
                "empty_expectation",
                f"«Forventet resultat» er tomt; «{cid}» kan "
                "ikke kontrolleres og vises som «Ikke automatisert».",
                cid,
            )
        if _row_hidden(self.ws, row):
            self.notice(
                row,
                "hidden_row",
                f"raden er skjult i arket; «{cid}» leses og kjøres som de andre.",
                cid,
            )


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unread_column_names(header: _HeaderCandidate) -> dict[int, str]:
    """column → header text, for visible header cells that name no role."""
    ws = header.worksheet
    used = set(header.columns.values())
    hidden = _hidden_columns(ws)
    names = {}
    for col in range(1, min(ws.max_column, HEADER_SEARCH_COLUMNS) + 1):
        text = cell_text(ws.cell(row=header.row, column=col).value)
        if text and col not in used and col not in hidden and not _role_matches(text):
            names[col] = " ".join(text.split())
    return names


def _unread_columns(header: _HeaderCandidate) -> list[RowNotice]:
    """Header cells that name no role: their column is not read."""
    ws = header.worksheet
    used = set(header.columns.values())
    notices = []
    for col in range(1, min(ws.max_column, HEADER_SEARCH_COLUMNS) + 1):
        value = ws.cell(row=header.row, column=col).value
        if col in used or not cell_text(value):
            continue
        letter = ws.cell(row=header.row, column=col).column_letter
        name = f"«{_short(cell_text(value))}» ({letter})"
        hidden = col in _hidden_columns(ws)
        if isinstance(value, str) and _role_matches(value):
            why = "har en rolle som en annen kolonne allerede har; innholdet brukes ikke."
        elif hidden:
            why = "gjenkjennes ikke; innholdet brukes ikke."
        else:
            why = "gjenkjennes ikke; teksten brukes bare til å binde raden til et steg."
        notices.append(
            RowNotice(
                ws.title,
                header.row,
                "unread_column",
                f"kolonnen {name}{' (skjult)' if hidden else ''} {why}",
                warning=False,
            )
        )
    return notices


def _cases_elsewhere(wb: Workbook, header: _HeaderCandidate) -> list[RowNotice]:
    """Rows on other worksheets that look like test cases. Only the case worksheet is read
    and written back, so these are reported, one notice per row."""
    notices: list[RowNotice] = []
    for index, ws in enumerate(wb.worksheets):
        if ws is header.worksheet:
            continue
        other = _headers_in(ws, index)
        filled = _filled_rows(ws)
        for row in sorted(filled)[:MAX_DATA_ROWS]:
            cells = filled[row]
            if other is not None:
                if row <= other.row:
                    continue
                case_id = _normalise_case_id(cells.get(other.columns["id"]))
                expected = cell_text(cells.get(other.columns["expected"]))
                looks_like_case = bool(
                    case_id
                    and expected
                    and not _is_repeated_header({"id": case_id, "expected": expected})
                )
            else:
                case_id, looks_like_case = _case_like(cells)
            if looks_like_case:
                state = "" if ws.sheet_state == "visible" else " (skjult ark)"
                notices.append(
                    RowNotice(
                        ws.title,
                        row,
                        "other_worksheet",
                        f"ser ut som testtilfellet «{_short(case_id)}», men står på et annet ark "
                        f"enn «{header.worksheet.title}»{state} og leses ikke. Flytt det dit om det "
                        "skal kjøres.",
                    )
                )
    return notices


def _case_like(cells: dict[int, Any]) -> tuple[str, bool]:
    """A row without a header above it: an id-like cell and another cell that states an
    HTTP status or an error code."""
    if len(cells) < 2:
        return "", False
    texts = {col: cell_text(v) for col, v in cells.items()}
    for col, text in texts.items():
        if not _ID_LIKE_RE.match(text):
            continue
        for other_col, other in texts.items():
            if other_col == col:
                continue
            expectation = parse_expectation(other)
            if expectation.status is not None or expectation.error_code:
                return text, True
    return "", False


def _read_cases(header: _HeaderCandidate) -> tuple[list[CaseSpec], list[RowNotice]]:
    reader = _RowReader(header)
    reader.read()
    return reader.cases, reader.notices


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
    data = _read_bytes(path)
    _check_format(path, data)
    wb = _load(path, data)
    header = _find_header(wb)
    if header is None:
        raise SheetError(
            f"Fant ingen overskriftsrad med testtilfeller i «{path.name}».",
            hint="Arket trenger en rad med kolonneoverskrifter, minst en ID-kolonne (f.eks. «Testcase-ID») "
            "og en kolonne for forventet resultat (f.eks. «Forventet resultat»).",
        )
    cases, notices = _read_cases(header)
    notices = _unread_columns(header) + notices + _cases_elsewhere(wb, header)
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
