"""The self-contained HTML report (``report.html``) of one run, in Norwegian bokmål.

The page is read by the bank, by Bits and by auditors years later, possibly offline and
printed, so it has no external assets: CSS and the chart (SVG) are inline and every
expandable part is a ``<details>`` element. Everything in it comes from the ``RunRecord``
and the ``evidence/<case>.json`` files of the results folder.

Evidence bodies are untrusted text (the environment under test wrote them), so the
template is rendered with autoescape on and never marks anything safe. Redaction is the
recorder's job; this module still runs a final pass over every free text it shows — from
the evidence, the messages, the comments, the names of tester and confirmer — so a token
that slipped through recording does not end up on a page that is mailed to Bits.

Everything a reader sees is Norwegian: outcomes are shown by their labels, and even the
class and data attributes carry Norwegian slugs, never the codes of ``run.json``. Printed,
the page is compact: passed rows collapse to one line each, the rest show their details
and evidence, and a failed row lists where its error code or topic is explained
(``conformance.references``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from conformance.atomic import atomic_write_bytes
from conformance.judge import PARTY_NB
from conformance.models import PERFORMED_BY_CORE, PERFORMED_BY_TOOL, CaseResult, Outcome, RunRecord
from conformance.references import references_for
from conformance.runner import safe_file_name
from conformance.template_cache import bytecode_cache

__all__ = ["OUTCOME_SLUGS", "REPORT_FILE", "render_report", "write_report"]

REPORT_FILE = "report.html"
TEMPLATE_NAME = "report.html.j2"
EVIDENCE_DIR = "evidence"

# A recorder keeps bodies up to 64 KiB as text; anything longer here is a recorder that
# misbehaved, and one huge body must not make the page unusable.
MAX_BODY_CHARS = 64 * 1024
# An evidence file larger than this is not read (a results folder is untrusted input too).
MAX_EVIDENCE_BYTES = 32 * 1024 * 1024

REDACTED = "[REDACTED]"

# Outcomes in class names and data attributes: Norwegian words, not run.json's codes, so
# no code reaches a reader even through "view source" or a copied attribute.
OUTCOME_SLUGS: dict[Outcome, str] = {
    Outcome.PASSED: "ok",
    Outcome.FAILED: "feilet",
    Outcome.ERROR: "miljofeil",
    Outcome.NOT_AUTOMATED: "ikke-automatisert",
    Outcome.PENDING: "venter",
    Outcome.NOT_RUN: "ikke-kjort",
}

# Symbols next to each Norwegian label so that status is readable without colour.
OUTCOME_SYMBOLS: dict[Outcome, str] = {
    Outcome.PASSED: "✓",
    Outcome.FAILED: "✗",
    Outcome.ERROR: "!",
    Outcome.NOT_AUTOMATED: "–",
    Outcome.PENDING: "?",
    Outcome.NOT_RUN: "○",
}

# Dark enough for white text and for bars on white (WCAG AA contrast ≥ 4.5:1).
OUTCOME_COLOURS: dict[Outcome, str] = {
    Outcome.PASSED: "#17663a",
    Outcome.FAILED: "#b3261e",
    Outcome.ERROR: "#9a4a00",
    Outcome.NOT_AUTOMATED: "#4b5563",
    Outcome.PENDING: "#1d4ed8",
    Outcome.NOT_RUN: "#6b5b95",
}

OPERATION_LABELS_NB: dict[str, str] = {
    "token": "Token fra Maskinporten",
    "add": "Registrere kundeforhold",
    "end": "Avslutte kundeforhold",
    "batch": "Registrere mange (fil)",
    "lookup": "Oppslag egen bank",
    "agency_lookup": "Oppslag kundeforhold (etat)",
    "account_lookup": "Oppslag kontoførende institusjon",
    "other": "Annet",
}

# Headers whose value is a secret whatever it looks like.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# --- redaction --------------------------------------------------------------------------

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S)
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=-]+")
_SECRET_FORM_FIELD = re.compile(
    r"(?i)\b(assertion|access_token|refresh_token|id_token|client_secret|password)="
    r"(?!\[REDACTED\])[^&\s\"']+"
)
_SECRET_JSON_FIELD = re.compile(
    r'(?i)("(?:assertion|access_token|refresh_token|id_token|client_secret|password)"'
    r'\s*:\s*")(?!\[REDACTED\])(?:[^"\\]|\\.)*(")'
)


def _local_redact(text: str) -> str:
    """JWTs, PEM blocks, bearer tokens and secret form/JSON fields → ``[REDACTED]``."""
    text = _PEM.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _SECRET_FORM_FIELD.sub(rf"\1={REDACTED}", text)
    return _SECRET_JSON_FIELD.sub(rf"\1{REDACTED}\2", text)


def _redactor() -> Callable[[str], str]:
    """The recorder's ``redact_text`` when ``conformance.evidence`` provides one, followed
    by the local pass either way (both only ever remove text)."""
    external: Callable[[str], str] | None = None
    try:  # imported lazily: the evidence module is optional for the report
        from conformance import evidence

        candidate = getattr(evidence, "redact_text", None)
        external = candidate if callable(candidate) else None
    except Exception:  # a broken or missing module must not cost the report
        external = None

    def redact(text: str) -> str:
        if external is not None:
            with contextlib.suppress(Exception):  # the local pass below still runs
                text = str(external(text))
        return _local_redact(text)

    return redact


# --- time -------------------------------------------------------------------------------


def _oslo() -> ZoneInfo | None:
    try:
        return ZoneInfo("Europe/Oslo")
    except ZoneInfoNotFoundError:  # no tz database: the report shows UTC only
        return None


_OSLO = _oslo()


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _time_view(value: str | None) -> dict[str, str] | None:
    """``{"utc": "2026-11-23 09:00:00 UTC", "oslo": "2026-11-23 10:00:00 CET", "iso": …}``."""
    parsed = _parse_time(value)
    if parsed is None:
        return None if not value else {"utc": value, "oslo": "", "iso": value}
    utc = parsed.astimezone(dt.UTC)
    view = {"utc": f"{utc:%Y-%m-%d %H:%M:%S} UTC", "oslo": "", "iso": utc.isoformat()}
    if _OSLO is not None:
        local = parsed.astimezone(_OSLO)
        view["oslo"] = f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
    return view


def _number_nb(value: float, decimals: int = 1) -> str:
    """Norwegian number format: decimal comma, thin space between thousands."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",")


def _duration_nb(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    if seconds < 1:
        return f"{_number_nb(seconds * 1000, 0)} ms"
    if seconds < 60:
        return f"{_number_nb(seconds)} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {_number_nb(rest, 0)} s"


# --- evidence ---------------------------------------------------------------------------


def _evidence_rel(case: CaseResult) -> str:
    return case.evidence_file or f"{EVIDENCE_DIR}/{safe_file_name(case.case_id)}.json"


def _load_evidence(results_dir: Path, case: CaseResult) -> tuple[list[Any], str | None, str]:
    """(exchanges, problem in Norwegian or None, relative file name). Never raises."""
    rel = _evidence_rel(case)
    root = results_dir.resolve()
    path = (results_dir / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(root):
        return [], f"Bevisfilen «{rel}» ligger utenfor resultatmappen og er ikke lest.", rel
    if not path.is_file():
        if case.evidence_file:
            return [], f"Bevisfilen «{rel}» mangler.", rel
        return [], None, rel
    try:
        if path.stat().st_size > MAX_EVIDENCE_BYTES:
            return [], f"Bevisfilen «{rel}» er for stor til å vises her.", rel
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [], f"Bevisfilen «{rel}» kan ikke leses ({type(exc).__name__}).", rel
    exchanges = data.get("exchanges") if isinstance(data, dict) else None
    if not isinstance(exchanges, list):
        return [], f'Bevisfilen «{rel}» har ikke formatet {{"exchanges": [...]}}.', rel
    return exchanges, None, rel


def _is_body_summary(body: Any) -> bool:
    return isinstance(body, dict) and "size" in body and "sha256" in body


def _truncate(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_BODY_CHARS:
        return text, False
    return text[:MAX_BODY_CHARS], True


def _body_view(body: Any, redact: Callable[[str], str]) -> dict[str, Any]:
    """How one recorded body is shown: none, JSON (pretty-printed), text, or a summary of a
    large body (size + SHA-256 + first lines)."""
    if body is None or body == "":
        return {"kind": "none"}
    if _is_body_summary(body):
        size = body.get("size")
        return {
            "kind": "summary",
            "size": _number_nb(size, 0) if isinstance(size, int | float) else str(size),
            "sha256": str(body.get("sha256")),
            "head": redact(str(body.get("head") or "")),
        }
    kind, text = "text", body if isinstance(body, str) else None
    if text is None:  # already parsed JSON (dict, list, number)
        kind, text = "json", json.dumps(body, ensure_ascii=False, indent=2)
    elif text.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):  # not JSON after all: shown as the text it is
            kind, text = "json", json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    text, truncated = _truncate(redact(text))
    return {"kind": kind, "text": text, "truncated": truncated}


def _headers_view(headers: Any, redact: Callable[[str], str]) -> list[tuple[str, str]]:
    if isinstance(headers, dict):
        pairs = list(headers.items())
    elif isinstance(headers, list):
        pairs = [tuple(p) for p in headers if isinstance(p, list | tuple) and len(p) == 2]
    else:
        return []
    shown = []
    for name, value in pairs:
        name = str(name)
        if name.lower() in _SECRET_HEADERS:
            shown.append((name, REDACTED))
        else:
            shown.append((name, redact(str(value))))
    return shown


def _status_text(status: Any) -> str:
    if not isinstance(status, int):
        return "" if status is None else str(status)
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _exchange_view(exchange: Any, redact: Callable[[str], str]) -> dict[str, Any] | None:
    if not isinstance(exchange, dict):
        return None
    request = exchange.get("request") if isinstance(exchange.get("request"), dict) else {}
    response = exchange.get("response") if isinstance(exchange.get("response"), dict) else None
    operation = str(exchange.get("operation") or "other")
    elapsed = exchange.get("elapsed_ms")
    error = exchange.get("error")
    return {
        "seq": exchange.get("seq"),
        "operation": operation,
        "operation_nb": OPERATION_LABELS_NB.get(operation, operation),
        "correlation_id": redact(str(exchange.get("correlation_id") or "")),
        "started": _time_view(exchange.get("started_at")),
        "elapsed": f"{_number_nb(elapsed)} ms" if isinstance(elapsed, int | float) else "",
        "method": str(request.get("method") or ""),
        "url": redact(str(request.get("url") or "")),
        "request_headers": _headers_view(request.get("headers"), redact),
        "request_body": _body_view(request.get("body"), redact),
        "response": None
        if response is None
        else {
            "status": _status_text(response.get("status")),
            "ok": isinstance(response.get("status"), int) and response["status"] < 400,
            "headers": _headers_view(response.get("headers"), redact),
            "body": _body_view(response.get("body"), redact),
        },
        "error": redact(str(error)) if error else "",
    }


# --- the page ---------------------------------------------------------------------------


def _actual_short(case: CaseResult) -> str:
    if case.actual:
        return case.actual
    parts = []
    if case.actual_status is not None:
        parts.append(f"HTTP {case.actual_status}")
    if case.actual_error_code:
        parts.append(case.actual_error_code)
    return " / ".join(parts)


def _case_view(
    index: int, case: CaseResult, results_dir: Path, redact: Callable[[str], str]
) -> dict[str, Any]:
    exchanges, problem, rel = _load_evidence(results_dir, case)
    views = [v for v in (_exchange_view(e, redact) for e in exchanges) if v is not None]
    if len(views) < len(exchanges):
        skipped = len(exchanges) - len(views)
        problem = (
            problem + " " if problem else ""
        ) + f"{skipped} utveksling(er) i feil format er utelatt."
    checks = [
        {
            "description": redact(str(c.get("description", ""))),
            "ok": bool(c.get("ok")),
            "detail": redact(str(c.get("detail") or "")),
        }
        for c in case.checks
        if isinstance(c, dict)
    ]
    return {
        "anchor": f"sak-{index}-{safe_file_name(case.case_id)}",
        "case_id": redact(case.case_id),
        "title": redact(case.title),
        "expected_short": redact(case.expected.describe()),
        "expected_text": redact(case.expected.text),
        "expected_status": case.expected.status,
        "expected_error_code": redact(case.expected.error_code or ""),
        "actual_short": redact(_actual_short(case)),
        "actual_status": case.actual_status,
        "actual_error_code": redact(case.actual_error_code or ""),
        "outcome": OUTCOME_SLUGS[case.outcome],
        "passed": case.outcome is Outcome.PASSED,
        "label": case.outcome.label_nb,
        "symbol": OUTCOME_SYMBOLS[case.outcome],
        # Failures and errors are what a reader looks for: open them on screen.
        "open": case.outcome in (Outcome.FAILED, Outcome.ERROR),
        "message": redact(case.message),
        "correlation_ids": [redact(c) for c in dict.fromkeys(case.correlation_ids)],
        "checks": checks,
        "started": _time_view(case.started_at),
        "duration": _duration_nb(case.duration_s) if case.duration_s else "",
        "manual": case.manual,
        "basis": _basis_nb(case),
        "answered_by": PARTY_NB.get(case.answered_by or "", ""),
        "performed_by": _performed_by_nb(case),
        "identities": [redact(i) for i in case.identities],
        "attempts": case.attempts or 1,
        "confirmed_by": redact(case.confirmed_by or ""),
        "confirmed_at": _time_view(getattr(case, "confirmed_at", None)),
        "comment": redact(case.comment),
        "row": case.row,
        "binding": redact(case.binding or ""),
        "references": [ref.to_dict() for ref in references_for(case)],
        "evidence_file": rel if exchanges or case.evidence_file else "",
        "evidence_problem": problem,
        "exchanges": views,
    }


def _performed_by_nb(case: CaseResult) -> str:
    """Who carried the row out: the bank's core system (through the recording gateway) or
    the tool's own client."""
    if case.performed_by == PERFORMED_BY_CORE:
        return "kjernesystemet (bankens egen integrasjon, gjennom opptaksgatewayen)"
    if case.performed_by == PERFORMED_BY_TOOL:
        return "verktøyet (kfr-conformance sin egen klient)"
    return ""


def _robustness_view(results_dir: Path, redact: Callable[[str], str]) -> dict[str, Any] | None:
    """The robustness rows (``robustness.json``): shown in their own section, never counted
    with the sheet's rows."""
    from conformance.coresystem.robustness import load_robustness

    data = load_robustness(results_dir)
    if data is None:
        return None
    rows = []
    for row in data["rows"]:
        if not isinstance(row, dict):
            continue
        try:
            outcome = Outcome(str(row.get("outcome")))
        except ValueError:
            continue
        rows.append({
            "id": redact(str(row.get("id", ""))), "title": redact(str(row.get("title", ""))),
            "outcome": OUTCOME_SLUGS[outcome], "label": outcome.label_nb, "symbol": OUTCOME_SYMBOLS[outcome],
            "message": redact(str(row.get("message") or "")),
            "evidence_file": redact(str(row.get("evidence_file") or "")),
            "verdicts": [
                {"rule": redact(str(v.get("rule", ""))), "ok": bool(v.get("ok")), "reason": redact(str(v.get("reason") or ""))}
                for v in row.get("verdicts") or [] if isinstance(v, dict)
            ],
        })
    return {"note": redact(str(data.get("note") or "")), "rows": rows}


def _basis_nb(case: CaseResult) -> str:
    """What a verdict rests on: recorded exchanges, or a person's word (counted apart)."""
    if case.manual:
        return "bekreftet av en person (ikke bevist med utvekslinger)"
    if case.outcome in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR):
        return "bevis: utvekslingene i bevisfilen, avgjort på nytt av verify"
    return "–"


def _summary(record: RunRecord) -> dict[str, Any]:
    counts = record.counts()
    total = counts["total"]
    rows = []
    for outcome in Outcome:
        n = counts[str(outcome)]
        rows.append(
            {
                "outcome": OUTCOME_SLUGS[outcome],
                "label": outcome.label_nb,
                "symbol": OUTCOME_SYMBOLS[outcome],
                "colour": OUTCOME_COLOURS[outcome],
                "count": n,
                "percent": _number_nb(100 * n / total, 0) if total else "0",
                "fraction": n / total if total else 0.0,
            }
        )
    passed = counts[str(Outcome.PASSED)]
    return {
        "rows": rows,
        "total": total,
        "passed": passed,
        "all_passed": total > 0 and passed == total,
        "not_passed": [
            r for r in rows if r["outcome"] != OUTCOME_SLUGS[Outcome.PASSED] and r["count"]
        ],
    }


def _fields(
    data: dict[str, Any] | None, *keys: str, redact: Callable[[str], str] = str
) -> dict[str, str]:
    """The named fields of a run.json section as (redacted) text, "" when missing: an older
    or hand-edited run.json still renders."""
    data = data if isinstance(data, dict) else {}
    return {key: "" if data.get(key) is None else redact(str(data[key])) for key in keys}


def _context(record: RunRecord, results_dir: Path) -> dict[str, Any]:
    redact = _redactor()
    started, finished = _parse_time(record.started_at), _parse_time(record.finished_at)
    duration = (finished - started).total_seconds() if started and finished else None
    return {
        "run_id": redact(record.run_id),
        "bank": _fields(record.bank, "name", "orgnr", redact=redact),
        "environment": _fields(
            record.environment, "kfr_base_url", "maskinporten_issuer", redact=redact
        ),
        "env_name": redact(record.environment.get("name") or "sandbox"),
        "is_sandbox": record.is_sandbox,
        "sheet": _fields(
            record.sheet, "file_name", "version", "sha256", "source", redact=redact
        ),
        "basis": {
            "evidence": sum(
                1 for c in record.cases if c.outcome is Outcome.PASSED and not c.manual
            ),
            "attested": sum(1 for c in record.cases if c.attested),
        },
        "sessions": record.sessions,
        "runner": _fields(record.runner, "version", "python", "platform", redact=redact),
        "attestation": _fields(record.attestation, "tester", "role", redact=redact),
        "started": _time_view(record.started_at),
        "finished": _time_view(record.finished_at),
        "duration": _duration_nb(duration),
        "summary": _summary(record),
        "cases": [_case_view(i, c, results_dir, redact) for i, c in enumerate(record.cases, 1)],
        "robustness": _robustness_view(results_dir, redact),
        "by_core_system": sum(1 for c in record.cases if c.performed_by == PERFORMED_BY_CORE),
        "has_oslo": _OSLO is not None,
    }


_OPTIONS: dict[str, Any] = {
    "autoescape": True,  # always: evidence bodies are untrusted text
    "undefined": jinja2.StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": True,
}


@cache
def _environment() -> jinja2.Environment:
    # The compiled templates are kept under the tool's home: compiling them took
    # 0.15-0.2 s of every run (no cache when the home cannot hold one safely).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conformance", "templates"),
        bytecode_cache=bytecode_cache("report", _OPTIONS),
        **_OPTIONS,
    )


def render_report(record: RunRecord, results_dir: Path) -> str:
    """The report page for ``record``, with the evidence found under ``results_dir``."""
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(_context(record, Path(results_dir)))


def write_report(record: RunRecord, results_dir: Path, out: Path | None = None) -> Path:
    """Render and write the report atomically (default ``results_dir / "report.html"``):
    a reader, or the pack step, never sees half a page."""
    results_dir = Path(results_dir)
    target = Path(out) if out is not None else results_dir / REPORT_FILE
    atomic_write_bytes(target, render_report(record, results_dir).encode("utf-8"))
    return target
