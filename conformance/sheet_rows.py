"""The rows below a sheet's header: cases, and a notice for every row not read as written.

No filled row is dropped silently. A row becomes a case, or text joined to the case
above, or a :class:`RowNotice` saying by row number why it was not read as written (see
``docs/binding.md`` for the table of kinds). Rows on other worksheets that look like test
cases are reported too: only the case worksheet is read and written back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from conformance.errors import SheetError
from conformance.expectation import parse_expectation
from conformance.models import CaseSpec
from conformance.sheet_columns import (
    HEADER_SEARCH_COLUMNS,
    ID_LIKE_RE,
    HeaderCandidate,
    cell_text,
    headers_in,
    hidden_columns,
    role_matches,
)

__all__ = ["MAX_DATA_ROWS", "RowNotice", "row_in_case_id"]

# Filled rows below the header; far more is not an integration-test sheet, and the sheet
# is refused rather than read in part.
MAX_DATA_ROWS = 5000

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
    roles_of_id = {role for _, role in role_matches(values.get("id", ""))}
    roles_of_expected = {role for _, role in role_matches(values.get("expected", ""))}
    return "id" in roles_of_id and "expected" in roles_of_expected


def _is_manual(values: dict[str, str]) -> bool:
    fields = ("type", "category", "title", "description", "expected")
    return any(_MANUAL_RE.search(values.get(name, "")) for name in fields)


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

    def __init__(self, header: HeaderCandidate) -> None:
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
            if len(own) == 1 and not ID_LIKE_RE.match(case_id):
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


def _unread_column_names(header: HeaderCandidate) -> dict[int, str]:
    """column → header text, for visible header cells that name no role."""
    ws = header.worksheet
    used = set(header.columns.values())
    hidden = hidden_columns(ws)
    names = {}
    for col in range(1, min(ws.max_column, HEADER_SEARCH_COLUMNS) + 1):
        text = cell_text(ws.cell(row=header.row, column=col).value)
        if text and col not in used and col not in hidden and not role_matches(text):
            names[col] = " ".join(text.split())
    return names


def unread_columns(header: HeaderCandidate) -> list[RowNotice]:
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
        hidden = col in hidden_columns(ws)
        if isinstance(value, str) and role_matches(value):
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


def cases_elsewhere(wb: Workbook, header: HeaderCandidate) -> list[RowNotice]:
    """Rows on other worksheets that look like test cases. Only the case worksheet is read
    and written back, so these are reported, one notice per row."""
    notices: list[RowNotice] = []
    for index, ws in enumerate(wb.worksheets):
        if ws is header.worksheet:
            continue
        other = headers_in(ws, index)
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
        if not ID_LIKE_RE.match(text):
            continue
        for other_col, other in texts.items():
            if other_col == col:
                continue
            expectation = parse_expectation(other)
            if expectation.status is not None or expectation.error_code:
                return text, True
    return "", False


def read_cases(header: HeaderCandidate) -> tuple[list[CaseSpec], list[RowNotice]]:
    reader = _RowReader(header)
    reader.read()
    return reader.cases, reader.notices
