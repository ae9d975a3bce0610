"""What each row of the KFR integration-test sheet does.

Each step sets up its own data with fresh synthetic identities, sends the request the row
is about, and reports what KFR answered as an ``Actual``. Whether that answer is right is
decided by the engine from the row's own "Forventet resultat" — not here. Extra conditions
a status code cannot express (the relationship is visible after ingestion, history is kept)
are ``Actual.check`` entries.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx

from conformance.errors import AuthError, TargetEnvironmentError
from conformance.ids import invalid_check_digit
from conformance.steps import Actual, StepRegistry

REGISTRY = StepRegistry()
step = REGISTRY.step

DSOPBANK = "DSOPBANK"
MAX_BATCH_BYTES = 10 * 1024 * 1024


# ---------------------------------------------------------------- helpers

def _answer(response: Any, summary: str = "") -> Actual:
    text = summary
    if response.error_code:
        message = f"{response.error_code}: {response.error_message or ''}".strip(": ")
        text = f"{summary} {message}".strip() if summary else message
    return Actual(status=response.status, error_code=response.error_code, summary=text)


def _own_bank_listed(ctx: Any, response: Any) -> tuple[bool, str]:
    banks = (response.json or {}).get("banks", []) if isinstance(response.json, dict) else []
    own = [b for b in banks if isinstance(b, dict) and b.get("organizationID") == ctx.fid]
    if not own:
        return False, f"eget orgnr {ctx.fid} ikke i svaret ({len(banks)} banker)"
    active = own[0].get("activeAccount")
    shown = "true" if active is True else "false" if active is False else repr(active)
    return True, f"bankName «{own[0].get('bankName')}», activeAccount={shown}"


def _register(ctx: Any, customer_id: str) -> Actual | None:
    """Precondition: a relationship exists. Returns an Actual describing a failed setup."""
    r = ctx.kfr.add(customer_id)
    if r.status not in (200, 201):
        actual = _answer(r, f"Forutsetning feilet: registrering av {customer_id} ga HTTP {r.status}.")
        return actual.check("forutsetning: kundeforholdet kunne registreres", False, f"HTTP {r.status}")
    return None


def _found(ctx: Any, customer_id: str, **period: Any) -> tuple[bool, Any]:
    r = ctx.kfr.lookup(customer_id, **period)
    if r.status != 200:
        return False, r
    ok, _ = _own_bank_listed(ctx, r)
    return ok, r


def _wait_visible(ctx: Any, ids: list[str]) -> list[str]:
    def progress(done: int, total: int) -> None:
        ctx.progress(f"venter på innlesing av batch: {done}/{total} synlige")

    return ctx.kfr.wait_until_visible(ids, on_progress=progress)


# ---------------------------------------------------------------- token

@step("token", operation="token", status=200, case_ids=["KFR-01"],
      title="Hent token fra Maskinporten med scope bits:kundeforhold.write",
      hints=["maskinporten", "tilgangstoken", "access token", "jwt", "virksomhetssertifikat",
             "enterprise certificate", "grant", "bits:kundeforhold.write", "skrivescope",
             "write scope"])
def token(ctx: Any) -> Actual:
    try:
        tok = ctx.maskinporten.fetch_token([ctx.write_scope])
    except AuthError as exc:
        return Actual(status=400, error_code=exc.mp_code, summary=exc.diagnostics())
    scopes = tok.scope.split()
    lifetime = max(0, round(tok.expires_at - time.time()))
    actual = Actual(status=200, summary=f"Token mottatt med scope «{tok.scope}», gyldig i {lifetime} s.")
    return actual.check(f"tokenet har scope {ctx.write_scope}", ctx.write_scope in scopes, tok.scope)


# ---------------------------------------------------------------- single registrations

def _add_new(ctx: Any, customer_id: str, kind: str) -> Actual:
    r = ctx.kfr.add(customer_id)
    actual = _answer(r, f"Registrering av {kind} {customer_id}.")
    if r.status in (200, 201):
        ok, detail = _found(ctx, customer_id)
        actual.check("kundeforholdet finnes ved oppslag etterpå", ok, _detail(detail))
    return actual


def _detail(value: Any) -> str:
    return value if isinstance(value, str) else f"oppslag ga HTTP {getattr(value, 'status', '?')}"


@step("add_fodselsnummer", operation="add", subject="fodselsnummer", status=201, case_ids=["KFR-02"])
def add_fodselsnummer(ctx: Any) -> Actual:
    return _add_new(ctx, ctx.new_fodselsnummer(), "fødselsnummer")


@step("add_d_nummer", operation="add", subject="d-nummer", status=201, case_ids=["KFR-03"])
def add_d_nummer(ctx: Any) -> Actual:
    return _add_new(ctx, ctx.new_d_nummer(), "D-nummer")


@step("add_orgnr", operation="add", subject="orgnr", status=201, case_ids=["KFR-04"])
def add_orgnr(ctx: Any) -> Actual:
    return _add_new(ctx, ctx.new_orgnr(), "organisasjonsnummer")


@step("add_existing", operation="add", status=200, case_ids=["KFR-05"],
      keywords=[("finnes", "eksisterer", "already", "exists", "allerede", "eksisterende",
                 "existing", "igjen", "på nytt", "en gang til", "to ganger", "again",
                 "twice", "once more", "second time", "duplicate", "duplikat", "idempotent")],
      hints=["allerede", "already", "igjen", "på nytt", "again", "twice", "duplicate",
             "duplikat", "uendret", "ingen endring", "unchanged", "no change"])
def add_existing(ctx: Any) -> Actual:
    customer = ctx.new_fodselsnummer()
    if failed := _register(ctx, customer):
        return failed
    return _answer(ctx.kfr.add(customer), f"Ny registrering av eksisterende kundeforhold {customer}.")


@step("lookup_own_bank", operation="lookup", status=200, case_ids=["KFR-06"],
      hints=["egen bank", "own bank", "vår bank", "our bank", "bankens organisasjonsnummer",
             "our organisation number", "i listen", "in the list", "i svaret",
             "in the response", "hvilke banker", "which banks", "banks", "organizationid",
             "organisationid"])
def lookup_own_bank(ctx: Any) -> Actual:
    customer = ctx.new_fodselsnummer()
    if failed := _register(ctx, customer):
        return failed
    r = ctx.kfr.lookup(customer)
    actual = _answer(r, f"Oppslag på {customer}.")
    if r.status == 200:
        ok, detail = _own_bank_listed(ctx, r)
        actual.summary += f" {detail}."
        actual.check("eget organisasjonsnummer finnes i svaret", ok, detail)
        banks = r.json.get("banks", []) if isinstance(r.json, dict) else []
        own = [b for b in banks if isinstance(b, dict) and b.get("organizationID") == ctx.fid]
        if own:
            actual.check("activeAccount er false (KFR)", own[0].get("activeAccount") is False,
                         f"activeAccount={own[0].get('activeAccount')!r}")
            actual.check("bankName er oppgitt", bool(own[0].get("bankName")), "")
    return actual


# ---------------------------------------------------------------- ending relationships

@step("end_relationship", operation="end", status=204, case_ids=["KFR-07"],
      hints=["ikke lenger", "no longer", "avsluttet", "ended", "slettet", "deleted",
             "fjernet", "removed"])
def end_relationship(ctx: Any) -> Actual:
    customer = ctx.new_fodselsnummer()
    if failed := _register(ctx, customer):
        return failed
    return _answer(ctx.kfr.end(customer), f"Avslutning av kundeforhold {customer}.")


@step("history_after_end", operation="history", status=200, case_ids=["KFR-08"],
      hints=["historikk", "history", "periode før", "period before", "perioden før",
             "the period before", "earlier period", "tidligere periode", "past period",
             "fromdate", "todate", "før avslutning", "before the end", "etter avslutning",
             "after the end"])
def history_after_end(ctx: Any) -> Actual:
    """A relationship started in the past (via batch, the only way to give a start date),
    ended today: a period before the end still finds it, a period after does not."""
    customer = ctx.new_fodselsnummer()
    start = dt.date(2020, 1, 15)
    from conformance.kfr import build_batch_text

    r = ctx.kfr.batch(build_batch_text([(customer, start)]))
    if r.status != 201:
        return _answer(r, "Forutsetning feilet: batch med startdato ble ikke mottatt.").check(
            "forutsetning: batch med startdato mottatt", False, f"HTTP {r.status}")
    if _wait_visible(ctx, [customer]):
        return Actual(status=None, summary="Forutsetning feilet: batchen ble ikke lest inn i tide.").check(
            "forutsetning: batchen er lest inn før avslutning (D-3)", False, "")
    ended = ctx.kfr.end(customer)
    if ended.status != 204:
        return _answer(ended, "Forutsetning feilet: avslutning ga ikke 204.").check(
            "forutsetning: kundeforholdet ble avsluttet", False, f"HTTP {ended.status}")
    before = ctx.kfr.lookup(customer, from_date=dt.date(2021, 1, 1), to_date=dt.date(2021, 12, 31))
    actual = _answer(before, f"Oppslag for 2021 på avsluttet kundeforhold {customer}.")
    ok_before = before.status == 200 and _own_bank_listed(ctx, before)[0]
    actual.check("funnet for en periode før avslutningen", ok_before, _own_bank_listed(ctx, before)[1]
                 if before.status == 200 else f"HTTP {before.status}")
    tomorrow = ctx.today() + dt.timedelta(days=1)
    after = ctx.kfr.lookup(customer, from_date=tomorrow, to_date=tomorrow + dt.timedelta(days=30))
    found_after = after.status == 200 and _own_bank_listed(ctx, after)[0]
    actual.check("ikke funnet for en periode etter avslutningen", after.status == 200 and not found_after,
                 f"HTTP {after.status}" + (", eget orgnr i svaret" if found_after else ""))
    return actual


@step("end_missing", operation="end", status=404, error_code="KFR-008", case_ids=["KFR-09"],
      hints=["finnes ikke", "ikke finnes", "does not exist", "doesn't exist", "not there",
             "aldri", "never", "ukjent", "unknown", "non-existent", "nonexistent",
             "ikke registrert", "not registered", "ubrukt", "unused"])
def end_missing(ctx: Any) -> Actual:
    customer = ctx.new_fodselsnummer()
    return _answer(ctx.kfr.end(customer), f"Avslutning av ikke-eksisterende kundeforhold {customer}.")


# ---------------------------------------------------------------- batch

@step("batch_with_dates", operation="batch", status=201, case_ids=["KFR-10"],
      keywords=[("startdato", "start date", "startdatoer", "dato", "date", "datoer", "dates")],
      hints=["startdato", "start date", "egen dato", "own date", "egen startdato",
             "per kunde", "per customer", "each customer", "hver kunde"])
def batch_with_dates(ctx: Any) -> Actual:
    from conformance.kfr import build_batch_text

    entries = [(ctx.new_fodselsnummer(), dt.date(2019, 11, 8)),
               (ctx.new_orgnr(), dt.date(2011, 11, 5)),
               (ctx.new_d_nummer(), dt.date(2019, 10, 15))]
    r = ctx.kfr.batch(build_batch_text(entries))
    actual = _answer(r, f"Batch med {len(entries)} kunder med startdato.")
    if r.status != 201:
        return actual
    missing = _wait_visible(ctx, [c for c, _ in entries])
    actual.check("alle kunder i batchen er synlige etter innlesing", not missing,
                 f"mangler: {', '.join(missing)}" if missing else "")
    customer, start = entries[0]
    before_start = start - dt.timedelta(days=30)
    found_before, _ = _found(ctx, customer, from_date=before_start, to_date=start - dt.timedelta(days=1))
    found_after, _ = _found(ctx, customer, from_date=start, to_date=start + dt.timedelta(days=1))
    actual.check("startdatoen fra filen er brukt", found_after and not found_before,
                 f"funnet før start: {found_before}, funnet fra start: {found_after}")
    return actual


@step("batch_without_dates", operation="batch", status=201, case_ids=["KFR-11"],
      keywords=[("uten", "without", "ingen", "no date", "no dates", "no start date",
                 "i dag", "today", "dagens dato", "omitted", "utelatt")],
      hints=["uten dato", "uten startdato", "without date", "without start date", "no date",
             "no dates", "ingen dato", "i dag", "today", "dagens dato"])
def batch_without_dates(ctx: Any) -> Actual:
    from conformance.kfr import build_batch_text

    customers = [ctx.new_fodselsnummer(), ctx.new_orgnr()]
    r = ctx.kfr.batch(build_batch_text([(c, None) for c in customers]))
    actual = _answer(r, f"Batch med {len(customers)} kunder uten startdato.")
    if r.status != 201:
        return actual
    missing = _wait_visible(ctx, customers)
    actual.check("alle kunder i batchen er synlige etter innlesing", not missing,
                 f"mangler: {', '.join(missing)}" if missing else "")
    yesterday = ctx.today() - dt.timedelta(days=1)
    found_yesterday, _ = _found(ctx, customers[0], from_date=yesterday - dt.timedelta(days=7), to_date=yesterday)
    actual.check("startdato er dagens dato (ikke funnet for i går)", not found_yesterday, "")
    return actual


@step("batch_bad_date", operation="batch", status=400, error_code="KFR-010", case_ids=["KFR-12"],
      hints=["ugyldig dato", "invalid date", "feil dato", "bad date", "wrong date",
             "malformed date", "datoformat", "date format", "feil format", "wrong format"])
def batch_bad_date(ctx: Any) -> Actual:
    good, bad = ctx.new_orgnr(), ctx.new_fodselsnummer()
    r = ctx.kfr.batch(f"{good}#2019-11-08,{bad}#2019-13-45")
    actual = _answer(r, "Batch der én kunde har ugyldig dato (2019-13-45).")
    if r.status == 400:
        found, _ = _found(ctx, good, from_date=dt.date(2019, 11, 8), to_date=ctx.today())
        actual.check("ingenting fra den avviste filen er lagret", not found, "")
    return actual


@step("batch_bad_boundary", operation="batch", status=403, case_ids=["KFR-19"],
      keywords=[("boundary", "grense", "skilletegn", "skillelinje")],
      hints=["boundary", "anførselstegn", "hermetegn", "quoted", "quotes", "content-type"])
def batch_bad_boundary(ctx: Any) -> Actual:
    customer = ctx.new_orgnr()
    r = ctx.kfr.batch(customer, quote_boundary=True)
    return _answer(r, "Batch med boundary i anførselstegn i Content-Type.")


@step("batch_too_large", operation="batch", status=413, case_ids=["KFR-20"],
      hints=["10 mb", "for stor", "too large", "too big", "størrelse", "size limit",
             "maksimal", "maximum", "større enn", "larger than", "bigger than", "exceed",
             "overstiger", "over grensen"])
def batch_too_large(ctx: Any) -> Actual:
    one = ctx.new_orgnr()
    count = MAX_BATCH_BYTES // (len(one) + 1) + 1000
    body = ",".join([one] * count)
    r = ctx.kfr.batch(body)
    return _answer(r, f"Batch på {len(body) / 1_048_576:.1f} MB.")


# ---------------------------------------------------------------- errors

@step("bad_customer_id", operation="add", status=400, error_code="KFR-005", case_ids=["KFR-13"],
      hints=["ugyldig kunde", "invalid customer", "kontrollsiffer", "check digit", "checksum",
             "malformed customer", "ugyldig fødselsnummer", "invalid national"])
def bad_customer_id(ctx: Any) -> Actual:
    customer = invalid_check_digit(ctx.new_fodselsnummer())
    return _answer(ctx.kfr.add(customer), f"Registrering med feil kontrollsiffer ({customer}).")


@step("bad_relationship_type", operation="add", status=400, error_code="KFR-009", case_ids=["KFR-14"],
      hints=["relasjonstype", "kundeforholdstype", "relationship type", "relationshiptype",
             "dsopbank"])
def bad_relationship_type(ctx: Any) -> Actual:
    return _answer(ctx.kfr.add(ctx.new_fodselsnummer(), rel_type="DSOPFOO"),
                   "Registrering med kundeforholdstype DSOPFOO.")


@step("missing_correlation_id", operation="add", status=400, error_code="KFR-004", case_ids=["KFR-15"],
      hints=["correlationid", "correlation id", "correlation-id", "korrelasjons"])
def missing_correlation_id(ctx: Any) -> Actual:
    from conformance.kfr import OMIT

    return _answer(ctx.kfr.add(ctx.new_fodselsnummer(), correlation_id=OMIT),
                   "Registrering uten CorrelationID-header.")


@step("other_bank_fid", operation="add", status=403, error_code="KFR-003", case_ids=["KFR-16"],
      hints=["annen bank", "another bank", "other bank", "different bank", "annet finansforetak",
             "another institution", "different institution", "fremmed fid", "foreign fid",
             "på vegne av", "on behalf of", "annen banks", "another bank's"])
def other_bank_fid(ctx: Any) -> Actual:
    other = ctx.new_orgnr()
    return _answer(ctx.kfr.add(ctx.new_fodselsnummer(), fid=other),
                   f"Registrering på en annen banks fid ({other}).")


@step("no_token", operation="add", status=401, error_code="KFR-001", case_ids=["KFR-17"],
      hints=["uten token", "without token", "without a token", "no token", "ingen token",
             "missing token", "ugyldig token", "invalid token", "authorization", "bearer",
             "unauthenticated", "ikke autentisert", "anonym", "anonymous"])
def no_token(ctx: Any) -> Actual:
    customer = ctx.new_fodselsnummer()
    actual = _answer(ctx.kfr.add(customer, auth=None), "Registrering uten Authorization-header.")
    forged = ctx.kfr.add(customer, auth=_StaticBearer("eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImJpdHMifQ."))
    actual.check("et ugyldig token avvises også med 401", forged.status == 401, f"HTTP {forged.status}")
    return actual


@step("missing_scope", operation="add", status=403, error_code="KFR-002", case_ids=["KFR-18"],
      hints=["scope", "skrivetilgang", "write access", "write permission", "lesetilgang",
             "read-only", "read access", "feil scope", "wrong scope", "different scope",
             "annet scope"])
def missing_scope(ctx: Any) -> Actual:
    scope = ctx.config.alt_scope
    if not scope:
        raise TargetEnvironmentError(
            "Testen trenger et token uten scope bits:kundeforhold.write, men klienten har ikke "
            "oppgitt noe annet scope.",
            hint="Angi et annet scope klienten har i Maskinporten med --alt-scope (eller alt_scope i profilen).",
        )
    auth = ctx.auth_for([scope])
    return _answer(ctx.kfr.add(ctx.new_fodselsnummer(), auth=auth),
                   f"Registrering med token som bare har scope «{scope}».")


class _StaticBearer(httpx.Auth):
    """Sends a fixed bearer token: here an unsigned one that KFR must refuse."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


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
