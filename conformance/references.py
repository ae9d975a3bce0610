"""Where a failed row is explained: KFR's error codes and the topics of Bits' KFR FAQ.

A bank whose row failed needs the rule it broke, not our paraphrase of it. This table
points from an error code (KFR-0xx, ERR-00x, Maskinporten's MP-xxx) or a topic (batch
boundary, token request, activeAccount) to the section of Bits' published pages, or of the
published KFR API description, that explains it. It cites; it does not copy: each entry is
a short Norwegian label and a link or section name, never the text of the source.

Sources (as published; the FAQ's section anchors are its headings):
- Bits' KFR FAQ, ``dsop_kundeforholdsregister_faq`` — sections «Maskinporten»,
  «Eksempel token request», «Asymmetriske nøkler», «Boundary i batch», «Eksempel BATCH»,
  «Datafeltet activeAccount».
- KFR API 1.1.2 (OpenAPI, «Kundeforholdregister - API Specification»): the error codes of
  each operation's 400/401/403/404/500 answers.
- Digdir's Maskinporten documentation, which the KFR API description refers to for
  authentication (MP-xxx codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from conformance.models import CaseResult, Outcome

__all__ = [
    "FAQ_URL",
    "Reference",
    "operation_reference",
    "references_for",
    "references_for_text",
]

FAQ_URL = "https://dokumentasjon.dsop.no/dsop_kundeforholdsregister_faq.html"
MASKINPORTEN_URL = "https://docs.digdir.no/docs/Maskinporten/maskinporten_overordnet.html"
API_SPEC = "KFR API 1.1.2 (OpenAPI-beskrivelsen fra Bits)"


@dataclass(frozen=True)
class Reference:
    """One place that explains a failure: what it is about, where, and a link when the
    place has one of its own (a section of the API description is named, not linked)."""

    key: str      # the code or topic, e.g. "KFR-003", "faq:boundary"
    label: str    # Norwegian, shown as the link text
    source: str   # the publication and section, e.g. "Bits' FAQ for KFR, «Boundary i batch»"
    url: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"key": self.key, "label": self.label, "source": self.source, "url": self.url}


def _faq(key: str, label: str, section: str, anchor: str) -> Reference:
    return Reference(key, label, f"Bits' FAQ for KFR, «{section}»", f"{FAQ_URL}#{anchor}")


def _code(code: str, label: str, answer: str) -> Reference:
    return Reference(code, f"{code}: {label}", f"{API_SPEC}, feilkode {code} ({answer})")


FAQ_TOPICS: dict[str, Reference] = {
    ref.key: ref
    for ref in (
        _faq("faq:maskinporten", "Token fra Maskinporten (JWT-grant, scope)", "Maskinporten",
             "maskinporten"),
        _faq("faq:token-request", "Eksempel på tokenforespørsel: header, x5c og claims",
             "Eksempel token request", "eksempel-token-request"),
        _faq("faq:x5c", "Bruk x5c i JWT-headeren i stedet for forhåndsregistrerte nøkler",
             "Asymmetriske nøkler", "asymmetriske-nøkler"),
        _faq("faq:boundary", "Boundary i batch: uten anførselstegn, lik i header og kropp "
             "(ellers 403)", "Boundary i batch", "boundary-i-batch"),
        _faq("faq:batch", "Eksempel på batch-forespørsel (multipart/form-data)", "Eksempel BATCH",
             "eksempel-batch"),
        _faq("faq:active-account", "activeAccount er alltid false i KFR",
             "Datafeltet activeAccount", "datafeltet-activeaccount"),
    )
}

ERROR_CODES: dict[str, Reference] = {
    ref.key: ref
    for ref in (
        _code("KFR-001", "klienten er ikke autentisert", "401"),
        _code("KFR-002", "klienten mangler tilgang (scope)", "403"),
        _code("KFR-003", "klienten kan ikke forvalte kundeforhold for denne fid", "403"),
        _code("KFR-004", "ugyldig forespørsel", "400"),
        _code("KFR-005", "ugyldig kundeidentifikator", "400"),
        _code("KFR-007", "intern feil i KFR", "500"),
        _code("KFR-008", "kundeforholdet finnes ikke", "404"),
        _code("KFR-009", "ugyldig relasjonstype", "400"),
        _code("KFR-010", "ugyldig datoformat", "400"),
        _code("ERR-001", "ikke autorisert for oppslag", "401/403"),
        _code("ERR-002", "ugyldig kunde-ID i oppslag", "400"),
        _code("ERR-003", "ugyldig periode i oppslag", "400"),
    )
}

_FID = "/customers/financialInstitutions/{fid}"
# The API description's operation for each kind of row: what it answers and with which codes.
OPERATIONS: dict[str, Reference] = {
    ref.key: ref
    for ref in (
        Reference("op:add", "Registrere kundeforhold: svar og feilkoder",
                  f"{API_SPEC}, operasjon addCustomerDSOPGW "
                  f"(POST {_FID}/relationshipType/{{type}})"),
        Reference("op:end", "Avslutte kundeforhold: svar og feilkoder",
                  f"{API_SPEC}, operasjon deleteCustomerDSOPGW "
                  f"(DELETE {_FID}/relationshipType/{{type}})"),
        Reference("op:batch", "Registrere mange kundeforhold (fil): svar og feilkoder",
                  f"{API_SPEC}, operasjon addCustomerDSOPGWByFile (POST {_FID}/batch)"),
        Reference("op:lookup", "Oppslag på egen bank: svar og feilkoder",
                  f"{API_SPEC}, operasjon getCustomerRelationForOwnBank (GET {_FID}/)"),
    )
}
# Words in a row's title or step name that say which operation it exercises, in this order
# ("Historikk for avsluttet kundeforhold" is a lookup).
_OPERATION_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bbatch|\bfil\b|\(fil\)", re.I), "op:batch"),
    (re.compile(r"^lookup|^history|oppslag|historikk", re.I), "op:lookup"),
    (re.compile(r"^end|avslutt", re.I), "op:end"),
    (re.compile(r"^add|registrer", re.I), "op:add"),
)

# The FAQ topic that belongs with an error code, where the FAQ has one.
_CODE_TOPICS: dict[str, tuple[str, ...]] = {
    "KFR-001": ("faq:maskinporten",),
    "KFR-002": ("faq:maskinporten",),
    "KFR-004": ("faq:batch",),
    "KFR-010": ("faq:batch",),
}

# Words in a row (title, step, message) that name a FAQ topic. Checked in this order.
_TOPIC_WORDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"boundary", re.I), ("faq:boundary", "faq:batch")),
    (re.compile(r"\bbatch|\bfil(en)?\b|multipart", re.I), ("faq:batch",)),
    (re.compile(r"\bx5c\b|sertifikatkjede|\bkid\b", re.I), ("faq:x5c", "faq:token-request")),
    (re.compile(r"maskinporten|\btoken\b|assertion|\bjwt\b|\bscope\b|\bMP-\d{3}\b", re.I),
     ("faq:maskinporten", "faq:token-request")),
    (re.compile(r"activeaccount", re.I), ("faq:active-account",)),
)

_CODE_IN_TEXT = re.compile(r"\b(KFR-\d{3}|ERR-\d{3})\b")
_MASKINPORTEN_CODE = re.compile(r"\bMP-\d{3}\b")


def _maskinporten_code(code: str) -> Reference:
    return Reference(code, f"{code}: feilkode fra Maskinporten",
                     f"Digdirs dokumentasjon av Maskinporten, feilkode {code}", MASKINPORTEN_URL)


def references_for_text(*texts: str | None, codes: Iterable[str | None] = ()) -> list[Reference]:
    """The references for error ``codes`` and for codes and topics named in ``texts``,
    codes first, each once."""
    found: dict[str, Reference] = {}
    joined = "\n".join(t for t in texts if t)
    all_codes = [c for c in codes if c] + _CODE_IN_TEXT.findall(joined)
    for code in all_codes:
        code = code.upper()
        if code in ERROR_CODES:
            found.setdefault(code, ERROR_CODES[code])
            for topic in _CODE_TOPICS.get(code, ()):
                found.setdefault(topic, FAQ_TOPICS[topic])
    for code in _MASKINPORTEN_CODE.findall(joined):
        found.setdefault(code, _maskinporten_code(code))
    for pattern, topics in _TOPIC_WORDS:
        if pattern.search(joined):
            for topic in topics:
                found.setdefault(topic, FAQ_TOPICS[topic])
    return list(found.values())


def operation_reference(*names: str | None) -> Reference | None:
    """The API operation a row exercises, from its step name or title."""
    for pattern, key in _OPERATION_WORDS:
        if any(name and pattern.search(name) for name in names):
            return OPERATIONS[key]
    return None


def references_for(case: CaseResult) -> list[Reference]:
    """Where the failure of ``case`` is explained; empty for a row that did not fail.

    The answer's error code and the sheet's expected one both count (expecting KFR-001 and
    getting none is explained under KFR-001), then codes and topics in the row's own words,
    then the API operation the row exercises (its answers and codes), so that every failed
    row has somewhere to look.
    """
    if case.outcome not in (Outcome.FAILED, Outcome.ERROR):
        return []
    found = references_for_text(
        case.title,
        case.binding,
        case.expected.text,
        case.actual,
        case.message,
        codes=(case.actual_error_code, case.expected.error_code),
    )
    operation = operation_reference(case.binding, case.title)
    if operation is not None and operation not in found:
        found.append(operation)
    return found
