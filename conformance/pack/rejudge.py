"""The checks that make a pack prove, not claim: everything re-derived from its evidence.

A bank holds its own signing key, so to Bits the bank is the adversary of its own pack: the
signature says who sent it, never that it is true. These checks read the sheet the pack
carries (``original/``), bind its rows with the installed suite, and run the same judges the
runner ran (``conformance.judge``) on the recorded exchanges:

    rows          every row of the sheet is in the pack once, with the sheet's expectation;
                  which rows are manual comes from the sheet, not from the pack's word
    verdicts      every automated row's outcome re-derived from its evidence; a passed row
                  without evidence, or with evidence that says otherwise, is refused
    journal       the append-only journal holds the same exchanges as the evidence files, in
                  the same order, inside the run's time span
    environment   every exchange (KFR calls and token requests) went to the declared
                  environment's hosts; tokens were issued by its Maskinporten
    attested      rows passed on a person's word are counted apart; a row whose sheet
                  expects an HTTP answer is passed only by evidence (policy may relax it)
    core_system   every passed row claimed as performed by the bank's core system has the
                  core system's requests in its evidence — recorded by the gateway, each
                  with a token issued to the bank — and the tool's lookup of KFR's state
                  afterwards (the judge's core conditions decide the verdict; this check
                  names what a claim lacks)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from conformance.errors import ConformanceError
from conformance.models import PERFORMED_BY_CORE, CaseSpec, Outcome
from conformance.pack._text import join, text
from conformance.pack.manifest import Manifest, parse_time

__all__ = ["SheetRows", "evidence_checks", "sheet_rows"]

TEST_KFR_BASE_URL = "https://preprod.api.bits.no/kar-ws/api/v1"
TEST_MASKINPORTEN_ISSUER = "https://test.maskinporten.no/"
BINDINGS_NAMES = ("original/bindings.toml", "original/bindings.json")
MAX_SHEET_BYTES = 5 * 1024 * 1024
MAX_JOURNAL_BYTES = 64 * 1024 * 1024
TIME_SLACK = dt.timedelta(seconds=2)


class _Members(Protocol):
    names: list[str]

    def read(self, name: str) -> bytes: ...

    def size(self, name: str) -> int: ...


@dataclass(frozen=True)
class _Check:
    name: str
    ok: bool
    reason: str


@dataclass
class SheetRows:
    """The sheet in the pack, read and bound with the installed suite."""

    specs: list[CaseSpec]
    registry: Any
    problem: str | None = None
    bundled: bool = False


# ---------------------------------------------------------------- the sheet


def _suite() -> Any:
    from conformance.suite import default_suite_dir, load_suite

    return load_suite(default_suite_dir())


@lru_cache(maxsize=32)
def _read_and_bind(name: str, data: bytes, bindings: bytes | None, bindings_name: str) -> tuple[list[CaseSpec], Any, bool]:
    from conformance.binding import bind_cases, parse_bindings
    from conformance.sheet import read_sheet_data

    suite = _suite()
    _, specs = read_sheet_data(PurePosixPath(name), data)
    overrides = parse_bindings(PurePosixPath(bindings_name), bindings) if bindings is not None else None
    bundled = hashlib.sha256(data).hexdigest() == hashlib.sha256(suite.sheet.read_bytes()).hexdigest()
    return bind_cases(specs, suite.registry, overrides), suite.registry, bundled


def sheet_rows(members: _Members, manifest: Manifest, lang: str,
               untrusted: frozenset[str] | set[str] = frozenset()) -> SheetRows:
    """Read ``original/<sheet>`` from the pack (its hash must be the manifest's) and bind it."""
    name = f"original/{manifest.sheet['file_name']}"
    if name not in members.names:
        return SheetRows([], None, text("rows.sheet_missing", lang, name=name))
    if members.size(name) > MAX_SHEET_BYTES:
        return SheetRows([], None, text("rows.sheet_unreadable", lang, name=name, detail="> 5 MB"))
    data = members.read(name)
    if hashlib.sha256(data).hexdigest() != manifest.sheet["sha256"].lower() or name in untrusted:
        return SheetRows([], None, text("rows.sheet_changed", lang, name=name))
    bindings_name = next((n for n in BINDINGS_NAMES if n in members.names), "")
    bindings = members.read(bindings_name) if bindings_name else None
    try:
        specs, registry, bundled = _read_and_bind(name, data, bindings, bindings_name or "-")
    except ConformanceError as exc:
        return SheetRows([], None, text("rows.sheet_unreadable", lang, name=name, detail=exc.message[:200]))
    return SheetRows(list(specs), registry, None, bundled)


# ---------------------------------------------------------------- the checks


@dataclass
class _Context:
    members: _Members
    manifest: Manifest
    evidence: Any                     # verify._Evidence
    lang: str
    rows: SheetRows
    by_case: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def evidence_checks(members: _Members, manifest: Manifest, evidence: Any, policy: Any,
                    rows: SheetRows) -> list[_Check]:
    lang = policy.lang
    ctx = _Context(members, manifest, evidence, lang, rows)
    for file, exchange in evidence.exchanges:
        owner = _case_of_file(manifest, file)
        if owner is not None:
            ctx.by_case.setdefault(owner, []).append(exchange)
    return [
        _check_rows(ctx),
        _check_verdicts(ctx),
        _check_journal(ctx),
        _check_environment(ctx, policy),
        _check_attested(ctx, policy),
        _check_core_system(ctx),
    ]


def _case_of_file(manifest: Manifest, file: str) -> str | None:
    for case in manifest.cases:
        if case.evidence_file == file:
            return case.id
    return None


def _outcome_nb(value: str, lang: str) -> str:
    try:
        outcome = Outcome(value)
    except ValueError:
        return value
    return outcome.label_nb if lang == "nb" else str(outcome)


def _check_rows(ctx: _Context) -> _Check:
    lang = ctx.lang
    if ctx.rows.problem:
        return _Check("rows", False, ctx.rows.problem)
    problems: list[str] = []
    claimed: dict[str, list[Any]] = {}
    for case in ctx.manifest.cases:
        claimed.setdefault(case.id, []).append(case)
    sheet_ids: list[str] = []
    for spec in ctx.rows.specs:
        sheet_ids.append(spec.case_id)
        entries = claimed.get(spec.case_id, [])
        if len(entries) != sum(1 for s in ctx.rows.specs if s.case_id == spec.case_id):
            problems.append(text("rows.missing" if not entries else "rows.count", lang,
                                 case=spec.case_id, row=spec.row))
            continue
        case = entries[0]
        expected = dict(case.expected)
        if (expected.get("status"), expected.get("error_code")) != (spec.expected.status, spec.expected.error_code):
            problems.append(text("rows.expectation", lang, case=spec.case_id,
                                 claimed=_describe(expected), sheet=spec.expected.describe()))
    for case_id in claimed:
        if case_id not in sheet_ids:
            problems.append(text("rows.extra", lang, case=case_id))
    if problems:
        return _Check("rows", False, text("rows.failed", lang, problems=join(problems)))
    manual = sum(1 for s in ctx.rows.specs if s.manual)
    message = text("rows.ok", lang, count=len(ctx.rows.specs), manual=manual)
    # The bank chose these steps itself: Bits should see that each fits its row.
    by_file = [f"{s.case_id} → {s.binding or '–'}" for s in ctx.rows.specs if s.binding_source == "file"]
    if by_file:
        message += " " + text("rows.bound_by_file", lang, rows=join(by_file))
    return _Check("rows", True, message)


def _describe(expected: dict[str, Any]) -> str:
    parts = [f"HTTP {expected['status']}"] if expected.get("status") is not None else []
    if expected.get("error_code"):
        parts.append(str(expected["error_code"]))
    return " / ".join(parts) or "–"


def _check_verdicts(ctx: _Context) -> _Check:
    from conformance.judge import decide

    lang = ctx.lang
    if ctx.rows.problem:
        return _Check("verdicts", False, text("verdicts.no_sheet", lang))
    claimed = {case.id: case for case in ctx.manifest.cases}
    problems: list[str] = []
    judged = 0
    for spec in ctx.rows.specs:
        case = claimed.get(spec.case_id)
        if case is None or spec.manual or spec.binding is None:
            continue
        step = ctx.rows.registry.get(spec.binding)
        if step is None or step.judge is None:
            continue
        if case.evidence_file in ctx.evidence.untrusted:
            continue  # already a "files" failure; its content is not evidence
        exchanges = ctx.by_case.get(case.id, [])
        if not exchanges:
            if case.outcome == str(Outcome.PASSED):
                problems.append(text("verdicts.no_evidence", lang, case=case.id))
            continue
        core = step.core_conditions if case.performed_by == PERFORMED_BY_CORE else None
        decision = decide(spec.expected, step.judge, exchanges, ctx.manifest.bank_orgnr, core=core)
        judged += 1
        derived = str(decision.outcome)
        if derived != case.outcome and case.outcome != str(Outcome.ERROR):
            problems.append(text(
                "verdicts.mismatch", lang, case=case.id,
                claimed=_outcome_nb(case.outcome, lang), derived=_outcome_nb(derived, lang),
                why=(decision.message or "–")[:300],
            ))
    if problems:
        return _Check("verdicts", False, text("verdicts.failed", lang, problems=join(problems)))
    return _Check("verdicts", True, text("verdicts.ok", lang, count=judged))


# ---------------------------------------------------------------- journal and time


def _journal_names(names: Sequence[str]) -> list[str]:
    return sorted(n for n in names if "/" not in n and n.startswith("journal") and n.endswith(".jsonl"))


def _key(exchange: dict[str, Any]) -> tuple[Any, ...]:
    response = exchange.get("response") if isinstance(exchange.get("response"), dict) else {}
    return (exchange.get("session"), exchange.get("seq"), exchange.get("attempt"), exchange.get("role"),
            exchange.get("operation"), exchange.get("correlation_id"),
            exchange.get("started_at"), response.get("status"))


def _check_journal(ctx: _Context) -> _Check:
    lang = ctx.lang
    problems: list[str] = []
    journals = _journal_names(ctx.members.names)
    logged: dict[str, list[dict[str, Any]]] = {}
    for name in journals:
        if name in ctx.evidence.untrusted:
            return _Check("journal", False, text("journal.untrusted", lang, name=name))
        if ctx.members.size(name) > MAX_JOURNAL_BYTES:
            problems.append(text("journal.too_large", lang, name=name))
            continue
        for line in ctx.members.read(name).split(b"\n"):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a torn last line of an interrupted write
            if isinstance(item, dict):
                logged.setdefault(str(item.get("case_id")), []).append(item)
    if ctx.by_case and not journals:
        problems.append(text("journal.missing", lang))
    else:
        for case_id, exchanges in ctx.by_case.items():
            if [_key(e) for e in exchanges] != [_key(e) for e in logged.get(case_id, [])]:
                problems.append(text("journal.differs", lang, case=case_id,
                                     evidence=len(exchanges), journal=len(logged.get(case_id, []))))
    problems += _time_problems(ctx)
    if problems:
        return _Check("journal", False, text("journal.failed", lang, problems=join(problems)))
    count = sum(len(v) for v in ctx.by_case.values())
    return _Check("journal", True, text("journal.ok", lang, count=count, journals=len(journals)))


def _time_problems(ctx: _Context) -> list[str]:
    lang = ctx.lang
    manifest = ctx.manifest
    started, finished = parse_time(manifest.started_at), parse_time(manifest.finished_at)
    problems: list[str] = []
    if finished < started:
        problems.append(text("journal.run_backwards", lang))
    run_stamp = manifest.run_id.split("-")[0]
    if run_stamp != started.strftime("%Y%m%dT%H%M%SZ"):
        problems.append(text("journal.run_id", lang, run_id=manifest.run_id[:40], started=manifest.started_at))
    for case_id, exchanges in ctx.by_case.items():
        previous: dt.datetime | None = None
        for exchange in exchanges:
            try:
                moment = parse_time(str(exchange.get("started_at")))
            except ValueError:
                problems.append(text("journal.bad_time", lang, case=case_id))
                break
            if not started - TIME_SLACK <= moment <= finished + TIME_SLACK:
                problems.append(text("journal.outside", lang, case=case_id, time=str(exchange.get("started_at"))[:40]))
                break
            if previous is not None and moment < previous:
                problems.append(text("journal.order", lang, case=case_id))
                break
            previous = moment
    return problems


# ---------------------------------------------------------------- environment


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


def _check_environment(ctx: _Context, policy: Any) -> _Check:
    lang = ctx.lang
    environment = ctx.manifest.environment
    base = _norm(environment["kfr_base_url"])
    issuer = environment.get("maskinporten_issuer") or ""
    name = environment["name"]
    problems: list[str] = []
    if name == "test":
        accepted = {_norm(u) for u in policy.accepted_kfr_base_urls}
        if base not in accepted:
            problems.append(text("env.url", lang, url=base, accepted=", ".join(sorted(accepted))))
        accepted_issuers = {_norm(u) for u in getattr(policy, "accepted_maskinporten_issuers",
                                                      (TEST_MASKINPORTEN_ISSUER,))}
        if _norm(issuer) not in accepted_issuers:
            problems.append(text("env.issuer", lang, issuer=issuer[:120] or "–",
                                 accepted=", ".join(sorted(accepted_issuers))))
    elif name != "sandbox":
        return _Check("environment", False, text("env.name", lang, name=name[:40]))
    problems += _exchange_hosts(ctx.evidence.exchanges, base, issuer, lang)
    problems += _token_owners(ctx.evidence.exchanges, ctx.manifest.bank_orgnr, lang)
    if problems:
        return _Check("environment", False, text("env.failed", lang, problems=join(problems)))
    if name == "sandbox":
        if policy.allow_sandbox:
            return _Check("environment", True, text("env.sandbox_allowed", lang, url=base))
        return _Check("environment", False, text("env.sandbox", lang, url=base))
    return _Check("environment", True, text("env.ok", lang, url=base))


def _exchange_hosts(exchanges: Iterable[tuple[str, dict[str, Any]]], base: str, issuer: str,
                    lang: str) -> list[str]:
    """Every exchange went where the environment says: KFR calls under the base URL, token
    requests to the issuer's token endpoint, ``Host`` headers matching, tokens issued by it."""
    from conformance.judge import Exchange

    problems: list[str] = []
    token_url = _norm(issuer) + "/token" if issuer else ""
    for file, raw in exchanges:
        ex = Exchange(raw)
        url = ex.url
        if ex.operation == "token":
            if not token_url or _norm(url) != token_url:
                problems.append(text("env.token_url", lang, url=url[:200], file=file, expected=token_url or "–"))
            claims_iss = ex.token_claims.get("iss")
            if claims_iss is not None and _norm(str(claims_iss)) != _norm(issuer):
                problems.append(text("env.token_issuer", lang, iss=str(claims_iss)[:120], file=file, issuer=issuer))
        elif not (_norm(url) == base or url.startswith(base + "/")):
            problems.append(text("env.evidence_url", lang, url=url[:200], file=file, base=base))
        host_header = ex.header("Host")
        if host_header is not None and host_header.split(":")[0].strip("[]").lower() != ex.host:
            problems.append(text("env.host_header", lang, host=host_header[:80], url=url[:200], file=file))
        if len(problems) >= 5:
            break
    return problems


def _token_owners(exchanges: Iterable[tuple[str, dict[str, Any]]], bank: str, lang: str) -> list[str]:
    """Every token in the evidence was issued to the bank (``consumer`` 0192:<orgnr>): a
    run recorded as another bank cannot be passed off as this one's."""
    from conformance import contract
    from conformance.judge import Exchange

    for file, raw in exchanges:
        ex = Exchange(raw)
        # Tokens the tool was issued, and the tokens the core system sent through the gateway.
        for claims in (ex.token_claims, ex.sent_token_claims if ex.from_gateway else {}):
            if claims and "consumer" in claims:
                verdict = contract.token_consumer_is_bank(claims, bank)
                if not verdict.ok:
                    return [text("env.token_consumer", lang, file=file, reason=verdict.reason)]
    return []


# ---------------------------------------------------------------- attested rows


def _check_attested(ctx: _Context, policy: Any) -> _Check:
    lang = ctx.lang
    specs = {spec.case_id: spec for spec in ctx.rows.specs}
    attested: list[str] = []
    refused: list[str] = []
    for case in ctx.manifest.cases:
        if not (case.manual and case.outcome == str(Outcome.PASSED)):
            continue
        spec = specs.get(case.id)
        # A row the sheet makes automated but the pack reports as confirmed by a person is
        # named as such: the tool could have proven it, someone chose their word instead.
        automated = spec is not None and not spec.manual and spec.binding is not None
        attested.append(case.id + (" " + text("attested.automated", lang, step=spec.binding)
                                   if automated and spec is not None else ""))
        expects_http = spec is not None and spec.expected.status is not None
        if expects_http and not getattr(policy, "accept_attested", False):
            refused.append(attested[-1])
    if refused:
        return _Check("attested", False, text("attested.http", lang, cases=", ".join(refused)))
    if attested:
        return _Check("attested", True, text("attested.some", lang, count=len(attested), cases=", ".join(attested)))
    return _Check("attested", True, text("attested.none", lang))


# ---------------------------------------------------------------- rows the core system performed


def _check_core_system(ctx: _Context) -> _Check:
    """Every passed row the pack says the core system performed shows it: the requests its
    step asks of the core system came through the recording gateway, each with a token
    issued to this bank, and the tool looked KFR's state up afterwards. (A row that did not
    pass claims nothing; its verdict is re-derived by ``verdicts`` all the same.)"""
    lang = ctx.lang
    claimed = [c for c in ctx.manifest.cases
               if c.performed_by == PERFORMED_BY_CORE and c.outcome == str(Outcome.PASSED)]
    if not claimed:
        return _Check("core_system", True, text("core.none", lang))
    if ctx.rows.problem:
        return _Check("core_system", False, text("core.no_sheet", lang))
    specs = {spec.case_id: spec for spec in ctx.rows.specs}
    problems: list[str] = []
    for case in claimed:
        spec = specs.get(case.id)
        step = ctx.rows.registry.get(spec.binding) if spec is not None and spec.binding else None
        if step is None or step.core_conditions is None:
            problems.append(text("core.not_core_step", lang, case=case.id))
            continue
        if case.evidence_file in ctx.evidence.untrusted:
            continue  # already a "files" failure
        problems += _core_claim_problems(case.id, step.core_conditions, ctx.by_case.get(case.id, []),
                                         ctx.manifest.bank_orgnr, lang)
    if problems:
        return _Check("core_system", False, text("core.failed", lang, problems=join(problems)))
    return _Check("core_system", True, text("core.ok", lang, count=len(claimed)))


def _core_claim_problems(case_id: str, core: Any, exchanges: list[dict[str, Any]], bank: str,
                         lang: str) -> list[str]:
    from conformance import contract
    from conformance.judge import CaseEvidence, core_customers

    latest = CaseEvidence.sessions(exchanges)[-1]
    ev = CaseEvidence.attempts(latest, bank, core)[-1]
    problems: list[str] = []
    core_exchanges = []
    for role, _operation in core.requests:
        sent = [e for e in ev.sent(role) if e.from_gateway]
        if not sent:
            problems.append(text("core.no_gateway", lang, case=case_id, role=role))
            continue
        core_exchanges += sent
        for ex in sent:
            claims = ex.sent_token_claims
            verdict = contract.token_consumer_is_bank(claims, bank) if claims else None
            if verdict is None or not verdict.ok:
                reason = verdict.reason if verdict is not None else text("core.no_token", lang)
                problems.append(text("core.token", lang, case=case_id, role=role, reason=reason))
                break
    customers = core_customers(core_exchanges)
    checked = any(
        not e.from_gateway and e.operation == "lookup" and e.role.startswith("check") and e.fid == bank
        and e.status == 200 and e.customer_id in customers
        for e in ev.exchanges
    )
    if core_exchanges and not checked:
        problems.append(text("core.no_state_check", lang, case=case_id))
    return problems
