"""The one judge: a row's verdict as a pure function of the sheet row and its exchanges.

The runner records; this module decides; ``verify`` runs the very same code on the pack's
evidence. Nothing here reads a clock, a file or the network: a step's *act* half sends
requests and labels each with a role ("main", "setup", "control", "poll", …); its *judge*
half reads the recorded exchanges through :class:`CaseEvidence` and returns an
:class:`~conformance.steps.Actual`; :func:`decide` compares that with the sheet's
expectation.

Who answered matters. Bits' test environment is an API gateway in front of KFR, so each
answer is attributed (:func:`answered_by`): **kfr** (KFR's JSON error shape, or a success of
the operation), **gateway** (the published ``statusCode``/``message`` shape, or 429/502/503/504
without KFR's shape), **maskinporten** (token requests), **other** (an HTML page or other
text: a firewall or proxy), **none** (no answer: the connection failed). How each row is
judged in each case:

- an answer from *other*, a 5xx, a 429 or no answer at all is the environment's problem:
  the row is **Feil i miljø**, never passed and never failed;
- the gateway's documented ``ErrorResponse401`` satisfies an expected 401 KFR-001 (KFR API
  1.1.2 documents it as the API's answer to a missing or invalid token); any other gateway
  answer where the sheet names a KFR error code fails the row, saying who answered;
- a negative row (the sheet expects a refusal) carries a positive control under the same
  conditions (same request, the one thing fixed): if the control is refused as well, the
  refusal was not shown to be for the row's reason and the row fails.

A row the bank's core system performed (``--core-system``) is judged by the same step
judge, plus the core system's conditions (:func:`core_conditions`): the requests it was
asked for came through the recording gateway and were answered by KFR, each carried a token
issued to the bank (``consumer`` 0192:<orgnr>), none broke a contract rule (the verdicts the
gateway recorded live, and the same rules replayed on the row's exchanges), and the tool
looked KFR's state up afterwards. A request the core system never sent fails the row under
the rule ``expected-request-seen``.

Retries never hide an answer: within one attempt a logical request may be repeated only
after an environment failure (or a 401 answered by renewing the token); a row may be tried
again, with fresh customers, only after an attempt that ended in an environment failure.
Anything else in the evidence is reported as such.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from conformance.models import Expectation, Outcome
from conformance.steps import Actual, CoreConditions

__all__ = [
    "CORE_OTHER_ROLE",
    "CaseEvidence",
    "Decision",
    "Exchange",
    "Incomplete",
    "Precondition",
    "answer",
    "answered_by",
    "compare",
    "core_conditions",
    "core_customers",
    "decide",
    "environment_problem",
    "never_reached_kfr",
]

OSLO = ZoneInfo("Europe/Oslo")
GATEWAY_STATUSES = frozenset({429, 502, 503, 504})
# Roles whose exchanges are many by design (ingestion polls), belong to the session, or are
# requests the core system sent that the row did not ask for (its own lookups, say).
CORE_OTHER_ROLE = "core-other"
UNCOUNTED_ROLES = frozenset({"poll", "token", CORE_OTHER_ROLE})
PARTY_NB = {
    "kfr": "KFR",
    "gateway": "API-gatewayen",
    "maskinporten": "Maskinporten",
    "other": "noe annet enn KFR (brannmur, proxy eller lignende)",
    "none": "ingen (forbindelsen feilet)",
}
_FID = re.compile(r"/financialInstitutions/([^/]*)")
_TYPE = re.compile(r"/relationshipType/([^/]*)")


class Precondition(Exception):
    """A row's own setup was refused (e.g. the relationship to end could not be added): the
    row fails, naming the precondition, with the refused exchange's status."""

    def __init__(self, reason: str, description: str, ex: Exchange | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description
        self.exchange = ex


class Incomplete(Exception):
    """The evidence lacks what the row needs. ``environment``: because the environment
    failed (the row is an error), not because the bank or KFR did something wrong."""

    def __init__(self, reason: str, *, environment: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.environment = environment


# ---------------------------------------------------------------- one exchange


@dataclass(frozen=True)
class Exchange:
    """A read-only view of one recorded exchange (the dict in ``evidence/<case>.json``)."""

    raw: dict[str, Any]

    @property
    def seq(self) -> int:
        value = self.raw.get("seq")
        return value if isinstance(value, int) else 0

    @property
    def operation(self) -> str:
        return str(self.raw.get("operation") or "other")

    @property
    def role(self) -> str:
        return str(self.raw.get("role") or ("token" if self.operation == "token" else "main"))

    @property
    def attempt(self) -> int:
        value = self.raw.get("attempt")
        return value if isinstance(value, int) and value > 0 else 1

    @property
    def session(self) -> int:
        value = self.raw.get("session")
        return value if isinstance(value, int) and value > 0 else 1

    @property
    def correlation_id(self) -> str | None:
        value = self.raw.get("correlation_id")
        return value if isinstance(value, str) else None

    @property
    def request(self) -> dict[str, Any]:
        value = self.raw.get("request")
        return value if isinstance(value, dict) else {}

    @property
    def response(self) -> dict[str, Any] | None:
        value = self.raw.get("response")
        return value if isinstance(value, dict) else None

    @property
    def method(self) -> str:
        return str(self.request.get("method") or "").upper()

    @property
    def url(self) -> str:
        value = self.request.get("url")
        return value if isinstance(value, str) else ""

    @property
    def path(self) -> str:
        try:
            return urlsplit(self.url).path
        except ValueError:
            return ""

    @property
    def host(self) -> str:
        try:
            return (urlsplit(self.url).hostname or "").lower()
        except ValueError:
            return ""

    @property
    def query(self) -> dict[str, str]:
        try:
            parsed = parse_qs(urlsplit(self.url).query, keep_blank_values=True)
        except ValueError:
            return {}
        return {key: values[-1] for key, values in parsed.items()}

    def header(self, name: str) -> str | None:
        return _header(self.request.get("headers"), name)

    def response_header(self, name: str) -> str | None:
        return _header((self.response or {}).get("headers"), name)

    @property
    def customer_id(self) -> str | None:
        return self.header("CustomerID")

    @property
    def fid(self) -> str | None:
        match = _FID.search(self.path)
        return match.group(1) if match else None

    @property
    def relationship_type(self) -> str | None:
        match = _TYPE.search(self.path)
        return match.group(1) if match else None

    @property
    def token_sha256(self) -> str | None:
        value = self.request.get("token_sha256")
        return value if isinstance(value, str) else None

    @property
    def has_authorization(self) -> bool:
        return self.header("Authorization") is not None

    @property
    def status(self) -> int | None:
        value = (self.response or {}).get("status")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def transport_error(self) -> str | None:
        value = self.raw.get("error")
        return value if isinstance(value, str) and value else None

    @property
    def body(self) -> Any:
        return (self.response or {}).get("body")

    @property
    def json(self) -> Any:
        body = self.body
        if not isinstance(body, str) or not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    @property
    def error_code(self) -> str | None:
        data = self.json
        code = data.get("errorCode") if isinstance(data, dict) else None
        return str(code) if code not in (None, "") else None

    @property
    def error_message(self) -> str | None:
        data = self.json
        if not isinstance(data, dict):
            return None
        value = data.get("errorMessage") or data.get("message") or data.get("error_description")
        return str(value) if value not in (None, "") else None

    @property
    def request_body(self) -> Any:
        return self.request.get("body")

    @property
    def request_body_size(self) -> int:
        body = self.request_body
        if isinstance(body, dict) and isinstance(body.get("size"), int):
            return body["size"]
        return len(body.encode("utf-8")) if isinstance(body, str) else 0

    @property
    def token_claims(self) -> dict[str, Any]:
        value = (self.response or {}).get("token_claims")
        return value if isinstance(value, dict) else {}

    @property
    def issued_token_sha256(self) -> str | None:
        value = (self.response or {}).get("token_sha256")
        return value if isinstance(value, str) else None

    @property
    def started_at(self) -> dt.datetime | None:
        value = self.raw.get("started_at")
        if not isinstance(value, str):
            return None
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    @property
    def oslo_date(self) -> dt.date | None:
        moment = self.started_at
        return moment.astimezone(OSLO).date() if moment else None

    def describe(self) -> str:
        status = self.status if self.status is not None else "uten svar"
        return f"{self.method} {self.path} (#{self.seq}, {self.role}) → {status}"

    # ---- what the recording gateway adds to the core system's requests

    @property
    def from_gateway(self) -> bool:
        """Sent by the bank's core system and recorded by the recording gateway."""
        return self.raw.get("source") == "gateway"

    @property
    def sent_token_claims(self) -> dict[str, Any]:
        """The identifying claims of the bearer token the request carried, as the gateway
        decoded them (never the token)."""
        value = self.raw.get("token_claims")
        return value if isinstance(value, dict) else {}

    @property
    def injected(self) -> str | None:
        """The robustness injection the gateway answered with instead of KFR, if any."""
        value = self.raw.get("injected")
        return value if isinstance(value, str) and value else None

    @property
    def recorded_verdicts(self) -> list[dict[str, Any]]:
        """The contract verdicts the gateway recorded for this request as it arrived."""
        value = self.raw.get("contract")
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


# ---------------------------------------------------------------- who answered


def answered_by(ex: Exchange) -> str:
    """Which party gave the answer, from its shape (see the module docstring)."""
    if ex.response is None:
        return "none"
    content_type = (ex.response_header("Content-Type") or "").lower()
    body = ex.body
    text = body.get("head", "") if isinstance(body, dict) else (body or "")
    looks_html = "html" in content_type or str(text).lstrip()[:1] == "<"
    if looks_html:
        return "other"
    if ex.operation == "token":
        return "maskinporten"
    data = ex.json
    if isinstance(data, dict) and data.get("errorCode"):
        return "kfr"
    if isinstance(data, dict) and "statusCode" in data and "message" in data:
        return "gateway"
    status = ex.status or 0
    if status in GATEWAY_STATUSES:
        return "gateway"
    if 200 <= status < 300 or not str(text).strip():
        return "kfr"
    return "other"


def is_gateway_401(ex: Exchange) -> bool:
    """KFR API 1.1.2's ``ErrorResponse401``: the API's answer to a missing or invalid token."""
    data = ex.json
    return (
        ex.status == 401
        and isinstance(data, dict)
        and data.get("statusCode") == 401
        and isinstance(data.get("message"), str)
    )


def never_reached_kfr(ex: Exchange) -> bool:
    """The gateway in front of KFR turned this request away before forwarding it: throttled
    (429) or not authenticated (its own 401 shape). Any other answer, or none, may have
    come after KFR saw the request."""
    return ex.status == 429 or is_gateway_401(ex)


def environment_problem(ex: Exchange) -> str | None:
    """Why this exchange shows the environment failing, or None when it answered."""
    if ex.transport_error or ex.response is None:
        return f"ingen svar: {ex.transport_error or 'forbindelsen ble brutt'}"
    status = ex.status or 0
    party = answered_by(ex)
    if status == 429:
        return f"{PARTY_NB[party]} strupet forespørselen (HTTP 429)"
    if status >= 500:
        return f"{PARTY_NB[party]} svarte HTTP {status}"
    if party == "other":
        return f"svaret (HTTP {status}) kom fra {PARTY_NB['other']}"
    return None


# ---------------------------------------------------------------- the evidence of one attempt


@dataclass
class CaseEvidence:
    """One attempt at a row: its exchanges in recorded order, and the bank it ran as.
    ``core``: the row was performed by the bank's core system, under these conditions."""

    exchanges: list[Exchange]
    bank: str
    attempt: int = 1
    core: CoreConditions | None = None

    @classmethod
    def attempts(cls, raw: Iterable[dict[str, Any]], bank: str,
                 core: CoreConditions | None = None) -> list[CaseEvidence]:
        views = sorted((Exchange(r) for r in raw if isinstance(r, dict)), key=lambda e: e.seq)
        numbers = sorted({v.attempt for v in views}) or [1]
        return [cls([v for v in views if v.attempt == n], bank, n, core) for n in numbers]

    @staticmethod
    def sessions(raw: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """A resumed run's exchanges per session, oldest first (one list for a plain run)."""
        items = [r for r in raw if isinstance(r, dict)]
        numbers = sorted({Exchange(r).session for r in items}) or [1]
        return [[r for r in items if Exchange(r).session == n] for n in numbers]

    # ---- logical requests

    def sent(self, role: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.role == role]

    def request(self, role: str, operation: str | None = None) -> Exchange:
        """The final exchange of the logical request ``role``. Raises :class:`Incomplete`
        when it is missing, is another operation, or the environment failed it."""
        found = self.optional(role, operation)
        if found is None:
            raise Incomplete(f"beviset mangler forespørselen «{role}»")
        problem = environment_problem(found)
        if problem:
            raise Incomplete(f"{_ROLE_NB.get(role, role)}: {problem}", environment=True)
        return found

    def optional(self, role: str, operation: str | None = None) -> Exchange | None:
        tries = self.sent(role)
        if not tries:
            return None
        final = tries[-1]
        if operation is not None and final.operation != operation:
            raise Incomplete(
                f"forespørselen «{role}» er {OPERATION_NB.get(final.operation, final.operation)}, "
                f"men raden gjelder {OPERATION_NB.get(operation, operation)} ({final.describe()})"
            )
        return final

    def repeated_without_cause(self) -> str | None:
        """A logical request repeated after a real answer: a retry that could hide one."""
        roles: dict[str, list[Exchange]] = {}
        for ex in self.exchanges:
            if ex.role not in UNCOUNTED_ROLES:
                roles.setdefault(ex.role, []).append(ex)
        for role, tries in roles.items():
            for earlier, later in pairwise(tries):
                if environment_problem(earlier):
                    continue
                renewed = earlier.status == 401 and later.token_sha256 not in (None, earlier.token_sha256)
                if renewed:
                    continue
                return (
                    f"forespørselen «{role}» ble sendt på nytt etter et gyldig svar "
                    f"({earlier.describe()}); bare svar fra et miljø som feilet kan gjentas"
                )
        return None

    # ---- what lookups showed

    def lookups_of(self, customer: str, roles: Sequence[str] = ("poll", "check", "main")) -> list[Exchange]:
        return [
            e for e in self.exchanges
            if e.operation == "lookup" and e.customer_id == customer and e.role in roles
            and e.fid == self.bank and environment_problem(e) is None
        ]

    def own_listed(self, ex: Exchange) -> tuple[bool, str]:
        """Whether a lookup answer lists the bank itself, and a Norwegian detail."""
        data = ex.json
        banks = data.get("banks", []) if isinstance(data, dict) else []
        banks = banks if isinstance(banks, list) else []
        own = [b for b in banks if isinstance(b, dict) and b.get("organizationID") == self.bank]
        if ex.status != 200:
            return False, f"oppslaget ga HTTP {ex.status}"
        if not own:
            return False, f"eget orgnr {self.bank} ikke i svaret ({len(banks)} banker)"
        active = own[0].get("activeAccount")
        shown = "true" if active is True else "false" if active is False else repr(active)
        return True, f"bankName «{own[0].get('bankName')}», activeAccount={shown}"

    def visible(self, customer: str) -> bool:
        """Some lookup of today's relationships (no period given) listed the bank. When none
        did because the environment failed the last try (5xx, 429, no answer), the row
        cannot be judged: :class:`Incomplete` (environment) is raised."""
        if any(
            self.own_listed(e)[0] for e in self.lookups_of(customer) if not e.query
            or set(e.query) <= {"fromDate"}
        ):
            return True
        tries = [e for e in self.exchanges if e.operation == "lookup" and e.customer_id == customer
                 and e.role in ("poll", "check")]
        if tries and (problem := environment_problem(tries[-1])):
            raise Incomplete(f"venting på innlesing: {problem}", environment=True)
        return False


_ROLE_NB = {"main": "hovedforespørselen", "setup": "forutsetningen", "control": "kontrollen",
            "check": "etterkontrollen", "poll": "venting på innlesing"}
OPERATION_NB = {
    "token": "tokenforespørsel", "add": "registrering (POST)", "end": "avslutning (DELETE)",
    "batch": "batch-opplasting", "lookup": "oppslag på egen bank",
    "agency_lookup": "oppslag for etater", "account_lookup": "kontooppslag", "other": "ukjent",
}


def answer(ex: Exchange, summary: str = "") -> Actual:
    """The row's Actual from its main exchange: status, error code, who answered."""
    text = summary
    if ex.error_code or ex.error_message:
        message = f"{ex.error_code or ''}: {ex.error_message or ''}".strip(": ")
        text = f"{summary} {message}".strip() if summary else message
    party = answered_by(ex)
    if party != "kfr":
        text = f"{text} (besvart av {PARTY_NB[party]})".strip()
    return Actual(status=ex.status, error_code=ex.error_code, summary=text, answered_by=party,
                  gateway_401=is_gateway_401(ex))


KFR_INGEST_RATE = 250.0  # relationships per second, from the KFR FAQ
_MP_CODE = re.compile(r"MP-\d{3}")


def mp_code(ex: Exchange) -> str | None:
    """Maskinporten's error code (``MP-110`` …) from a refused token request."""
    data = ex.json if isinstance(ex.json, dict) else {}
    text = " ".join(str(data.get(k) or "") for k in ("error_uri", "error_description", "error"))
    match = _MP_CODE.search(text)
    if match:
        return match.group(0)
    return "MP-200" if data.get("error") == "invalid_scope" else None


def _form_parts(ex: Exchange) -> dict[str, str] | None:
    """The fields of a recorded multipart request body (None when only its hash was kept)."""
    body = ex.request_body
    if not isinstance(body, str):
        return None
    content_type = ex.header("Content-Type") or ""
    match = re.search(r"boundary=\"?([^\";]+)", content_type)
    if not match:
        return None
    parts: dict[str, str] = {}
    for chunk in body.split("--" + match.group(1)):
        head, sep, value = chunk.partition("\r\n\r\n")
        name = re.search(r'name="([^"]+)"', head)
        if sep and name:
            parts[name.group(1)] = value[:-2] if value.endswith("\r\n") else value
    return parts


def batch_field(ex: Exchange, name: str) -> str | None:
    parts = _form_parts(ex)
    return None if parts is None else parts.get(name)


def batch_entries(ex: Exchange) -> list[tuple[str, str | None]] | None:
    """``[(customer id, start date text or None)]`` of a recorded batch upload, in order;
    None when the body was too large to keep (only its size and SHA-256 are recorded)."""
    customers = batch_field(ex, "customers")
    if customers is None:
        return None
    entries: list[tuple[str, str | None]] = []
    for item in customers.split(","):
        item = item.strip()
        if item:
            customer, sep, date = item.partition("#")
            entries.append((customer, date if sep else None))
    return entries


# ---------------------------------------------------------------- deciding a row


@dataclass
class Decision:
    outcome: Outcome
    message: str
    actual: Actual
    attempts: int = 1
    notes: list[str] = field(default_factory=list)


JudgeFunc = Callable[[CaseEvidence], Actual]


def _judge_attempt(judge: JudgeFunc, ev: CaseEvidence) -> Actual:
    """The step's judge on one attempt, with incomplete evidence turned into an answer; for
    a row the core system performed, with the core system's conditions added."""
    if ev.core is not None and (missing := _core_request_missing(ev)) is not None:
        return missing
    repeated = ev.repeated_without_cause()
    if repeated:
        if ev.core is not None:
            return _core_repeated(ev, repeated)
        return Actual(status=None, summary="Beviset viser en gjentatt forespørsel.").check(
            "hver forespørsel er sendt én gang, eller gjentatt bare etter feil i miljøet",
            False, repeated)
    actual = _step_judgement(judge, ev)
    if ev.core is not None and not actual.environment:
        core_conditions(ev, actual)
    return actual


def _step_judgement(judge: JudgeFunc, ev: CaseEvidence) -> Actual:
    try:
        return judge(ev)
    except Precondition as exc:
        ex = exc.exchange
        actual = answer(ex, f"Forutsetning feilet: {exc.reason}.") if ex is not None else Actual(
            status=None, summary=f"Forutsetning feilet: {exc.reason}.")
        return actual.check(exc.description, False, exc.reason)
    except Incomplete as exc:
        refused = _refused_token(ev)
        if refused is not None:
            return refused
        actual = Actual(status=None, summary="Raden ble ikke fullført.")
        if exc.environment:
            actual.environment = exc.reason
            return actual
        # The evidence ends with the environment failing (a token request Maskinporten could
        # not answer, say): the row was cut short there, not by the bank or KFR.
        cut_short = environment_problem(ev.exchanges[-1]) if ev.exchanges else None
        if cut_short:
            actual.environment = f"{_ROLE_NB.get(ev.exchanges[-1].role, ev.exchanges[-1].role)}: {cut_short}"
            return actual
        return actual.check("beviset viser forespørslene raden krever", False, exc.reason)


# ---------------------------------------------------------------- rows the core system performed

CORE_RULE_NB = "kjernesystemet følger KFRs kontrakt"


def _core_exchanges(ev: CaseEvidence) -> list[Exchange]:
    roles = set(ev.core.roles) if ev.core is not None else set()
    return [e for e in ev.exchanges if e.role in roles or (e.from_gateway and e.role != CORE_OTHER_ROLE)]


def _core_request_missing(ev: CaseEvidence) -> Actual | None:
    """The core system was asked for a request and nothing came: the rule
    ``expected-request-seen`` fails the row (the tool never sends it in its place)."""
    from conformance import contract

    assert ev.core is not None
    for role, operation in ev.core.requests:
        sent = [e for e in ev.sent(role) if e.from_gateway]
        if sent:
            if not (sent[-1].status is not None and 200 <= sent[-1].status < 300):
                return None  # refused: the row's later requests were never asked for
            continue
        what = f"{OPERATION_NB.get(operation, operation)} («{role}»)"
        rule = contract.RULES["expected-request-seen"]
        actual = Actual(status=None, summary=f"Kjernesystemet sendte ingen {what} gjennom gatewayen.")
        return actual.check(f"{rule.title} [{rule.id}]", False,
                            f"kjernesystemet sendte ingen {what} til KFR gjennom opptaksgatewayen")
    return None


def _core_repeated(ev: CaseEvidence, repeated: str) -> Actual:
    """A request the core system sent again after KFR had answered it: an add answered 200
    («finnes allerede») sent again breaks ``already-exists-accepted``; any other repeat is
    named as it is."""
    from conformance import contract

    actual = Actual(status=None, summary="Kjernesystemet sendte samme forespørsel på nytt etter et gyldig svar.")
    for role in dict.fromkeys(e.role for e in _core_exchanges(ev)):
        tries = ev.sent(role)
        answered = [e for e in tries if e.status == 200 and e.operation == "add"]
        if answered:
            first = answered[0]
            repeats = sum(1 for e in tries if e.seq > first.seq)
            verdict = contract.already_exists_accepted(f"registreringen av {first.customer_id}", repeats)
            if not verdict.ok:
                return actual.check(f"{verdict.rule.title} [{verdict.rule.id}]", False, verdict.reason)
    return actual.check("kjernesystemet sender hver forespørsel én gang, eller på nytt bare etter feil i miljøet",
                        False, repeated)


def core_conditions(ev: CaseEvidence, actual: Actual) -> Actual:
    """Add to ``actual`` what a row the core system performed must also show (see the
    module docstring). Pure: reads only the evidence."""
    core = _core_exchanges(ev)
    bank = ev.bank
    for ex in core:
        where = f"«{ex.role}» #{ex.seq}"
        if not ex.from_gateway:
            actual.check("forespørselen kom fra kjernesystemet gjennom opptaksgatewayen", False,
                         f"{where} ble sendt av verktøyet, ikke av kjernesystemet")
            continue
        if ex.injected or ex.raw.get("answered_by") not in (None, "upstream"):
            actual.check("svaret kom fra KFR", False,
                         f"{where} ble besvart av opptaksgatewayen ({ex.injected or ex.raw.get('answered_by')})")
        _core_token(actual, ex, bank, where)
    _core_contract(actual, [e for e in core if e.from_gateway], bank)
    _core_state_check(actual, ev, core)
    return actual


def _core_token(actual: Actual, ex: Exchange, bank: str, where: str) -> None:
    from conformance import contract

    claims = ex.sent_token_claims
    if not claims:
        actual.check("kjernesystemet sendte bankens eget token", False, f"{where} hadde ikke et lesbart Bearer-token")
        return
    verdict = contract.token_consumer_is_bank(claims, bank)
    if not verdict.ok:
        actual.check(f"kjernesystemet sendte bankens eget token [{verdict.rule.id}]", False,
                     f"{where}: {verdict.reason}")


def _core_contract(actual: Actual, core: list[Exchange], bank: str) -> None:
    """Every rule the core system's requests broke: as the gateway judged them live (with
    the whole run's history: a CorrelationID or token reused across rows), and the same
    rules replayed on the row's own exchanges (what a pack can always re-derive)."""
    from conformance import contract

    found: dict[str, str] = {}
    for ex in core:
        for verdict in ex.recorded_verdicts:
            if verdict.get("ok") is False and str(verdict.get("rule")) not in found:
                found[str(verdict.get("rule"))] = str(verdict.get("reason") or "")
    if core:
        issuer = str(core[0].sent_token_claims.get("iss") or "")
        session = contract.ContractSession(bank, issuer=issuer)
        for verdicts in session.replay([e.raw for e in core]):
            for verdict in verdicts:
                if not verdict.ok and verdict.rule.id not in found:
                    found[verdict.rule.id] = verdict.reason
    for rule_id, reason in found.items():
        rule = contract.RULES.get(rule_id)
        title = rule.title if rule is not None else rule_id
        actual.check(f"{CORE_RULE_NB}: {title} [{rule_id}]", False, reason)


def _core_state_check(actual: Actual, ev: CaseEvidence, core: list[Exchange]) -> None:
    """KFR's state after the core system's requests, as the tool looked it up. Only asked
    of a row whose requests KFR accepted: after a refusal there is no state to show."""
    finals = [ev.sent(role)[-1] for role in dict.fromkeys(e.role for e in core)]
    if not finals or not all(e.status is not None and 200 <= e.status < 300 for e in finals):
        return
    customers = core_customers(core)
    checks = [
        e for e in ev.exchanges
        if not e.from_gateway and e.operation == "lookup" and e.role.startswith("check")
        and e.fid == ev.bank and e.customer_id in customers
    ]
    if not checks:
        actual.check("verktøyet kontrollerte KFRs tilstand etter kjernesystemet (oppslag på egen bank)", False,
                     "beviset har ikke noe etterkontrolloppslag på kundene kjernesystemet meldte")


def core_customers(exchanges: Iterable[Exchange]) -> set[str]:
    """The customers the core system's requests were about (headers and batch files)."""
    customers: set[str] = set()
    for ex in exchanges:
        if ex.customer_id:
            customers.add(ex.customer_id)
        if ex.operation == "batch":
            customers.update(c for c, _ in batch_entries(ex) or [])
    return customers


def _refused_token(ev: CaseEvidence) -> Actual | None:
    """A row cut short because Maskinporten refused the bank's token request: the bank's
    setup (client, certificate, scope) is wrong, and the refusal says how."""
    from conformance.auth import mp_advice

    for ex in ev.exchanges:
        if ex.operation == "token" and ex.status is not None and 400 <= ex.status < 500:
            code = mp_code(ex)
            actual = Actual(
                status=ex.status, error_code=code, answered_by="maskinporten",
                summary=f"Maskinporten avviste tokenforespørselen ({code or ex.status}).",
            )
            return actual.check(
                "Maskinporten utsteder token til banken", False,
                f"{ex.error_message or ''} {mp_advice(code, _json_field(ex, 'error'))}".strip(),
            )
    return None


def _json_field(ex: Exchange, name: str) -> str | None:
    data = ex.json
    value = data.get(name) if isinstance(data, dict) else None
    return str(value) if value else None


def decide(expected: Expectation, judge: JudgeFunc, exchanges: Iterable[dict[str, Any]],
           bank: str, *, core: CoreConditions | None = None) -> Decision:
    """A row's verdict from its sheet expectation and its recorded exchanges. In a resumed
    run the latest session that ran the row decides; earlier sessions stay in the evidence
    and are named in the notes. ``core``: the row was performed by the bank's core system
    (its step's :class:`~conformance.steps.CoreConditions`)."""
    sessions = CaseEvidence.sessions(exchanges)
    earlier = [_decide_session(expected, judge, part, bank, core) for part in sessions[:-1]]
    decision = _decide_session(expected, judge, sessions[-1], bank, core)
    for number, old in enumerate(earlier, start=1):
        decision.notes.insert(number - 1, f"Økt {number}: {old.outcome.label_nb}"
                              + (f" ({old.message})" if old.message else ""))
    return decision


def _decide_session(expected: Expectation, judge: JudgeFunc, exchanges: Iterable[dict[str, Any]],
                    bank: str, core: CoreConditions | None = None) -> Decision:
    attempts = CaseEvidence.attempts(exchanges, bank, core)
    notes: list[str] = []
    for index, ev in enumerate(attempts):
        actual = _judge_attempt(judge, ev)
        outcome, message = compare(expected, actual)
        last = index == len(attempts) - 1
        if last:
            return Decision(outcome, message, actual, len(attempts), notes)
        if outcome is not Outcome.ERROR:
            # The runner tries a row again only after the environment failed it.
            return Decision(
                Outcome.FAILED,
                f"Forsøk {ev.attempt} ga «{outcome.label_nb}»"
                + (f" ({message})" if message else "")
                + ", men raden ble kjørt på nytt; bare feil i miljøet gir nytt forsøk.",
                actual, len(attempts), notes,
            )
        notes.append(f"Forsøk {ev.attempt}: {message}")
    raise AssertionError("unreachable")  # attempts() always yields at least one


def compare(expected: Expectation, actual: Actual) -> tuple[Outcome, str]:
    """Compare the answer with the row's own expectation from the sheet."""
    if actual.environment:
        return Outcome.ERROR, f"Testmiljøet feilet: {actual.environment}"
    if expected.status is None and expected.error_code is None:
        return Outcome.NOT_AUTOMATED, (
            "Forventet resultat i arket angir verken HTTP-status eller feilkode, "
            "så svaret kan ikke kontrolleres automatisk."
        )
    problems: list[str] = []
    if expected.status is not None and actual.status != expected.status:
        got = f"HTTP {actual.status}" if actual.status is not None else "ikke noe svar"
        problems.append(f"forventet HTTP {expected.status}, fikk {got}")
    if expected.error_code and (actual.error_code or "") != expected.error_code:
        documented_401 = (
            actual.answered_by == "gateway" and actual.status == 401 == expected.status
            and expected.error_code == "KFR-001" and actual.gateway_401
        )
        if not documented_401:
            who = f" (svaret kom fra {PARTY_NB.get(actual.answered_by or '', actual.answered_by)})" \
                if actual.answered_by not in (None, "kfr") else ""
            problems.append(
                f"forventet feilkode {expected.error_code}, fikk {actual.error_code or 'ingen'}{who}"
            )
    for check in actual.checks:
        if not check.ok:
            problems.append(check.description + (f" ({check.detail})" if check.detail else ""))
    if problems:
        return Outcome.FAILED, "; ".join(problems)
    return Outcome.PASSED, ""
