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
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from conformance.errors import SheetError
from conformance.models import CaseSpec, Expectation

__all__ = ["ROLES", "SheetInfo", "cell_text", "parse_expectation", "read_sheet"]

# A sheet is a few hundred kilobytes; anything far bigger is not the integration-test sheet.
MAX_SHEET_BYTES = 50 * 1024 * 1024
# Where to look for the header row, and how far to read below it.
HEADER_SEARCH_ROWS = 100
HEADER_SEARCH_COLUMNS = 60
MAX_DATA_ROWS = 5000
MAX_EMPTY_RUN = 500
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
        ("navn", "name", "test case", "testcase", "testtilfelle", "test"),
    ),
    "description": (
        ("beskrivelse", "description", "testbeskrivelse", "test description",
         "beskrivelse av test", "fremgangsmåte", "teststeg", "test steps", "steg", "steps",
         "detaljer", "details", "hva testes", "hva som testes", "what is tested",
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
         "forventet utfall"),
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
class SheetInfo:
    """Where the cases were found, and the file's identity (for the pack and the writer)."""

    path: Path
    file_name: str
    sha256: str
    version: str | None
    worksheet: str
    header_row: int
    columns: dict[str, int] = field(default_factory=dict)  # role → 1-based column index

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "file_name": self.file_name,
            "sha256": self.sha256,
            "version": self.version,
            "worksheet": self.worksheet,
            "header_row": self.header_row,
            "columns": dict(self.columns),
        }


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


def _find_header(wb: Workbook) -> _HeaderCandidate | None:
    best: _HeaderCandidate | None = None
    for index, ws in enumerate(wb.worksheets):
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
            if "id" not in columns or "expected" not in columns:
                continue
            # Roles count first; how surely they were named breaks ties between rows.
            candidate = _HeaderCandidate(
                ws, index, row_index, columns, len(columns) + quality / 100
            )
            if best is None or candidate.key() > best.key():
                best = candidate
    return best


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


def _read_cases(header: _HeaderCandidate) -> list[CaseSpec]:
    ws = header.worksheet
    columns = header.columns
    max_col = max(columns.values())
    cases: list[CaseSpec] = []
    seen: dict[str, int] = {}
    empty_run = 0
    last_row = min(ws.max_row, header.row + MAX_DATA_ROWS)
    for row_index, row in enumerate(
        ws.iter_rows(min_row=header.row + 1, max_row=last_row, max_col=max_col, values_only=True),
        start=header.row + 1,
    ):
        filled = [v for v in row if cell_text(v).strip()]
        if not filled:
            empty_run += 1
            if empty_run >= MAX_EMPTY_RUN:
                break
            continue
        empty_run = 0
        values = {
            role: cell_text(row[col - 1]) if col - 1 < len(row) else ""
            for role, col in columns.items()
        }
        values["id"] = _normalise_case_id(row[columns["id"] - 1])
        # A section title, a footer or a note fills one cell; a case has an id and an
        # expectation. A header repeated further down (a second page) is not a case either.
        if len(filled) < 2 or not values["id"] or not values["expected"].strip():
            continue
        if _is_repeated_header(values):
            continue
        case_id = values["id"]
        if case_id in seen:
            # Two rows with one id would collide as test ids and file names; keep both.
            case_id = f"{case_id} (rad {row_index})"
        seen[case_id] = row_index
        description = values.get("description", "").strip()
        title = values.get("title", "").strip() or _first_sentence(description) or case_id
        cases.append(
            CaseSpec(
                case_id=case_id,
                title=" ".join(title.split()),
                expected=parse_expectation(values["expected"]),
                description=description,
                preconditions=values.get("preconditions", "").strip(),
                test_data=values.get("test_data", "").strip(),
                manual=_is_manual(values),
                sheet_name=ws.title,
                row=row_index,
                category=values.get("category", "").strip(),
            )
        )
    return cases


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
    cases = _read_cases(header)
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
    )
    return info, cases


def _version_from_filename(name: str) -> str | None:
    match = _VERSION_FILENAME_RE.search(Path(name).stem)
    return match.group(1).replace("_", ".") if match else None
