"""What each row of the KFR integration-test sheet does, and how its evidence is judged.

Every step has two halves. The *act* half sets up its own data with fresh synthetic
identities and sends the row's requests, labelling each with a role: ``main`` (the request
the row is about), ``setup`` (a precondition), ``check`` (what proves more than a status),
``control`` (the positive control of a negative row: the same request with the one thing
fixed), ``poll`` (waiting for a batch to be read). The *judge* half reads only the recorded
exchanges (``conformance.judge.CaseEvidence``) and returns an ``Actual``; the engine
compares it with the row's own "Forventet resultat". ``kfr-conformance verify`` runs the
same judges on a pack's evidence, so a verdict is proven by what was recorded, never by
what a results file says.

A row the bank's core system can carry out also has a *core act* (``@core(name, role=op)``):
when a run has a core system (``--core-system``), the core act asks it, through ``ctx.core``,
for the requests the roles name (they reach KFR through the recording gateway and are
recorded under those roles), and the tool then looks KFR's state up (``check…``). The judge
is the same; ``conformance.judge`` adds the core system's conditions. Rows about malformed
requests stay with the tool: a core system never sends them on purpose.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from typing import Any

import httpx

from conformance import contract
from conformance.errors import AuthError
from conformance.ids import classify, invalid_check_digit
from conformance.judge import (
    KFR_INGEST_RATE,
    CaseEvidence,
    Exchange,
    Incomplete,
    Precondition,
    answer,
    batch_entries,
    batch_field,
    mp_code,
    never_reached_kfr,
)
from conformance.kfr import OMIT, build_batch_text
from conformance.steps import Actual, StepRegistry

REGISTRY = StepRegistry()
step = REGISTRY.step
judge = REGISTRY.judge
core = REGISTRY.core

DSOPBANK = "DSOPBANK"
WRITE_SCOPE = "bits:kundeforhold.write"
MAX_BATCH_BYTES = 10 * 1024 * 1024
BAD_RELATIONSHIP_TYPE = "UGYLDIG"  # as the sheet's Testdata column says
BAD_DATE = "08.11.2019"             # a start date in the wrong format, as the sheet says
HISTORY_START = dt.date(2020, 1, 15)
ACCEPTED = (200, 201)


# ---------------------------------------------------------------- act helpers


def _register(ctx: Any, customer_id: str, role: str = "setup") -> bool:
    """Precondition: a relationship exists. False when KFR did not accept it."""
    return ctx.kfr.add(customer_id, role=role).status in ACCEPTED


def _wait_visible(ctx: Any, ids: list[str]) -> list[str]:
    def progress(done: int, total: int) -> None:
        ctx.progress(f"venter på innlesing av batch: {done}/{total} synlige")

    if note := ctx.kfr.backlog_note():
        ctx.progress(note)

    return ctx.kfr.wait_until_visible(ids, on_progress=progress)


class _StaticBearer(httpx.Auth):
    """Sends a fixed bearer token: a forged one KFR must refuse, or one fetched in the row."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


FORGED_TOKEN = "eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImJpdHMifQ."  # unsigned: KFR must refuse it


# ---------------------------------------------------------------- judge helpers


def _own(actual: Actual, ex: Exchange, ev: CaseEvidence) -> Actual:
    verdict = contract.fid_is_bank(ex.fid, ev.bank)
    if not verdict.ok:
        actual.check("forespørselen gjelder bankens egen fid", False, verdict.reason)
    return actual


def _setup_add(ev: CaseEvidence, role: str = "setup") -> Exchange:
    ex = ev.request(role, "add")
    if ex.fid != ev.bank or ex.status not in ACCEPTED:
        raise Precondition(
            f"registrering av {ex.customer_id} ga HTTP {ex.status}",
            "forutsetning: kundeforholdet kunne registreres", ex,
        )
    return ex


def _same_customer(actual: Actual, ex: Exchange, customer: str | None, what: str) -> Actual:
    if ex.customer_id != customer:
        actual.check(f"{what} gjelder samme kunde som forutsetningen", False,
                     f"{ex.customer_id} ≠ {customer}")
    return actual


def _kind(actual: Actual, ex: Exchange, wanted: str, label: str) -> Actual:
    kind = classify(ex.customer_id or "")
    if kind != wanted:
        actual.check(f"kunde-ID-en er et {label}", False, f"{ex.customer_id}: {kind or 'ugyldig'}")
    return actual


def _control(actual: Actual, ev: CaseEvidence, operation: str, what: str,
             role: str = "control", accepted: tuple[int, ...] = ACCEPTED) -> Exchange:
    """The positive control: refused rows must be refused for the row's reason only."""
    ex = ev.request(role, operation)
    actual.check(f"kontroll: {what} godtas", ex.status in accepted and ex.fid == ev.bank,
                 f"HTTP {ex.status}{' ' + ex.error_code if ex.error_code else ''}")
    return ex


def _lookup_check(actual: Actual, ev: CaseEvidence, role: str, customer: str, *,
                  listed: bool, description: str,
                  period: tuple[dt.date, dt.date] | None = None) -> Actual:
    ex = ev.request(role, "lookup")
    if ex.customer_id != customer or ex.fid != ev.bank:
        raise Incomplete(f"«{role}» slår opp {ex.customer_id} hos {ex.fid}, ikke {customer}")
    if period is not None:
        asked = (ex.query.get("fromDate"), ex.query.get("toDate"))
        wanted = (period[0].isoformat(), period[1].isoformat())
        if asked != wanted:
            raise Incomplete(f"«{role}» spør om perioden {asked}, raden krever {wanted}")
    found, detail = ev.own_listed(ex)
    ok = ex.status == 200 and found == listed
    actual.check(description, ok, detail if ex.status == 200 else f"HTTP {ex.status}")
    return actual


def _all_visible(actual: Actual, ev: CaseEvidence, ids: list[str]) -> Actual:
    missing = [c for c in ids if not ev.visible(c)]
    return actual.check("alle kunder i batchen er synlige etter innlesing", not missing,
                        f"mangler: {', '.join(missing)}" if missing else "")


def _main_batch(ev: CaseEvidence) -> tuple[Exchange, list[tuple[str, str | None]]]:
    ex = ev.request("main", "batch")
    entries = batch_entries(ex)
    if entries is None:
        raise Incomplete("batch-innholdet er ikke med i beviset")
    if batch_field(ex, "customer_type") != DSOPBANK:
        raise Incomplete(f"batchen har customer_type «{batch_field(ex, 'customer_type')}», ikke {DSOPBANK}")
    return ex, entries


# ---------------------------------------------------------------- token


@step("token", operation="token", status=200, case_ids=["KFR-01"],
      title="Hent token fra Maskinporten med scope bits:kundeforhold.write",
      hints=["maskinporten", "tilgangstoken", "access token", "jwt", "virksomhetssertifikat",
             "enterprise certificate", "grant", "bits:kundeforhold.write", "skrivescope",
             "write scope"])
def token(ctx: Any) -> None:
    with contextlib.suppress(AuthError):  # a refusal is in the evidence; the judge reads it
        ctx.maskinporten.fetch_token([ctx.write_scope], role="main")


@judge("token")
def judge_token(ev: CaseEvidence) -> Actual:
    ex = ev.optional("main", "token")
    if ex is None:
        raise Incomplete("beviset mangler tokenforespørselen")
    if ex.status is not None and 400 <= ex.status < 500:
        code = mp_code(ex)
        return Actual(status=ex.status, error_code=code, answered_by="maskinporten",
                      summary=f"Maskinporten avviste forespørselen ({code or ex.status}): "
                              f"{ex.error_message or ''}".strip())
    ex = ev.request("main", "token")
    claims = ex.token_claims
    scope = str(claims.get("scope") or "")
    actual = Actual(status=ex.status, answered_by="maskinporten",
                    summary=f"Token mottatt med scope «{scope}».")
    verdict = contract.token_has_scope(claims, WRITE_SCOPE)
    actual.check(f"tokenet har scope {WRITE_SCOPE}", verdict.ok, verdict.reason)
    consumer = contract.token_consumer_is_bank(claims, ev.bank)
    actual.check("tokenet er utstedt til banken (consumer 0192:<orgnr>)", consumer.ok, consumer.reason)
    return actual


# ---------------------------------------------------------------- single registrations


def _add_new(ctx: Any, customer_id: str) -> None:
    if ctx.kfr.add(customer_id).status in ACCEPTED:
        ctx.kfr.lookup(customer_id, role="check")


def _judge_add_new(ev: CaseEvidence, kind: str, label: str) -> Actual:
    ex = ev.request("main", "add")
    actual = _kind(_own(answer(ex, f"Registrering av {label} {ex.customer_id}."), ex, ev), ex, kind, label)
    actual.identities = [ex.customer_id or ""]
    if ex.status in ACCEPTED:
        _lookup_check(actual, ev, "check", ex.customer_id or "", listed=True,
                      description="kundeforholdet finnes ved oppslag etterpå")
    return actual


@step("add_fodselsnummer", operation="add", subject="fodselsnummer", status=201, case_ids=["KFR-02"])
def add_fodselsnummer(ctx: Any) -> None:
    _add_new(ctx, ctx.new_fodselsnummer())


@judge("add_fodselsnummer")
def judge_add_fodselsnummer(ev: CaseEvidence) -> Actual:
    return _judge_add_new(ev, "fodselsnummer", "fødselsnummer")


@step("add_d_nummer", operation="add", subject="d-nummer", status=201, case_ids=["KFR-03"])
def add_d_nummer(ctx: Any) -> None:
    _add_new(ctx, ctx.new_d_nummer())


@judge("add_d_nummer")
def judge_add_d_nummer(ev: CaseEvidence) -> Actual:
    return _judge_add_new(ev, "d-nummer", "D-nummer")


@step("add_orgnr", operation="add", subject="orgnr", status=201, case_ids=["KFR-04"])
def add_orgnr(ctx: Any) -> None:
    _add_new(ctx, ctx.new_orgnr())


@judge("add_orgnr")
def judge_add_orgnr(ev: CaseEvidence) -> Actual:
    return _judge_add_new(ev, "orgnr", "organisasjonsnummer")


def _register_then(ctx: Any, send: Any) -> None:
    """Register a fresh customer (setup), then send the row's request about that customer."""
    customer = ctx.new_fodselsnummer()
    if _register(ctx, customer):
        send(customer)


def _judge_registered(ev: CaseEvidence, operation: str, summary: str, what: str) -> tuple[Actual, Exchange]:
    """The row's main request about the customer its setup registered."""
    setup = _setup_add(ev)
    ex = ev.request("main", operation)
    actual = _own(answer(ex, summary.format(customer=ex.customer_id)), ex, ev)
    actual.identities = [setup.customer_id or ""]
    return _same_customer(actual, ex, setup.customer_id, what), ex


def _core_add_new(ctx: Any, customer_id: str) -> None:
    """The core system registers a new customer today; the tool then looks it up."""
    ex = ctx.core.open(customer_id, role="main")
    if ex is not None and ex.status in ACCEPTED:
        ctx.kfr.lookup(customer_id, role="check")


@core("add_fodselsnummer", main="add")
def core_add_fodselsnummer(ctx: Any) -> None:
    _core_add_new(ctx, ctx.new_fodselsnummer())


@core("add_d_nummer", main="add")
def core_add_d_nummer(ctx: Any) -> None:
    _core_add_new(ctx, ctx.new_d_nummer())


@core("add_orgnr", main="add")
def core_add_orgnr(ctx: Any) -> None:
    _core_add_new(ctx, ctx.new_orgnr())


@step("add_existing", operation="add", status=200, case_ids=["KFR-05"],
      keywords=[("finnes", "eksisterer", "already", "exists", "allerede", "eksisterende",
                 "existing", "igjen", "på nytt", "en gang til", "to ganger", "again",
                 "twice", "once more", "second time", "duplicate", "duplikat", "idempotent")],
      hints=["allerede", "already", "igjen", "på nytt", "again", "twice", "duplicate",
             "duplikat", "uendret", "ingen endring", "unchanged", "no change"])
def add_existing(ctx: Any) -> None:
    _register_then(ctx, ctx.kfr.add)


@core("add_existing", main="add")
def core_add_existing(ctx: Any) -> None:
    """The relationship is already in KFR (the tool put it there, the core system does not
    know): the core system registers the customer, and KFR answers 200."""
    customer = ctx.new_fodselsnummer()
    if _register(ctx, customer) and ctx.core.open(customer, role="main") is not None:
        ctx.kfr.lookup(customer, role="check")


@judge("add_existing")
def judge_add_existing(ev: CaseEvidence) -> Actual:
    actual, ex = _judge_registered(ev, "add", "Ny registrering av eksisterende kundeforhold {customer}.",
                                   "den nye registreringen")
    if ev.optional("check") is not None and ex.status in ACCEPTED:
        _lookup_check(actual, ev, "check", ex.customer_id or "", listed=True,
                      description="kundeforholdet finnes fortsatt ved oppslag etterpå")
    return actual


@step("lookup_own_bank", operation="lookup", status=200, case_ids=["KFR-06"],
      hints=["egen bank", "own bank", "vår bank", "our bank", "bankens organisasjonsnummer",
             "our organisation number", "i listen", "in the list", "i svaret",
             "in the response", "hvilke banker", "which banks", "banks", "organizationid",
             "organisationid"])
def lookup_own_bank(ctx: Any) -> None:
    _register_then(ctx, ctx.kfr.lookup)


@judge("lookup_own_bank")
def judge_lookup_own_bank(ev: CaseEvidence) -> Actual:
    actual, ex = _judge_registered(ev, "lookup", "Oppslag på {customer}.", "oppslaget")
    if ex.status == 200:
        ok, detail = ev.own_listed(ex)
        actual.summary += f" {detail}."
        actual.check("eget organisasjonsnummer finnes i svaret", ok, detail)
        data = ex.json if isinstance(ex.json, dict) else {}
        banks = data.get("banks") if isinstance(data.get("banks"), list) else []
        own = [b for b in banks if isinstance(b, dict) and b.get("organizationID") == ev.bank]
        if own:
            actual.check("activeAccount er false (KFR)", own[0].get("activeAccount") is False,
                         f"activeAccount={own[0].get('activeAccount')!r}")
            actual.check("bankName er oppgitt", bool(own[0].get("bankName")), "")
    return actual


# ---------------------------------------------------------------- ending relationships


@step("end_relationship", operation="end", status=204, case_ids=["KFR-07"],
      hints=["ikke lenger", "no longer", "avsluttet", "ended", "slettet", "deleted",
             "fjernet", "removed"])
def end_relationship(ctx: Any) -> None:
    _register_then(ctx, ctx.kfr.end)


@core("end_relationship", setup="add", main="end")
def core_end_relationship(ctx: Any) -> None:
    """The core system registers a customer and ends the relationship; the tool then looks
    it up for a period after the end."""
    customer = ctx.new_fodselsnummer()
    opened = ctx.core.open(customer, role="setup")
    if opened is None or opened.status not in ACCEPTED:
        return
    ended = ctx.core.close(customer, role="main")
    if ended is not None and ended.status == 204:
        after = (ended.oslo_date or ctx.today()) + dt.timedelta(days=1)
        ctx.kfr.lookup(customer, from_date=after, to_date=after + dt.timedelta(days=30), role="check")


@judge("end_relationship")
def judge_end_relationship(ev: CaseEvidence) -> Actual:
    actual, ex = _judge_registered(ev, "end", "Avslutning av kundeforhold {customer}.", "avslutningen")
    if ev.optional("check") is not None and ex.status == 204:
        after = (ex.oslo_date or dt.date.min) + dt.timedelta(days=1)
        _lookup_check(actual, ev, "check", ex.customer_id or "", listed=False,
                      description="ikke funnet for en periode etter avslutningen",
                      period=(after, after + dt.timedelta(days=30)))
    return actual


@step("history_after_end", operation="history", status=200, case_ids=["KFR-08"],
      hints=["historikk", "history", "periode før", "period before", "perioden før",
             "the period before", "earlier period", "tidligere periode", "past period",
             "fromdate", "todate", "før avslutning", "before the end", "etter avslutning",
             "after the end"])
def history_after_end(ctx: Any) -> None:
    """A relationship started in the past (via batch, the only way to give a start date),
    ended today; the periods are the sheet's: from the start to the day before the end, and
    from the day after the end."""
    customer = ctx.new_fodselsnummer()
    if ctx.kfr.batch(build_batch_text([(customer, HISTORY_START)]), role="setup").status != 201:
        return
    if _wait_visible(ctx, [customer]):
        return
    if ctx.kfr.end(customer, role="setup-end").status != 204:
        return
    _history_lookups(ctx, customer)


def _history_lookups(ctx: Any, customer: str) -> None:
    ended = ctx.today()
    ctx.kfr.lookup(customer, from_date=HISTORY_START, to_date=ended - dt.timedelta(days=1))
    after = ended + dt.timedelta(days=1)
    ctx.kfr.lookup(customer, from_date=after, to_date=after + dt.timedelta(days=30), role="check")


@core("history_after_end", setup="batch", setup_end="end")
def core_history_after_end(ctx: Any) -> None:
    """The core system registers a relationship that started in the past (which only a batch
    can carry) and, once KFR has read it, ends it; the tool looks up the history."""
    customer = ctx.new_fodselsnummer()
    opened = ctx.core.open(customer, HISTORY_START, role="setup")
    if opened is None or opened.status != 201 or _wait_visible(ctx, [customer]):
        return
    ended = ctx.core.close(customer, role="setup-end")
    if ended is not None and ended.status == 204:
        _history_lookups(ctx, customer)


@judge("history_after_end")
def judge_history_after_end(ev: CaseEvidence) -> Actual:
    setup = ev.request("setup", "batch")
    entries = batch_entries(setup) or []
    if setup.status != 201 or len(entries) != 1 or entries[0][1] != HISTORY_START.isoformat():
        raise Precondition(f"batch med startdato ga HTTP {setup.status}",
                           "forutsetning: batch med én kunde og startdato mottatt", setup)
    customer = entries[0][0]
    if not ev.visible(customer):
        raise Precondition("kunden ble ikke synlig", "forutsetning: batchen er lest inn før avslutning (D-3)")
    ended = ev.request("setup-end", "end")
    if ended.status != 204 or ended.customer_id != customer:
        raise Precondition(f"avslutning ga HTTP {ended.status}", "forutsetning: kundeforholdet ble avsluttet", ended)
    end_date = ended.oslo_date or dt.date.min
    ex = ev.request("main", "lookup")
    actual = _own(answer(ex, f"Oppslag for perioden før avslutningen på {customer}."), ex, ev)
    actual.identities = [customer]
    _lookup_check(actual, ev, "main", customer, listed=True,
                  description="funnet for en periode før avslutningen",
                  period=(HISTORY_START, end_date - dt.timedelta(days=1)))
    after = end_date + dt.timedelta(days=1)
    return _lookup_check(actual, ev, "check", customer, listed=False,
                         description="ikke funnet for en periode etter avslutningen",
                         period=(after, after + dt.timedelta(days=30)))


@step("end_missing", operation="end", status=404, error_code="KFR-008", case_ids=["KFR-09"],
      hints=["finnes ikke", "ikke finnes", "does not exist", "doesn't exist", "not there",
             "aldri", "never", "ukjent", "unknown", "non-existent", "nonexistent",
             "ikke registrert", "not registered", "ubrukt", "unused"])
def end_missing(ctx: Any) -> None:
    ctx.kfr.end(ctx.new_fodselsnummer())
    control = ctx.new_fodselsnummer()
    if _register(ctx, control, role="control-add"):
        ctx.kfr.end(control, role="control")


@judge("end_missing")
def judge_end_missing(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "end")
    actual = _own(answer(ex, f"Avslutning av ikke-eksisterende kundeforhold {ex.customer_id}."), ex, ev)
    actual.identities = [ex.customer_id or ""]
    earlier = [e for e in ev.exchanges if e.operation in ("add", "batch") and e.seq < ex.seq
               and (e.customer_id == ex.customer_id or ex.customer_id in str(e.request_body))]
    actual.check("kunden er ikke registrert i raden før avslutningen", not earlier, "")
    _setup_add(ev, "control-add")
    _control(actual, ev, "end", "avslutning av et registrert kundeforhold", accepted=(204,))
    return actual


# ---------------------------------------------------------------- batch


@step("batch_with_dates", operation="batch", status=201, case_ids=["KFR-10"],
      keywords=[("startdato", "start date", "startdatoer", "dato", "date", "datoer", "dates")],
      hints=["startdato", "start date", "egen dato", "own date", "egen startdato",
             "per kunde", "per customer", "each customer", "hver kunde"])
def batch_with_dates(ctx: Any) -> None:
    entries = _dated_entries(ctx)
    if ctx.kfr.batch(build_batch_text(entries)).status == 201:
        _dated_lookups(ctx, entries)


def _dated_entries(ctx: Any) -> list[tuple[str, dt.date]]:
    return [(ctx.new_fodselsnummer(), dt.date(2019, 11, 8)),
            (ctx.new_orgnr(), dt.date(2011, 11, 5)),
            (ctx.new_d_nummer(), dt.date(2019, 10, 15))]


def _dated_lookups(ctx: Any, entries: list[tuple[str, dt.date]]) -> None:
    if _wait_visible(ctx, [c for c, _ in entries]):
        return
    customer, start = entries[0]
    ctx.kfr.lookup(customer, from_date=start - dt.timedelta(days=30),
                   to_date=start - dt.timedelta(days=1), role="check-before")
    ctx.kfr.lookup(customer, from_date=start, to_date=start + dt.timedelta(days=1), role="check-from")


@core("batch_with_dates", main="batch")
def core_batch_with_dates(ctx: Any) -> None:
    entries = _dated_entries(ctx)
    ex = ctx.core.batch(list(entries), role="main")
    if ex is not None and ex.status == 201:
        _dated_lookups(ctx, entries)


@judge("batch_with_dates")
def judge_batch_with_dates(ev: CaseEvidence) -> Actual:
    ex, entries = _main_batch(ev)
    actual = _own(answer(ex, f"Batch med {len(entries)} kunder med startdato."), ex, ev)
    actual.identities = [c for c, _ in entries]
    dated = [(c, d) for c, d in entries if d]
    actual.check("hver kunde i filen har startdato", bool(entries) and len(dated) == len(entries), "")
    if ex.status != 201 or not dated:
        return actual
    _all_visible(actual, ev, [c for c, _ in entries])
    customer, start_text = dated[0]
    start = dt.date.fromisoformat(start_text or "")
    _lookup_check(actual, ev, "check-before", customer, listed=False,
                  description="ikke funnet før startdatoen fra filen",
                  period=(start - dt.timedelta(days=30), start - dt.timedelta(days=1)))
    return _lookup_check(actual, ev, "check-from", customer, listed=True,
                         description="funnet fra startdatoen fra filen",
                         period=(start, start + dt.timedelta(days=1)))


@step("batch_without_dates", operation="batch", status=201, case_ids=["KFR-11"],
      keywords=[("uten", "without", "ingen", "no date", "no dates", "no start date",
                 "i dag", "today", "dagens dato", "omitted", "utelatt")],
      hints=["uten dato", "uten startdato", "without date", "without start date", "no date",
             "no dates", "ingen dato", "i dag", "today", "dagens dato"])
def batch_without_dates(ctx: Any) -> None:
    customers = [ctx.new_fodselsnummer(), ctx.new_orgnr(), ctx.new_d_nummer()]
    if ctx.kfr.batch(build_batch_text([(c, None) for c in customers])).status == 201:
        _undated_lookups(ctx, customers)


@core("batch_without_dates", main="batch")
def core_batch_without_dates(ctx: Any) -> None:
    customers = [ctx.new_fodselsnummer(), ctx.new_orgnr(), ctx.new_d_nummer()]
    ex = ctx.core.batch([(c, None) for c in customers], role="main")
    if ex is not None and ex.status == 201:
        _undated_lookups(ctx, customers)


def _undated_lookups(ctx: Any, customers: list[str]) -> None:
    if _wait_visible(ctx, customers):
        return
    yesterday = ctx.today() - dt.timedelta(days=1)
    ctx.kfr.lookup(customers[0], from_date=yesterday - dt.timedelta(days=7), to_date=yesterday,
                   role="check")


@judge("batch_without_dates")
def judge_batch_without_dates(ev: CaseEvidence) -> Actual:
    ex, entries = _main_batch(ev)
    actual = _own(answer(ex, f"Batch med {len(entries)} kunder uten startdato."), ex, ev)
    actual.identities = [c for c, _ in entries]
    actual.check("ingen kunde i filen har startdato", bool(entries) and all(d is None for _, d in entries), "")
    if ex.status != 201 or not entries:
        return actual
    _all_visible(actual, ev, [c for c, _ in entries])
    sent = ex.oslo_date or dt.date.min
    yesterday = sent - dt.timedelta(days=1)
    return _lookup_check(actual, ev, "check", entries[0][0], listed=False,
                         description="startdato er dagens dato (ikke funnet for i går)",
                         period=(yesterday - dt.timedelta(days=7), yesterday))


@step("batch_bad_date", operation="batch", status=400, error_code="KFR-010", case_ids=["KFR-12"],
      hints=["ugyldig dato", "invalid date", "feil dato", "bad date", "wrong date",
             "malformed date", "datoformat", "date format", "feil format", "wrong format"])
def batch_bad_date(ctx: Any) -> None:
    good, bad = ctx.new_orgnr(), ctx.new_fodselsnummer()
    refused = ctx.kfr.batch(f"{good}#2019-11-08,{bad}#{BAD_DATE}")
    if refused.status == 400:
        ctx.kfr.lookup(good, from_date=dt.date(2019, 11, 8), to_date=ctx.today(), role="check")
    ctx.kfr.batch(build_batch_text([(ctx.new_orgnr(), dt.date(2019, 11, 8)),
                                    (ctx.new_fodselsnummer(), dt.date(2019, 11, 8))]), role="control")


@judge("batch_bad_date")
def judge_batch_bad_date(ev: CaseEvidence) -> Actual:
    ex, entries = _main_batch(ev)
    actual = _own(answer(ex, f"Batch der én kunde har startdato i feil format ({BAD_DATE})."), ex, ev)
    actual.identities = [c for c, _ in entries]
    malformed = [d for _, d in entries if d is not None and not _iso_date(d)]
    actual.check("filen har en startdato i feil format", bool(malformed), ", ".join(malformed))
    if ex.status == 400:
        good = [(c, d) for c, d in entries if d and _iso_date(d)]
        if not good:
            raise Incomplete("filen har ingen kunde med gyldig dato å kontrollere")
        customer, start = good[0]
        _lookup_check(actual, ev, "check", customer, listed=False,
                      description="ingenting fra den avviste filen er lagret",
                      period=(dt.date.fromisoformat(start or ""), ev.request("check").oslo_date or dt.date.max))
    control = _control(actual, ev, "batch", "samme batch med gyldige datoer", accepted=(201,))
    control_entries = batch_entries(control) or []
    actual.check("kontrollen har gyldige datoer", bool(control_entries)
                 and all(d and _iso_date(d) for _, d in control_entries), "")
    return actual


def _iso_date(text: str) -> str | None:
    try:
        return dt.date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


@step("batch_bad_boundary", operation="batch", status=403, case_ids=["KFR-19"],
      keywords=[("boundary", "grense", "skilletegn", "skillelinje")],
      hints=["boundary", "anførselstegn", "hermetegn", "quoted", "quotes", "content-type"])
def batch_bad_boundary(ctx: Any) -> None:
    customer = ctx.new_orgnr()
    ctx.kfr.batch(customer, quote_boundary=True)
    ctx.kfr.batch(customer, role="control")


@judge("batch_bad_boundary")
def judge_batch_bad_boundary(ev: CaseEvidence) -> Actual:
    ex, entries = _main_batch(ev)
    actual = _own(answer(ex, "Batch med boundary i anførselstegn i Content-Type."), ex, ev)
    actual.identities = [c for c, _ in entries]
    quoted = contract.boundary_unquoted(ex.header("Content-Type"))
    actual.check("boundary i Content-Type står i anførselstegn", not quoted.ok, ex.header("Content-Type") or "")
    control = _control(actual, ev, "batch", "samme batch med boundary uten anførselstegn", accepted=(201,))
    actual.check("kontrollen er samme batch med riktig boundary",
                 batch_entries(control) == entries and contract.boundary_unquoted(control.header("Content-Type")).ok,
                 control.header("Content-Type") or "")
    return actual


@step("batch_too_large", operation="batch", status=413, case_ids=["KFR-20"], retryable=False,
      hints=["10 mb", "for stor", "too large", "too big", "størrelse", "size limit",
             "maksimal", "maximum", "større enn", "larger than", "bigger than", "exceed",
             "overstiger", "over grensen"])
def batch_too_large(ctx: Any) -> None:
    """A file just over 10 MB of distinct valid synthetic organisation numbers, sent once and
    never repeated: if an environment accepts it, its IDs are really queued for ingestion."""
    body = oversize_batch_text(ctx.rng.randrange(0, 2_000_000 - 1_350_000), MAX_BATCH_BYTES + 1024)
    response = ctx.kfr.batch(body, retry=False)
    if response.status == 201:
        ctx.note_backlog(len(body) // 10, "KFR-20")
    ctx.kfr.batch(ctx.new_orgnr(), role="control")


@judge("batch_too_large")
def judge_batch_too_large(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "batch")
    size = ex.request_body_size
    actual = _own(answer(ex, f"Batch på {size / 1_048_576:.2f} MiB."), ex, ev)
    actual.check("filen er over 10 MB", size > MAX_BATCH_BYTES, f"{size} byte")
    # Sends the gateway turned away (429, its own 401 for a token revoked meanwhile) never
    # reached KFR; every other send might have.
    reached = [t for t in ev.sent("main") if not never_reached_kfr(t)]
    actual.check("filen er sendt til KFR én gang", len(reached) == 1, f"{len(reached)} sendinger")
    if ex.status == 201:
        queued = size // 10
        minutes = queued / KFR_INGEST_RATE / 60
        actual.summary += (f" Testmiljøet GODTOK filen: ca. {queued:,} ID-er er lagt i kø, og "
                           f"innlesingen tar ca. {minutes:.0f} min ved {KFR_INGEST_RATE:.0f} ID-er/s.").replace(",", " ")
    _control(actual, ev, "batch", "en liten batch", accepted=(201,))
    return actual


def oversize_batch_text(start: int, min_bytes: int) -> str:
    """Comma-separated distinct valid 9-digit organisation numbers from the range 38xxxxxxx–
    39xxxxxxx (not handed out by Brønnøysund, and never used by the rows' own synthetic
    customers), from base offset ``start``, at least ``min_bytes`` long, in whole blocks of
    ten numbers sharing a 7-digit prefix. The check digit follows from the weighted digit
    sum mod 11, so a block's valid endings depend only on its prefix's sum, and ten blocks
    sharing a 6-digit prefix only on that one's: the sums come from two small tables and
    each hundred numbers are one ``str.join`` (the same text as one python-stdnum checksum
    and ten f-strings per block, which took 0.7–1.3 s for the 10 MB file)."""
    head_sums, tail_sums, block_endings, group_endings = _oversize_tables()
    pieces: list[str] = []
    size = -1
    base = start // 10 % 200_000  # 200 000 prefixes of seven digits: 38xxxxx and 39xxxxx
    while size < min_bytes:
        six = 380_000 + base // 10  # the prefix's first six digits
        head = six // 1000
        weighted = head_sums[head] + tail_sums[six - head * 1000]
        if base % 10 == 0:  # ten whole blocks, unless the text is complete within them
            ending = group_endings[weighted % 11]
            if size + 10 * len(ending) < min_bytes:
                text = str(six)
                pieces.append(text + ("," + text).join(ending))
                size += 10 * len(ending)
                base = base + 10 if base < 199_990 else 0
                continue
        ending = block_endings[(weighted + 3 * (base % 10)) % 11]
        text = str(3_800_000 + base)
        pieces.append(text + ("," + text).join(ending))
        size += 10 * len(ending)
        base = base + 1 if base < 199_999 else 0
    return ",".join(pieces)


@functools.cache
def _oversize_tables() -> tuple[list[int], list[int], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """For :func:`oversize_batch_text`: the orgnr weights of a 6-digit prefix (3 2 7 | 6 5 4)
    summed over its first and last three digits; by a 7-digit prefix's weighted sum mod 11,
    the last two digits (base digit, weight 2; check digit) of its block's valid numbers;
    and by a 6-digit prefix's sum mod 11, the last three (7th digit, weight 3, then those)."""

    def sums(weights: tuple[int, ...]) -> list[int]:
        table = [0]
        for weight in weights:
            table = [total + weight * digit for total in table for digit in range(10)]
        return table

    blocks = [
        tuple(f"{digit}{check}" for digit in range(10)
              if (check := -(residue + 2 * digit) % 11) != 10)
        for residue in range(11)
    ]
    groups = [
        tuple(f"{seventh}{end}" for seventh in range(10)
              for end in blocks[(residue + 3 * seventh) % 11])
        for residue in range(11)
    ]
    return sums((3, 2, 7)), sums((6, 5, 4)), blocks, groups


# ---------------------------------------------------------------- errors


def _refused_add(ev: CaseEvidence, summary: str, fault: str, has_fault: bool, detail: str,
                 control_what: str, *, own_fid: bool = True) -> tuple[Actual, Exchange, Exchange]:
    """A registration the row expects KFR to refuse, with its positive control: the same
    registration for the same customer with the one fault fixed, which KFR must accept."""
    ex = ev.request("main", "add")
    actual = answer(ex, summary)
    if own_fid:
        _own(actual, ex, ev)
    actual.identities = [ex.customer_id or ""]
    actual.check(fault, has_fault, detail)
    control = _control(actual, ev, "add", control_what)
    actual.check("kontrollen gjelder samme kunde", control.customer_id == ex.customer_id, "")
    return actual, ex, control


@step("bad_customer_id", operation="add", status=400, error_code="KFR-005", case_ids=["KFR-13"],
      hints=["ugyldig kunde", "invalid customer", "kontrollsiffer", "check digit", "checksum",
             "malformed customer", "ugyldig fødselsnummer", "invalid national"])
def bad_customer_id(ctx: Any) -> None:
    valid = ctx.new_fodselsnummer()
    ctx.kfr.add(invalid_check_digit(valid))
    ctx.kfr.add(ctx.new_fodselsnummer(), role="control")


@judge("bad_customer_id")
def judge_bad_customer_id(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "add")
    customer = ex.customer_id or ""
    actual = _own(answer(ex, f"Registrering med feil kontrollsiffer ({customer})."), ex, ev)
    actual.identities = [customer]
    actual.check("kunde-ID-en har 11 siffer og feil kontrollsiffer",
                 len(customer) == 11 and customer.isdigit() and classify(customer) is None, customer)
    _control(actual, ev, "add", "registrering med gyldig fødselsnummer")
    return actual


@step("bad_relationship_type", operation="add", status=400, error_code="KFR-009", case_ids=["KFR-14"],
      hints=["relasjonstype", "kundeforholdstype", "relationship type", "relationshiptype",
             "dsopbank"])
def bad_relationship_type(ctx: Any) -> None:
    customer = ctx.new_fodselsnummer()
    ctx.kfr.add(customer, rel_type=BAD_RELATIONSHIP_TYPE)
    ctx.kfr.add(customer, role="control")


@judge("bad_relationship_type")
def judge_bad_relationship_type(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "add")
    actual, _, control = _refused_add(
        ev, f"Registrering med kundeforholdstype {ex.relationship_type}.",
        "relasjonstypen er ikke DSOPBANK", ex.relationship_type not in (None, DSOPBANK),
        str(ex.relationship_type), "samme registrering med DSOPBANK")
    actual.check("kontrollen bruker DSOPBANK", control.relationship_type == DSOPBANK, "")
    return actual


@step("missing_correlation_id", operation="add", status=400, error_code="KFR-004", case_ids=["KFR-15"],
      hints=["correlationid", "correlation id", "correlation-id", "korrelasjons"])
def missing_correlation_id(ctx: Any) -> None:
    customer = ctx.new_fodselsnummer()
    ctx.kfr.add(customer, correlation_id=OMIT)
    ctx.kfr.add(customer, role="control")


@judge("missing_correlation_id")
def judge_missing_correlation_id(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "add")
    actual, _, control = _refused_add(
        ev, "Registrering uten CorrelationID-header.", "forespørselen har ingen CorrelationID",
        ex.header("CorrelationID") is None, "", "samme registrering med CorrelationID")
    actual.check("kontrollen har en gyldig CorrelationID",
                 contract.correlation_id_is_uuid(control.header("CorrelationID")).ok, "")
    return actual


@step("other_bank_fid", operation="add", status=403, error_code="KFR-003", case_ids=["KFR-16"],
      hints=["annen bank", "another bank", "other bank", "different bank", "annet finansforetak",
             "another institution", "different institution", "fremmed fid", "foreign fid",
             "på vegne av", "on behalf of", "annen banks", "another bank's"])
def other_bank_fid(ctx: Any) -> None:
    customer = ctx.new_fodselsnummer()
    ctx.kfr.add(customer, fid=ctx.new_orgnr())
    ctx.kfr.add(customer, role="control")


@judge("other_bank_fid")
def judge_other_bank_fid(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "add")
    return _refused_add(
        ev, f"Registrering på en annen banks fid ({ex.fid}).",
        "fid er et annet gyldig organisasjonsnummer enn bankens",
        ex.fid != ev.bank and classify(ex.fid or "") == "orgnr", str(ex.fid),
        "samme registrering på bankens egen fid", own_fid=False)[0]


@step("no_token", operation="add", status=401, error_code="KFR-001", case_ids=["KFR-17"],
      hints=["uten token", "without token", "without a token", "no token", "ingen token",
             "missing token", "ugyldig token", "invalid token", "authorization", "bearer",
             "unauthenticated", "ikke autentisert", "anonym", "anonymous"])
def no_token(ctx: Any) -> None:
    customer = ctx.new_fodselsnummer()
    ctx.kfr.add(customer, auth=None)
    ctx.kfr.add(customer, auth=_StaticBearer(FORGED_TOKEN), role="check")
    ctx.kfr.add(customer, role="control")


@judge("no_token")
def judge_no_token(ev: CaseEvidence) -> Actual:
    ex = ev.request("main", "add")
    actual, _, _ = _refused_add(
        ev, "Registrering uten Authorization-header.", "forespørselen har ingen Authorization-header",
        not ex.has_authorization, "", "samme registrering med gyldig token")
    forged = ev.request("check", "add")
    actual.check("et ugyldig token avvises også med 401", forged.status == 401 and forged.has_authorization,
                 f"HTTP {forged.status}")
    return actual


@step("missing_scope", operation="add", status=403, error_code="KFR-002", case_ids=["KFR-18"],
      hints=["scope", "skrivetilgang", "write access", "write permission", "lesetilgang",
             "read-only", "read access", "feil scope", "wrong scope", "different scope",
             "annet scope"],
      requires=("alt_scope",),
      without=(
          "Klienten har ikke oppgitt noe annet scope enn bits:kundeforhold.write, og et token "
          "uten skrivescopet kan bare hentes for et scope klienten har. Legg til et annet scope "
          "på integrasjonen i Samarbeidsportalen (et scope virksomheten har tilgang til, f.eks. "
          "et åpent testscope), og kjør raden med --alt-scope SCOPE --resume <kjørings-ID> -k "
          "KFR-18. Går ikke det, gjør kjernesystemet forespørselen med et slikt token, og raden "
          "bekreftes manuelt (--manual); Bits ser den da som bekreftet, ikke bevist."
      ))
def missing_scope(ctx: Any) -> None:
    """Register with a token that has only the alternative scope (the write scope missing)."""
    customer = ctx.new_fodselsnummer()
    try:
        issued = ctx.maskinporten.fetch_token([ctx.config.alt_scope], role="token-alt")
    except AuthError:
        return  # the refusal is in the evidence
    ctx.kfr.add(customer, auth=_StaticBearer(issued.value))
    ctx.kfr.add(customer, role="control")


@judge("missing_scope")
def judge_missing_scope(ev: CaseEvidence) -> Actual:
    issued = ev.request("token-alt", "token")
    if issued.status is not None and 400 <= issued.status < 500:
        code = mp_code(issued)
        raise Precondition(
            f"Maskinporten ga ikke token for det alternative scopet ({code or issued.status}); "
            "velg et scope klienten allerede har i Samarbeidsportalen (--alt-scope) – det er "
            "ikke Bits som gir det",
            "forutsetning: token med et annet scope enn skrivescopet", issued,
        )
    ex = ev.request("main", "add")
    scope = issued.token_claims.get("scope")
    actual = _own(answer(ex, f"Registrering med token som bare har scope «{scope}»."), ex, ev)
    actual.identities = [ex.customer_id or ""]
    actual.check("tokenet mangler scope bits:kundeforhold.write",
                 not contract.token_has_scope(issued.token_claims, WRITE_SCOPE).ok, str(scope))
    actual.check("forespørselen bruker tokenet som ble hentet i raden",
                 ex.token_sha256 is not None and ex.token_sha256 == issued.issued_token_sha256, "")
    control = _control(actual, ev, "add", "samme registrering med bankens skrivetoken")
    actual.check("kontrollen gjelder samme kunde", control.customer_id == ex.customer_id, "")
    return actual


# ---------------------------------------------------------------- manual procedure rows

REGISTRY.manual_step(
    "manual_d3", case_ids=["KFR-21"],
    keywords=[("batch", "fil", "file", "opplast", "upload"),
              ("slett", "avslutt", "delete", "end", "sletting", "utmeld", "remov", "terminat",
               "opphør", "clos", "cancel")],
    hints=["lest inn", "innlest", "processed", "venter", "wait", "d-3"],
    title="Sletting venter til opplastet batch er lest inn (D-3)",
)
REGISTRY.manual_step(
    "manual_a8", case_ids=["KFR-22"],
    keywords=[("kjernesystem", "core", "fagsystem", "kjernebank")],
    hints=["a-8", "løpende", "fortløpende", "automatisk", "continuously", "automatically",
           "up to date", "oppdatert"],
    title="Kjernebanksystemet holder KFR oppdatert (A-8)",
)

# Every automated step has its judge: a step without one could not be verified.
_unjudged = [s.name for s in REGISTRY if not s.manual and s.judge is None]
if _unjudged:  # pragma: no cover - a programming error, caught by the first import
    raise RuntimeError(f"steps without a judge: {', '.join(_unjudged)}")
