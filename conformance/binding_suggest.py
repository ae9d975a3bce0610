"""Suggest bindings for the rows the binder left unbound: a TOML file for the bank to confirm.

``kfr-conformance sheet PATH --suggest [--out FILE]`` writes it. The file is in the format
:func:`conformance.binding.load_bindings_file` reads. For every unbound row it lists the
best-fitting steps, ranked, with their score and the reasons (as comments), then a line
``"<case id>" = "<step>"`` for the best one:

- *confident* (a viable step with at least :data:`BIND_MIN_SCORE` points and a lead of
  :data:`CONFIDENT_LEAD` over the next): the line is active — the bank only has to read it;
- above the floor (:data:`SUGGEST_FLOOR` points, viable): the line is there but commented
  out — the bank removes the ``#`` to confirm;
- below the floor, or no viable step: ``# "<case id>" = "-"``, for "not automated".

Binding by text needs a larger lead (:data:`BIND_MARGIN`) than a confident suggestion,
because nobody reads it; here a person does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from conformance.binding import BIND_MARGIN, BIND_MIN_SCORE, Candidate, rank_steps
from conformance.models import CaseSpec
from conformance.steps import StepRegistry

__all__ = ["CONFIDENT_LEAD", "SUGGEST_FLOOR", "Suggestion", "suggest", "suggestions_toml"]

SUGGEST_FLOOR = 4
CONFIDENT_LEAD = BIND_MARGIN - 1
MAX_CANDIDATES = 3


class Suggestion:
    """The ranked candidates for one unbound row and what the file pre-fills."""

    def __init__(self, case: CaseSpec, ranked: Sequence[Candidate]) -> None:
        self.case = case
        viable = [c for c in ranked if c.viable]
        # Steps that contradict the row are still worth showing when nothing fits: the
        # contradiction tells the bank what to check in the sheet.
        self.candidates: list[Candidate] = (
            viable or [c for c in ranked if c.evidence and c.score > 0]
        )[:MAX_CANDIDATES]
        top = viable[0] if viable else None
        lead = top.score - viable[1].score if top and len(viable) > 1 else None
        self.step: str | None = top.step if top and top.score >= SUGGEST_FLOOR else None
        self.confident = bool(
            self.step
            and top is not None
            and top.score >= BIND_MIN_SCORE
            and (lead is None or lead >= CONFIDENT_LEAD)
            and _stands_alone(top, viable[1:])
        )


def _stands_alone(top: Candidate, others: Sequence[Candidate]) -> bool:
    """The top candidate's strongest reason (an agreeing error code, or the operation its
    title names) is not shared by any other viable candidate: its lead does not rest on
    hints alone, which is where near-misses come from."""
    strongest = [r for r in top.reasons if r.startswith(("feilkode", "operasjon"))]
    if not strongest:
        return False
    return not any(set(strongest) & set(other.reasons) for other in others)


def suggest(cases: Sequence[CaseSpec], registry: StepRegistry) -> list[Suggestion]:
    """Suggestions for every row without a binding (bound rows and rows a bindings file
    set to "-" on purpose are left alone)."""
    return [
        Suggestion(case, rank_steps(case, registry))
        for case in cases
        if case.binding is None and case.binding_source != "file"
    ]


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def _comment_text(text: str, limit: int = 90) -> str:
    """One line, no control characters: safe after a ``#``."""
    text = " ".join(_CONTROL_RE.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrapped(prefix: str, words: Sequence[str], width: int = 90) -> list[str]:
    lines, line = [], prefix
    for word in words:
        if len(line) + len(word) + 2 > width and line != prefix:
            lines.append(line.rstrip(", ") + ",")
            line = "#   "
        line += word + ", "
    lines.append(line.rstrip(", "))
    return lines


def _candidate_line(rank: int, candidate: Candidate, width: int) -> str:
    why = ", ".join(candidate.reasons) or "ingen treff"
    if candidate.contradicts:
        why += " — motsier: " + "; ".join(candidate.contradicts)
    return f"#   {rank}. {candidate.step:<{width}}  {candidate.score:>2} poeng: {_comment_text(why, 160)}"


def _section(s: Suggestion) -> list[str]:
    case = s.case
    expected = case.expected.text or "(tomt)"
    lines = [
        f"# Rad {case.row}, {_comment_text(case.case_id, 40)}: «{_comment_text(case.title, 70)}»",
        f"#   forventet: «{_comment_text(expected, 80)}»",
    ]
    if case.manual:
        lines.append("#   raden er manuell")
    if s.candidates:
        width = max(len(c.step) for c in s.candidates)
        lines += [_candidate_line(i, c, width) for i, c in enumerate(s.candidates, start=1)]
    else:
        lines.append("#   ingen steg passer")
    key = _toml_string(case.case_id)
    if s.step and s.confident:
        lines.append(f"{key} = {_toml_string(s.step)}  # sikkert forslag – kontroller")
    elif s.step:
        lines.append(f"# {key} = {_toml_string(s.step)}  # usikkert – fjern «#» for å bekrefte")
    else:
        lines.append(f'# {key} = "-"  # ikke automatisert; fjern «#» for å bekrefte')
    return lines


def suggestions_toml(
    suggestions: Sequence[Suggestion],
    registry: StepRegistry,
    *,
    sheet_name: str,
    sheet_sha256: str,
    suite_name: str,
    now: dt.datetime | None = None,
) -> str:
    """The bindings file, in Norwegian, ready for ``--bindings``."""
    now = now or dt.datetime.now(dt.UTC)
    confident = sum(1 for s in suggestions if s.confident)
    head = [
        f"# Bindingsforslag for «{_comment_text(sheet_name)}»",
        f"# SHA-256 {sheet_sha256}",
        f"# Laget {now:%Y-%m-%d %H:%M} UTC av «kfr-conformance sheet --suggest», suite «{_comment_text(suite_name)}».",
        "#",
        f"# {len(suggestions)} rader ble ikke bundet til et steg automatisk. For hver rad står",
        "# stegene som passer best, med poeng og begrunnelse. En linje uten «#» gjelder når",
        "# filen brukes; en linje med «#» gjelder ikke før du fjerner «#». Du kan også skrive",
        '# et annet stegnavn, eller "-" for «ikke automatisert».',
        f"# {confident} forslag er sikre nok til å stå aktive; kontroller dem likevel.",
        "#",
        "# Bruk: pytest --bank=ORGNR --sheet ARK --bindings DENNE_FILEN",
        "#   og se resultatet først med: kfr-conformance sheet ARK --bindings DENNE_FILEN",
        "#",
        *_wrapped("# Kjente steg: ", [step.name for step in registry]),
        "",
        "[bindings]",
    ]
    body: list[str] = []
    for suggestion in suggestions:
        body.append("")
        body.extend(_section(suggestion))
    return "\n".join(head + body) + "\n"
