"""Bind sheet rows to steps: by a bindings file, by the row's id, or by what the row says.

Order, first that applies wins:

1. **file** — ``--bindings FILE`` maps case ids to step names; ``"-"`` or ``""`` means
   "not automated" on purpose.
2. **id** — a step lists the row's id in ``case_ids`` *and* its signature does not
   contradict the row. An official sheet that reuses "KFR-05" for another test is then
   not run with the wrong step; it falls through to 3.
3. **text** — features are read from the row (operation, kind of identifier, expected
   status and error code, words) and every step's :class:`StepSignature` is scored. The
   unique best step that contradicts nothing wins; a tie or no candidate leaves the row
   unbound, which the plugin reports as *not automated* (never dropped, never passed).

A step *contradicts* a row when their statuses or error codes differ, when both name a
kind of identifier and the kinds differ, when one is manual and the other is not, when
one of the step's keyword groups has no word in the row, or when the row names
operations and the step's is not among them (unless the error codes agree, which is
specific enough on its own).
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from conformance.errors import UsageError
from conformance.models import CaseSpec
from conformance.steps import Step, StepRegistry, StepSignature

__all__ = ["bind_cases", "load_bindings_file", "normalise_case_id", "parse_bindings", "text_features"]

NOT_AUTOMATED = ("-", "")

# Words that say which operation a row is about (Norwegian and English). Each entry is a
# regex matched at the start of a word.
# fmt: off
_OPERATION_WORDS: dict[str, tuple[str, ...]] = {
    "token": (r"token\w*", r"tilgangstoken\w*", r"maskinporten\w*", r"access[_ ]token\w*",
              r"jwt\w*"),
    "batch": (r"batch\w*", r"fil(?:en|er|ene)?\b", r"file[sn]?\b", r"filopplast\w*",
              r"bulk\w*", r"masse(?:innlesing|registrering|opplasting)\w*", r"multipart\w*"),
    "end": (r"avslutt\w*", r"slett\w*", r"delete[ds]?\b", r"deletion\w*", r"end(?:s|ed|ing)?\b",
            r"terminat\w*", r"fjern\w*", r"remov\w*", r"opphør\w*"),
    "history": (r"historikk\w*", r"histori\w*", r"history\b", r"periode\w*", r"period\w*"),
    "lookup": (r"oppslag\w*", r"slå\w*(?:\s+\w+)?\s+opp\b", r"søk\w*", r"look(?:s|ed|ing)?\s*up\b",
               r"lookup\w*", r"query\w*", r"spør\w*"),
    "add": (r"registr\w*", r"legg(?:e|er)?\s+(?:\w+\s+)?til\b", r"opprett\w*", r"add(?:s|ed|ing)?\b",
            r"create[sd]?\b", r"creating\b", r"register\w*"),
}

# Kinds of customer identifier. An explicit name beats a generic word ("person", "foretak").
_SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "d-nummer": (r"d-?nummer\w*", r"d-nr\b", r"dnr\b", r"d-?number\w*", r"d nummer\w*"),
    "fodselsnummer": (r"fødselsnummer\w*", r"fødselsnr\w*", r"fnr\b", r"f-nummer\w*",
                      r"personnummer\w*", r"personnr\b", r"national identity number\w*",
                      r"national id number\w*", r"personal identity number\w*",
                      r"birth number\w*"),
    "orgnr": (r"organisasjonsnummer\w*", r"organisasjonsnr\w*", r"org\.?\s?nr\b", r"orgnr\w*",
              r"organi[sz]ation(?:al)? numbers?\b", r"org(?:anisation|anization)?\s?no\b"),
}
_GENERIC_SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "fodselsnummer": (r"person(?:en|er|ene)?\b", r"privatperson\w*", r"individual\w*",
                      r"natural person\w*"),
    "orgnr": (r"foretak(?:et|s)?\b", r"bedrift\w*", r"selskap\w*", r"compan(?:y|ies)\b",
              r"enterprise\b", r"virksomhet(?:en|er)?\b", r"juridisk person\w*"),
}

# A keyword right after one of these words is negated: "uten startdato" is not about dates.
_NEGATIONS = frozenset({"uten", "without", "ingen", "ikke", "no", "not", "mangler", "missing",
                        "manglende", "unntatt"})
# fmt: on

# Weights: an agreeing error code is the strongest evidence, then the operation the row's
# title names, then the status.
_W_CODE = 8
_W_OPERATION_TITLE = 5
_W_OPERATION_TEXT = 2
_W_STATUS = 4
_W_SUBJECT = 3
_W_KEYWORD = 1


def _compile(words: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + ")", re.IGNORECASE)


# "201 Created" names a status, not an operation: reason phrases are dropped before reading.
_REASON_PHRASES_RE = re.compile(
    r"(?<!\w)(?:"
    + "|".join(re.escape(p) for p in sorted({s.phrase for s in HTTPStatus}, key=len, reverse=True))
    + r"|payload too large|content too large)(?!\w)",
    re.IGNORECASE,
)
_OPERATION_RES = {op: _compile(words) for op, words in _OPERATION_WORDS.items()}
_SUBJECT_RES = {kind: _compile(words) for kind, words in _SUBJECT_WORDS.items()}
_GENERIC_SUBJECT_RES = {kind: _compile(words) for kind, words in _GENERIC_SUBJECT_WORDS.items()}


def normalise_case_id(case_id: str) -> str:
    """Compare ids loosely: "kfr-5", "KFR_05" and "KFR-05" are one id."""
    text = re.sub(r"[\s_]+", "-", case_id.strip().upper())
    return re.sub(r"\d+", lambda m: str(int(m.group())), text)


def _operations(text: str) -> list[str]:
    """Operations named in ``text``, in order of first mention."""
    found = []
    for op, pattern in _OPERATION_RES.items():
        match = pattern.search(text)
        if match:
            found.append((match.start(), op))
    return [op for _, op in sorted(found)]


def _first_subject(text: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    found = [(m.start(), kind) for kind, p in patterns.items() if (m := p.search(text))]
    return min(found)[1] if found else None


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w#-]+", text.lower()))


def text_features(case: CaseSpec) -> dict[str, Any]:
    """What a row talks about, as read from its text.

    ``operation`` is the first operation its title names (or its text, when the title
    names none); ``operations`` all operations its title, category, description and
    expectation name; ``subject`` the first kind of identifier it names
    (fodselsnummer | d-nummer | orgnr | None); ``status``/``error_code`` come from the
    expectation; ``words`` are all words of the row, lower-cased.
    """
    title_text = f"{case.title}\n{case.category}"
    body_text = f"{case.description}\n{_REASON_PHRASES_RE.sub(' ', case.expected.text)}"
    title_ops = _operations(title_text)
    all_ops = list(dict.fromkeys(title_ops + _operations(body_text)))
    subject_text = f"{case.title}\n{case.description}\n{case.test_data}"
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
            case.expected.text,
        )
    )
    return {
        "operation": title_ops[0] if title_ops else (all_ops[0] if all_ops else None),
        "title_operations": title_ops,
        "operations": all_ops,
        "subject": subject,
        "status": case.expected.status,
        "error_code": case.expected.error_code,
        "manual": case.manual,
        "words": _words(full_text),
        "text": full_text.lower(),
    }


@functools.lru_cache(maxsize=512)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, keyword.split())), re.IGNORECASE)


def _keyword_present(keyword: str, text: str) -> bool:
    """``keyword`` starts a word somewhere in ``text`` and is not negated right before it.
    A keyword that is itself a negation ("uten", "without") always counts."""
    for match in _keyword_pattern(keyword).finditer(text):
        if keyword in _NEGATIONS:
            return True
        clause = re.split(r"[.;:,!?()\n]", text[: match.start()])[-1]
        if not _NEGATIONS.intersection(clause.lower().split()[-2:]):
            return True
    return False


def _contradictions(
    signature: StepSignature, step_manual: bool, features: dict[str, Any]
) -> list[str]:
    reasons = []
    manual = signature.operation == "manual" or step_manual
    if manual != features["manual"]:
        reasons.append("manual")
    if (
        signature.status is not None
        and features["status"] is not None
        and signature.status != features["status"]
    ):
        reasons.append("status")
    codes_agree = (
        signature.error_code is not None and signature.error_code == features["error_code"]
    )
    if signature.error_code and features["error_code"] and not codes_agree:
        reasons.append("error_code")
    if signature.subject and features["subject"] and signature.subject != features["subject"]:
        reasons.append("subject")
    for group in signature.keywords:
        if not any(_keyword_present(word, features["text"]) for word in group):
            reasons.append("keywords")
            break
    if (
        not manual
        and not codes_agree
        and features["operations"]
        and signature.operation not in features["operations"]
    ):
        reasons.append("operation")
    return reasons


def _score(signature: StepSignature, features: dict[str, Any]) -> int | None:
    """How well a non-contradicting step fits; None when nothing positive ties them."""
    score = 0
    evidence = False
    if signature.error_code and signature.error_code == features["error_code"]:
        score += _W_CODE
        evidence = True
    if signature.operation == "manual":
        evidence = evidence or bool(signature.keywords)
    elif signature.operation in features["title_operations"]:
        score += _W_OPERATION_TITLE
        evidence = True
    elif signature.operation in features["operations"]:
        score += _W_OPERATION_TEXT
        evidence = True
    if signature.status is not None and signature.status == features["status"]:
        score += _W_STATUS
    if signature.subject and signature.subject == features["subject"]:
        score += _W_SUBJECT
    score += _W_KEYWORD * len(signature.keywords)
    return score if evidence else None


def _bind_by_id(case: CaseSpec, features: dict[str, Any], registry: StepRegistry) -> Step | None:
    wanted = normalise_case_id(case.case_id)
    for step in registry:
        listed = any(normalise_case_id(i) == wanted for i in step.case_ids)
        if listed and not _contradictions(step.signature, step.manual, features):
            return step
    return None


def _bind_by_text(features: dict[str, Any], registry: StepRegistry) -> Step | None:
    scored: list[tuple[int, Step]] = []
    for step in registry:
        if _contradictions(step.signature, step.manual, features):
            continue
        score = _score(step.signature, features)
        if score is not None:
            scored.append((score, step))
    if not scored:
        return None
    scored.sort(key=lambda item: -item[0])
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        return None  # ambiguous: better "not automated" than the wrong step
    return scored[0][1]


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
    """Copies of ``cases`` with ``binding``, ``binding_source`` and ``manual`` set.

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
        features = text_features(case)
        step = _bind_by_id(case, features, registry)
        if step is not None:
            bound.append(_with_binding(case, step, "id"))
            continue
        step = _bind_by_text(features, registry)
        bound.append(_with_binding(case, step, "text" if step else None))
    return bound


def _with_binding(case: CaseSpec, step: Step | None, source: str | None) -> CaseSpec:
    manual = case.manual or bool(step and (step.manual or step.signature.operation == "manual"))
    return replace(case, binding=step.name if step else None, binding_source=source, manual=manual)


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


def _parse_bindings(path: Path, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"Bindingsfilen «{path.name}» er ikke UTF-8-tekst.") from exc
    as_json = path.suffix.lower() == ".json" or (
        path.suffix.lower() != ".toml" and text.lstrip().startswith("{")
    )
    try:
        return json.loads(text) if as_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if as_json else "TOML"
        raise UsageError(f"Bindingsfilen «{path.name}» er ikke gyldig {kind}: {exc}.") from exc
