"""Bind sheet rows to steps: by a bindings file, by the row's id, or by what the row says.

Order, first that applies wins:

1. **file** — ``--bindings FILE`` maps case ids to step names; ``"-"`` or ``""`` means
   "not automated" on purpose.
2. **id** — a step lists the row's id in ``case_ids``, its signature does not contradict
   the row, and the row's text does not clearly point at another step. An official sheet
   that reuses "KFR-05" for another test is then not run with the wrong step; it falls
   through to 3.
3. **text** — a scored matcher. Features are read from the row (operations, kind of
   identifier, expected status and error code, whether the expectation claims success or
   refusal, words) and every step's :class:`StepSignature` is scored. Steps that
   contradict the row are out; the best remaining step binds only when it has positive
   evidence (an agreeing error code, an operation the row names, or one of its hints),
   scores at least :data:`BIND_MIN_SCORE` and leads the next step by
   :data:`BIND_MARGIN`. Anything less leaves the row unbound, which the plugin runs as
   *not automated* (never dropped, never passed) and ``sheet --suggest`` offers to the
   bank as ranked candidates: a wrong binding is worse than none.

A step *contradicts* a row when their statuses or error codes differ; when the row names
an error code and the step is a success step; when the row has no status but claims
success and the step expects a refusal, or the other way round; when both name a kind
of identifier and the kinds differ; when one is manual and the other is not; when one of
the step's keyword groups has no word in the row; when the row names operations and the
step's is not among them (unless the error codes agree, which is specific enough on its
own); or when the row is about what a public agency does, which no bank step does.

A row whose expectation states neither status nor error code ("kunden er registrert",
"the token carries scope …") cannot be judged from the sheet alone. When such a row binds
and its claim agrees with the step (success claimed, success step), the step's designed
status and error code become the row's expectation, and ``expectation_source`` says so
("step"), so the report and ``sheet`` can show that the number came from us.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from conformance.errors import UsageError
from conformance.models import CaseSpec, Expectation
from conformance.steps import Step, StepRegistry, StepSignature

__all__ = [
    "BIND_MARGIN",
    "BIND_MIN_SCORE",
    "Candidate",
    "bind_cases",
    "implied_expectation_lines",
    "load_bindings_file",
    "normalise_case_id",
    "parse_bindings",
    "rank_steps",
    "text_features",
]

NOT_AUTOMATED = ("-", "")

# Words that say which operation a row is about (Norwegian and English). Each entry is a
# regex matched at the start of a word. These are the KFR API's operations in general
# words; what singles out one step among those of an operation lives in its signature.
# fmt: off
_OPERATION_WORDS: dict[str, tuple[str, ...]] = {
    "token": (r"token\w*", r"tilgangstoken\w*", r"maskinporten\w*", r"access[_ ]token\w*",
              r"jwt\w*", r"autentiser\w*", r"authenticat(?:e|es|ed|ing|ion)\b"),
    "batch": (r"batch\w*", r"fil(?:en|er|ene)?\b", r"file[sn]?\b", r"filopplast\w*",
              r"bulk\w*", r"masse\w*", r"multipart\w*", r"upload\w*", r"opplast\w*",
              r"last(?:e|er|es)?\s+opp\b", r"initial load\w*", r"første (?:fullstendige )?innlast\w*"),
    "end": (r"avslutt\w*", r"slett\w*", r"delete[ds]?\b", r"deletion\w*", r"end(?:s|ed|ing)?\b",
            r"terminat\w*", r"fjern\w*", r"remov\w*", r"opphør\w*", r"utmeld\w*",
            r"meld(?:e|er|es|t)?\s+ut\b", r"leaves?\b", r"leaving\b", r"deregist\w*",
            r"offboard\w*", r"slutter\b", r"cancel\w*", r"clos(?:e|es|ed|ing)\b"),
    "history": (r"historikk\w*", r"histori\w*", r"history\b", r"periode\w*", r"period\w*",
                r"fromdate\b", r"todate\b"),
    "lookup": (r"oppslag\w*", r"slå\w*(?:\s+\w+)?\s+opp\b", r"slås\s+opp\b", r"søk\w*",
               r"look(?:s|ed|ing)?\s*up\b", r"lookup\w*", r"quer(?:y|ies|ied)\b", r"spør\w*",
               r"hvilke banker\b", r"which banks\b", r"checks? (?:its|our|the) own\b",
               r"(?-i:GET)\b"),
    # "registrert"/"registered" describe a state ("kunden er registrert"), not the request.
    "add": (r"registrer(?:e|er|es|ing\w*)?\b", r"legg(?:e|er)?\s+(?:\w+\s+)?til\b", r"opprett\w*", r"add(?:s|ed|ing)?\b",
            r"create[sd]?\b", r"creating\b", r"(?<!the )(?<!a )register(?:s|ing)?\b",
            r"registration\w*", r"innmeld\w*",
            r"meld(?:e|er|es|t)?\s+inn\b", r"ny(?:e|tt)?\s+(?:\w+)?kunde\w*", r"new customer\w*",
            r"becomes? a customer\b", r"joins?\b", r"onboard\w*", r"insert\w*",
            r"enrol\w*"),
}

# Kinds of customer identifier. An explicit name beats a generic word ("person", "foretak").
_SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "d-nummer": (r"d-?nummer\w*", r"d-nr\b", r"dnr\b", r"d-?number\w*", r"d nummer\w*"),
    "fodselsnummer": (r"fødselsnummer\w*", r"fødselsnr\w*", r"fnr\b", r"f-nummer\w*",
                      r"personnummer\w*", r"personnr\b", r"national identity number\w*",
                      r"national id\b", r"national id number\w*", r"personal identity number\w*",
                      r"birth number\w*"),
    "orgnr": (r"organisasjonsnummer\w*", r"organisasjonsnr\w*", r"org\.?\s?nr\b", r"orgnr\w*",
              r"organi[sz]ation(?:al)? numbers?\b", r"org(?:anisation|anization)?\s?no\b"),
}
_GENERIC_SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "fodselsnummer": (r"person(?:en|er|ene)?\b", r"privatperson\w*", r"privatkunde\w*",
                      r"private customer\w*", r"individual\w*", r"natural person\w*"),
    "orgnr": (r"foretak(?:et|s)?\b", r"bedrift\w*", r"selskap\w*", r"aksjeselskap\w*",
              r"compan(?:y|y's|ies)\b", r"enterprise\b", r"business\w*", r"virksomhet(?:en|er)?\b",
              r"juridisk person\w*", r"organi[sz]ation\b"),
}

# Operations of public agencies (police, tax, NAV …): KFR answers them, but no bank step
# does them, so a row about one is never bound to a bank step.
_AGENCY_RE = re.compile(
    r"(?<!\w)(?:etat(?:en|er|ene)?|agency|agencies|myndighet\w*|authorit(?:y|ies)|politi\w*|"
    r"police|skatteetaten|tax authorit\w*|nav\b|kontrollinformasjon|accountservicingprovider|"
    r"customerrelationships)",
    re.IGNORECASE,
)

# A "token" that is missing or defective is not the token operation but a defect of the
# request the row is about: "uten token", "no bearer token", "token lacking the write scope".
_TOKEN_DEFECT_BEFORE_RE = re.compile(
    r"(?<!\w)(?:uten|without|no|ingen|missing|mangler|manglende|ugyldig\w*|invalid|feil|wrong|"
    r"expired|utløpt|forged|falsk|usignert|unsigned|anonym\w*)(?:\W+\w+){0,2}\W+$",
    re.IGNORECASE,
)
_TOKEN_DEFECT_AFTER_RE = re.compile(
    r"^(?:\W+\w+){0,3}?\W+(?:uten|without|lacking|lacks|mangler|har ikke|has no|does not have|"
    r"med feil|with (?:a |the )?wrong|med (?:et )?annet|with (?:a |an )?(?:other|different)|"
    r"som (?:kun|bare) har|(?:that|which) only has|for (?:a )?different|issued for a different|"
    r"som ikke har|that does not)(?!\w)",
    re.IGNORECASE,
)

# What an expectation without a status claims: that the request succeeded, or that it was
# refused. Both, or neither, is no claim.
_SUCCESS_RE = re.compile(
    r"(?<!\w)(?:registrert|registreres|lagret|lagres|opprettet|opprettes|godtas|godtatt|"
    r"godkjent|akseptert|mottatt|mottas|lykkes|vellykket|ok|stored|created|accepted|"
    r"succeed(?:s|ed)?|success(?:ful)?|issued|utstedt|listed|vises|finnes|står|contains?|"
    r"carries|inneholder|har|has|lists|er med|included|inkludert|visible|synlig\w*|avsluttet|ended|removed|slettet|fjernet|"
    r"found|funnet|starter|starts?|gjelder|updated|oppdatert|confirmed|bekreftet)(?!\w)",
    re.IGNORECASE,
)
_FAILURE_RE = re.compile(
    r"(?<!\w)(?:avvis\w*|avvist|nekt\w*|refus\w*|reject\w*|denied|deny|forbidden|"
    r"unauthori[sz]ed|unauthenticated|feil|feilmelding|error|fails?|failure|ikke tillatt|"
    r"not allowed|ikke tilgang|no access|too large|for stor|invalid_\w+)(?!\w)",
    re.IGNORECASE,
)

_NOT_AFTER_RE = re.compile(r"\s+(?:ikke|not)(?!\w)", re.IGNORECASE)

# A keyword right after one of these words is negated: "uten startdato" is not about dates.
_NEGATIONS = frozenset({"uten", "without", "ingen", "ikke", "no", "not", "mangler", "missing",
                        "manglende", "unntatt"})
# … and right before one of these: "dates omitted", "dato utelatt".
_NEGATIONS_AFTER = frozenset({"omitted", "utelatt", "utelates", "mangler", "missing", "absent",
                              "fjernet", "removed", "dropped"})
# fmt: on

# Weights. An agreeing error code is the strongest evidence, then the operation the row's
# title names, then the status, the kind of identifier, required keyword groups, hints.
_W_CODE = 8
_W_OPERATION_TITLE = 5
_W_OPERATION_TEXT = 2
_W_STATUS = 4
_W_SUBJECT = 3
_W_KEYWORD_GROUP = 2
_W_HINT = 2
_MAX_HINTS = 3  # a long list of synonyms must not outweigh an operation or a status
# Binding by text needs this score and this lead over the next step (see docs/binding.md).
BIND_MIN_SCORE = 5
BIND_MIN_SCORE_MANUAL = _W_KEYWORD_GROUP
BIND_MARGIN = 3


def _compile(words: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + ")", re.IGNORECASE)


# "201 Created" names a status, not an operation: a reason phrase right after a status
# number is dropped before reading. Elsewhere the words count ("found", "accepted").
_REASON_PHRASES_RE = re.compile(
    r"(?<=\d{3})(\W{0,3})(?:"
    + "|".join(re.escape(p) for p in sorted({s.phrase for s in HTTPStatus}, key=len, reverse=True))
    + r"|payload too large|content too large)(?!\w)",
    re.IGNORECASE,
)
_OPERATION_RES = {op: _compile(words) for op, words in _OPERATION_WORDS.items()}
_SUBJECT_RES = {kind: _compile(words) for kind, words in _SUBJECT_WORDS.items()}
_GENERIC_SUBJECT_RES = {kind: _compile(words) for kind, words in _GENERIC_SUBJECT_WORDS.items()}

_OPERATION_NB = {
    "token": "token",
    "add": "registrering",
    "end": "avslutning",
    "lookup": "oppslag",
    "history": "historikk",
    "batch": "batch/fil",
    "manual": "manuell",
}
_SUBJECT_NB = {"fodselsnummer": "fødselsnummer", "d-nummer": "D-nummer", "orgnr": "orgnr"}


def normalise_case_id(case_id: str) -> str:
    """Compare ids loosely: "kfr-5", "KFR_05" and "KFR-05" are one id."""
    text = re.sub(r"[\s_]+", "-", case_id.strip().upper())
    return re.sub(r"\d+", lambda m: str(int(m.group())), text)


def _is_token_defect(text: str, match: re.Match[str]) -> bool:
    before = text[max(0, match.start() - 40) : match.start()]
    after = text[match.end() : match.end() + 60]
    return bool(_TOKEN_DEFECT_BEFORE_RE.search(before) or _TOKEN_DEFECT_AFTER_RE.search(after))


def _operations(text: str) -> list[str]:
    """Operations named in ``text``, in order of first mention."""
    found = []
    for op, pattern in _OPERATION_RES.items():
        for match in pattern.finditer(text):
            if op == "token" and _is_token_defect(text, match):
                continue
            found.append((match.start(), op))
            break
    return [op for _, op in sorted(found)]


def _negated_before(text: str, start: int) -> bool:
    clause = re.split(r"[.;:,!?()\n]", text[:start])[-1]
    return bool(_NEGATIONS.intersection(clause.lower().split()[-3:]))


def _first_subject(text: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    """The kind of identifier mentioned first, not counting denied mentions ("uten norsk
    fødselsnummer, med D-nummer" is about a D-nummer)."""
    found = [
        (m.start(), kind)
        for kind, p in patterns.items()
        for m in p.finditer(text)
        if not _negated_before(text, m.start())
    ]
    return min(found)[1] if found else None


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w#-]+", text.lower()))


def _claim(expected: Expectation) -> str | None:
    """ "success" | "failure" | None: what an expectation claims when it names no status."""
    if expected.error_code:
        return "failure"
    text = _REASON_PHRASES_RE.sub(r"\1", expected.text)
    # A denied success ("kundeforholdet finnes ikke", "is not stored") claims nothing.
    success = any(
        not _negated_before(text, m.start()) and not _NOT_AFTER_RE.match(text, m.end())
        for m in _SUCCESS_RE.finditer(text)
    )
    failure = bool(_FAILURE_RE.search(text))
    if success != failure:
        return "success" if success else "failure"
    return None


def text_features(case: CaseSpec) -> dict[str, Any]:
    """What a row talks about, as read from its text.

    ``operation`` is the first operation its title names (or its text, when the title
    names none); ``operations`` all operations its title, category, description and
    expectation name; ``subject`` the first kind of identifier it names
    (fodselsnummer | d-nummer | orgnr | None); ``status``/``error_code`` come from the
    expectation; ``claim`` is "success"/"failure"/None for an expectation without a
    status; ``agency`` whether the row is about a public agency's operation; ``words``
    are all words of the row, lower-cased.
    """
    expected_text = _REASON_PHRASES_RE.sub(r"\1", case.expected.text)
    body_text = f"{case.category}\n{case.description}\n{case.other_text}\n{expected_text}"
    title_ops = _operations(case.title)
    all_ops = list(dict.fromkeys(title_ops + _operations(body_text)))
    subject_text = f"{case.title}\n{case.description}\n{case.test_data}\n{case.other_text}"
    subject = _first_subject(subject_text, _SUBJECT_RES) or _first_subject(
        subject_text, _GENERIC_SUBJECT_RES
    )
    full_text = "\n".join(
        (
            case.title,
            case.category,
            case.description,
            case.preconditions,
            case.test_data,
            case.other_text,
            case.expected.text,
        )
    )
    about_text = "\n".join(
        (case.title, case.description, case.test_data, case.other_text, case.expected.text)
    )
    return {
        "operation": title_ops[0] if title_ops else (all_ops[0] if all_ops else None),
        "title_operations": title_ops,
        "operations": all_ops,
        "subject": subject,
        "status": case.expected.status,
        "error_code": case.expected.error_code,
        "claim": _claim(case.expected) if case.expected.status is None else None,
        "agency": bool(_AGENCY_RE.search(about_text)),
        "manual": case.manual,
        "words": _words(full_text),
        "text": full_text.lower(),
        # Preconditions describe other requests ("gyldig token med scope …"): hints are
        # looked for only in what the row itself is about.
        "about": f"{about_text}\n{case.category}".lower(),
    }


@functools.lru_cache(maxsize=1024)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, keyword.split())), re.IGNORECASE)


_CLAUSE_END_RE = re.compile(r"[.;:,!?()\n]")
# Negation is looked for this far around a keyword: a few words, within its clause.
_NEGATION_WINDOW = 60


@functools.lru_cache(maxsize=16384)
def _keyword_present(keyword: str, text: str, *, negatable: bool = True) -> bool:
    """``keyword`` starts a word somewhere in ``text`` and is not negated right before it.
    A keyword that is itself a negation ("uten", "without") always counts, and so does
    any keyword when ``negatable`` is False: a manual routine is stated as a rule ("vi
    sender ikke opphør før …"), where a denial still names what the row is about.
    ``text`` is lower-case; cached, as every step asks about the same row."""
    first = keyword.split()[0]
    if first not in text:  # cheap test before the regex: most keywords are absent
        return False
    for match in _keyword_pattern(keyword).finditer(text):
        if first in _NEGATIONS or not negatable:
            return True
        before = text[max(0, match.start() - _NEGATION_WINDOW) : match.start()]
        clause = _CLAUSE_END_RE.split(before)[-1]
        after = _CLAUSE_END_RE.split(text[match.end() : match.end() + _NEGATION_WINDOW])[0]
        # The rest of the matched word ("dates" for "date") is not a word after it.
        following = after.lower().split()[1 if after[:1].isalnum() else 0 :][:1]
        if not _NEGATIONS.intersection(
            clause.lower().split()[-2:]
        ) and not _NEGATIONS_AFTER.intersection(following):
            return True
    return False


def _is_manual_step(step: Step) -> bool:
    return step.manual or step.signature.operation == "manual"


def _contradictions(signature: StepSignature, step_manual: bool, f: dict[str, Any]) -> list[str]:
    """Why this step cannot run this row, in Norwegian; empty when nothing contradicts."""
    reasons = []
    manual = signature.operation == "manual" or step_manual
    if manual != f["manual"]:
        reasons.append("manuelt steg, automatisk rad" if manual else "automatisk steg, manuell rad")
    if signature.status is not None and f["status"] is not None and signature.status != f["status"]:
        reasons.append(f"status {f['status']} ≠ stegets {signature.status}")
    codes_agree = signature.error_code is not None and signature.error_code == f["error_code"]
    if signature.error_code and f["error_code"] and not codes_agree:
        reasons.append(f"feilkode {f['error_code']} ≠ stegets {signature.error_code}")
    success_step = signature.status is not None and signature.status < 400
    if f["error_code"] and not signature.error_code and success_step:
        reasons.append(f"raden venter feilkode {f['error_code']}, steget et vellykket svar")
    if f["claim"] == "success" and signature.status is not None and not success_step:
        reasons.append("raden venter et vellykket svar, steget en avvisning")
    if f["claim"] == "failure" and success_step and not manual:
        reasons.append("raden venter en avvisning, steget et vellykket svar")
    if signature.subject and f["subject"] and signature.subject != f["subject"]:
        reasons.append(
            f"identifikator {_SUBJECT_NB[f['subject']]} ≠ stegets {_SUBJECT_NB[signature.subject]}"
        )
    for group in signature.keywords:
        if not any(_keyword_present(word, f["text"], negatable=not manual) for word in group):
            reasons.append("mangler ord som «" + "», «".join(group[:3]) + "»")
            break
    if (
        not manual
        and not codes_agree
        and f["operations"]
        and signature.operation not in f["operations"]
    ):
        named = ", ".join(_OPERATION_NB.get(op, op) for op in f["operations"])
        reasons.append(
            f"raden handler om {named}, steget om {_OPERATION_NB.get(signature.operation, signature.operation)}"
        )
    if f["agency"] and not manual:
        reasons.append("raden gjelder en etats oppslag, ikke bankens")
    return reasons


@dataclass(frozen=True)
class Candidate:
    """One step's fit for one row: ``score`` points, the ``reasons`` for them (Norwegian),
    what ``contradicts`` it, and whether there is positive ``evidence`` at all."""

    step: str
    score: int
    reasons: tuple[str, ...]
    contradicts: tuple[str, ...] = ()
    evidence: bool = False

    @property
    def viable(self) -> bool:
        return self.evidence and not self.contradicts


def _score(step: Step, f: dict[str, Any]) -> Candidate:
    signature = step.signature
    score = 0
    evidence = False
    reasons: list[str] = []
    if signature.error_code and signature.error_code == f["error_code"]:
        score += _W_CODE
        evidence = True
        reasons.append(f"feilkode {signature.error_code}")
    op_nb = _OPERATION_NB.get(signature.operation, signature.operation)
    if signature.operation == "manual":
        evidence = evidence or bool(signature.keywords)
    elif signature.operation in f["title_operations"]:
        score += _W_OPERATION_TITLE
        evidence = True
        reasons.append(f"operasjon {op_nb} (tittel)")
    elif signature.operation in f["operations"]:
        score += _W_OPERATION_TEXT
        evidence = True
        reasons.append(f"operasjon {op_nb} (tekst)")
    if signature.status is not None and signature.status == f["status"]:
        score += _W_STATUS
        reasons.append(f"status {signature.status}")
    if signature.subject and signature.subject == f["subject"]:
        # Only steps about one kind of identifier declare it: naming that kind is
        # evidence, as an operation word is ("customer identified by birth number").
        score += _W_SUBJECT
        evidence = True
        reasons.append(f"identifikator {_SUBJECT_NB[signature.subject]}")
    negatable = signature.operation != "manual" and not step.manual
    found = [
        next((w for w in g if _keyword_present(w, f["text"], negatable=negatable)), None)
        for g in signature.keywords
    ]
    words = [w for w in found if w is not None]
    if words:
        score += _W_KEYWORD_GROUP * len(words)
        reasons.append("nøkkelord " + ", ".join(f"«{w}»" for w in words))
    hints = [h for h in signature.hints if _keyword_present(h, f["about"], negatable=negatable)]
    if hints:
        score += _W_HINT * min(len(hints), _MAX_HINTS)
        evidence = True
        reasons.append("stikkord " + ", ".join(f"«{h}»" for h in hints[:_MAX_HINTS]))
    contradicts = _contradictions(signature, step.manual, f)
    return Candidate(step.name, score, tuple(reasons), tuple(contradicts), evidence)


def rank_steps(case: CaseSpec, registry: StepRegistry) -> list[Candidate]:
    """Every step's fit for ``case``, best first: viable steps (evidence, no
    contradiction) by score, then the rest by score."""
    features = text_features(case)
    candidates = [_score(step, features) for step in registry]
    return sorted(candidates, key=lambda c: (not c.viable, -c.score, c.step))


def _confident(ranked: list[Candidate], registry: StepRegistry) -> Candidate | None:
    viable = [c for c in ranked if c.viable]
    if not viable:
        return None
    step = registry.get(viable[0].step)
    # A manual step competes only with the few other manual steps, and its required
    # keyword groups are its evidence: one group is enough.
    floor = BIND_MIN_SCORE_MANUAL if step and _is_manual_step(step) else BIND_MIN_SCORE
    if viable[0].score < floor:
        return None
    if len(viable) > 1 and viable[0].score - viable[1].score < BIND_MARGIN:
        return None  # too close to call: better "not automated" than the wrong step
    return viable[0]


def _bind_by_id(case: CaseSpec, ranked: list[Candidate], registry: StepRegistry) -> Step | None:
    wanted = normalise_case_id(case.case_id)
    by_name = {c.step: c for c in ranked}
    best_viable = next((c for c in ranked if c.viable), None)
    for step in registry:
        if not any(normalise_case_id(i) == wanted for i in step.case_ids):
            continue
        candidate = by_name[step.name]
        if candidate.contradicts:
            continue
        # Another sheet may number its rows like ours and mean other tests: the id gives
        # way when the row's own words point at another step as clearly as a text
        # binding would need.
        overruled = (
            best_viable is not None
            and best_viable.step != step.name
            and best_viable.score - candidate.score >= BIND_MARGIN
        )
        if overruled:
            continue
        return step
    return None


def _lookup_override(case: CaseSpec, overrides: dict[str, str]) -> str | None:
    if case.case_id in overrides:
        return overrides[case.case_id]
    wanted = normalise_case_id(case.case_id)
    for key, value in overrides.items():
        if normalise_case_id(key) == wanted:
            return value
    return None


def _check_overrides(
    cases: list[CaseSpec], registry: StepRegistry, overrides: dict[str, str]
) -> None:
    known_ids = {normalise_case_id(c.case_id) for c in cases}
    unknown_ids = [k for k in overrides if normalise_case_id(k) not in known_ids]
    if unknown_ids:
        raise UsageError(
            "Bindingsfilen nevner testtilfeller som ikke finnes i arket: "
            + ", ".join(sorted(unknown_ids))
            + ".",
            hint="Kontroller ID-ene mot arket med «kfr-conformance sheet ARK».",
        )
    unknown_steps = sorted(
        {v for v in overrides.values() if v not in NOT_AUTOMATED and v not in registry}
    )
    if unknown_steps:
        raise UsageError(
            "Bindingsfilen nevner steg som ikke finnes: " + ", ".join(unknown_steps) + ".",
            hint="Kjente steg: "
            + ", ".join(step.name for step in registry)
            + ". Bruk «-» for «ikke automatisert».",
        )


def bind_cases(
    cases: list[CaseSpec], registry: StepRegistry, overrides: dict[str, str] | None = None
) -> list[CaseSpec]:
    """Copies of ``cases`` with ``binding``, ``binding_source`` and ``manual`` set (and
    ``expected`` completed from the step for a bound row that only states a claim).

    Raises :class:`UsageError` when ``overrides`` names a case id the sheet does not have
    or a step the registry does not have.
    """
    overrides = overrides or {}
    _check_overrides(cases, registry, overrides)
    bound: list[CaseSpec] = []
    for case in cases:
        name = _lookup_override(case, overrides)
        if name is not None:
            step = None if name in NOT_AUTOMATED else registry.get(name)
            bound.append(_with_binding(case, step, "file"))
            continue
        if _unjudgeable(case):
            # Nothing in the sheet to judge the answer by: running the step would only
            # send requests for a row that ends "not automated" anyway.
            bound.append(_with_binding(case, None, None))
            continue
        ranked = rank_steps(case, registry)
        step = _bind_by_id(case, ranked, registry)
        if step is not None:
            bound.append(_with_binding(case, step, "id"))
            continue
        best = _confident(ranked, registry)
        step = registry.get(best.step) if best else None
        bound.append(_with_binding(case, step, "text" if step else None))
    return bound


def _unjudgeable(case: CaseSpec) -> bool:
    """An automatic row whose "expected result" cell is empty."""
    return not case.manual and not case.expected.text.strip()


def _with_binding(case: CaseSpec, step: Step | None, source: str | None) -> CaseSpec:
    manual = case.manual or bool(step and _is_manual_step(step))
    expected, expectation_source = case.expected, case.expectation_source
    if step is not None and not manual:
        implied = _implied_expectation(case, step)
        if implied is not None:
            expected, expectation_source = implied, "step"
    return replace(
        case,
        binding=step.name if step else None,
        binding_source=source,
        manual=manual,
        expected=expected,
        expectation_source=expectation_source,
    )


def _implied_expectation(case: CaseSpec, step: Step) -> Expectation | None:
    """The step's designed answer for a row that only claims success ("kunden er
    registrert"), when the step is a success step; otherwise None (the sheet's own
    expectation stands)."""
    expected = case.expected
    signature = step.signature
    if expected.status is not None or expected.error_code or signature.status is None:
        return None
    if signature.status >= 400 or _claim(expected) != "success":
        return None
    return Expectation(text=expected.text, status=signature.status, error_code=None)


def implied_expectation_lines(cases: Iterable[CaseSpec]) -> list[str]:
    """Norwegian lines for the start of a run: rows checked against a status the sheet
    does not state (see :func:`_implied_expectation`), so nobody is surprised by it."""
    return [
        f"ark: rad {c.row} ({c.case_id}): arket sier «{c.expected.text}»; kontrolleres som "
        f"HTTP {c.expected.status}, det vanlige svaret til steget «{c.binding}»."
        for c in cases
        if c.expectation_source == "step"
    ]


def load_bindings_file(path: Path) -> dict[str, str]:
    """``{"bindings": {"<case id>": "<step name>"}}`` from a TOML or JSON file.

    ``"-"`` or ``""`` as step name marks a row as not automated on purpose.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"Finner ikke bindingsfilen «{path}».") from exc
    except OSError as exc:
        raise UsageError(f"Kan ikke lese bindingsfilen «{path}»: {exc.strerror or exc}.") from exc
    return parse_bindings(path, raw)


def parse_bindings(path: Path, raw: bytes) -> dict[str, str]:
    """:func:`load_bindings_file` for bytes already read (the copy inside a pack)."""
    path = Path(path)
    data = _parse_bindings(path, raw)
    bindings = data.get("bindings") if isinstance(data, dict) else None
    if not isinstance(bindings, dict):
        raise UsageError(
            f"Bindingsfilen «{path.name}» mangler tabellen «bindings».",
            hint='Eksempel (TOML): [bindings]\n  "KFR-05" = "add_existing"\n  "KFR-21" = "-"',
        )
    result: dict[str, str] = {}
    for key, value in bindings.items():
        if value is None or value is False:
            value = "-"
        if not isinstance(value, str):
            raise UsageError(
                f"Bindingsfilen «{path.name}»: verdien for «{key}» må være et stegnavn (tekst), ikke {value!r}."
            )
        result[str(key).strip()] = value.strip()
    return result


def bindings_are_json(path: Path, raw: bytes) -> bool:
    """A ``.json`` file, or a file without ``.toml`` whose text starts as a JSON object."""
    suffix = Path(path).suffix.lower()
    return suffix == ".json" or (suffix != ".toml" and raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"))


def _parse_bindings(path: Path, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"Bindingsfilen «{path.name}» er ikke UTF-8-tekst.") from exc
    as_json = bindings_are_json(path, raw)
    try:
        return json.loads(text) if as_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if as_json else "TOML"
        raise UsageError(f"Bindingsfilen «{path.name}» er ikke gyldig {kind}: {exc}.") from exc
