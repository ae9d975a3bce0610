"""What a sheet's "expected result" cell says: HTTP status and error code, read from prose.

Bits' sheet states expectations in prose, in Norwegian or English, labelled ("HTTP 404
Not Found med feilkode KFR-008") or free ("gir 400 med KFR-005", "should get a 404
back"). :func:`parse_expectation` reads the status and the error code and keeps the
text; dates, organisation numbers, counts and sizes are never read as a status.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from conformance.models import Expectation

__all__ = ["parse_expectation"]


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
