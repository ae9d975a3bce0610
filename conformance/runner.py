"""The engine side of a run: configuration, the context a step gets, and judging a case.

Nothing here knows a KFR row; the suite's ``steps.py`` does. The plugin builds one
:class:`RunConfig` from options and the profile, one :class:`RunSession` per process
(HTTP client, Maskinporten client, evidence recorder), and calls :meth:`RunSession.run_case`
for each sheet row.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx

from conformance.errors import AuthError, ConformanceError, TargetEnvironmentError
from conformance.ids import synthetic_d_nummer, synthetic_fodselsnummer, synthetic_orgnr
from conformance.models import PERFORMED_BY_CORE, PERFORMED_BY_TOOL, CaseResult, CaseSpec, Outcome
from conformance.steps import Actual, Step

WRITE_SCOPE = "bits:kundeforhold.write"
_NETWORK_ERRORS = (httpx.TransportError, httpcore.NetworkError, httpcore.ProtocolError,
                   httpcore.TimeoutException, ConnectionError, TimeoutError)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or utc_now()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def safe_file_name(case_id: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in case_id)
    return cleaned.strip(".") or "case"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a run needs, validated once. Secrets are kept out of ``repr``."""

    bank_orgnr: str
    bank_name: str
    env_name: str                       # "sandbox" | "test"
    kfr_base_url: str
    maskinporten_issuer: str
    client_id: str
    cert_path: Path
    cert_password: str | None = field(default=None, repr=False)
    key_path: Path | None = None
    signing_cert_path: Path | None = None
    signing_cert_password: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    reports_dir: Path = Path("reports")
    tester: str = ""
    tester_role: str = ""
    contact: str | None = None
    alt_scope: str | None = None        # a scope the client has that is NOT the write scope
    ingest_rate: float = 250.0          # KFR's documented ingestion rate, for batch deadlines
    sandbox_data_dir: Path | None = None

    def __post_init__(self) -> None:
        from conformance.kfr import refuse_production

        refuse_production(self.kfr_base_url)
        refuse_production(self.maskinporten_issuer)

    @property
    def is_sandbox(self) -> bool:
        return self.env_name != "test"


@dataclass
class CaseContext:
    """What a step gets: the bank, clients, and fresh synthetic identities."""

    case: CaseSpec
    config: RunConfig
    kfr: Any                            # conformance.kfr.KfrClient, authenticated for writing
    maskinporten: Any                   # conformance.auth.MaskinportenClient
    progress: Callable[[str], None] = lambda msg: None
    rng: random.Random = field(default_factory=lambda: random.Random(secrets.randbits(64)))
    write_scope: str = WRITE_SCOPE
    identities: Any = None              # conformance.testids.TestIdentities (--test-ids), or synthetic
    # conformance.coresystem.CaseCoreSystem when the bank's core system performs this row
    # (``--core-system``): the step's core act asks it through ``ctx.core.open/close/batch``.
    core: Any = None

    @property
    def fid(self) -> str:
        return self.config.bank_orgnr

    @property
    def bank_name(self) -> str:
        return self.config.bank_name

    def new_fodselsnummer(self) -> str:
        if self.identities is not None:
            return self.identities.take("fodselsnummer")
        return synthetic_fodselsnummer(self.rng)

    def new_d_nummer(self) -> str:
        if self.identities is not None:
            return self.identities.take("d-nummer")
        return synthetic_d_nummer(self.rng)

    def new_orgnr(self) -> str:
        if self.identities is not None:
            return self.identities.take("orgnr")
        while True:
            value = synthetic_orgnr(self.rng)
            if value != self.fid:
                return value

    def note_backlog(self, ids: int, case_id: str) -> None:
        """An environment accepted ``ids`` IDs it should have refused (the over-10 MB row):
        later waits for ingestion are told they stand behind that queue."""
        self.kfr.note_backlog(ids, f"{case_id} la ca. {ids:,} ID-er i KFR-køen".replace(",", " "))
        self.progress(f"ADVARSEL: testmiljøet godtok {case_id}: ca. {ids:,} ID-er står i kø".replace(",", " "))

    def auth_for(self, scopes: list[str]) -> httpx.Auth:
        from conformance.auth import MaskinportenAuth

        return MaskinportenAuth(self.maskinporten, scopes)

    def today(self) -> dt.date:
        # KFR's dates are Norwegian calendar days.
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo("Europe/Oslo")).date()


def describe_actual(actual: Actual) -> str:
    parts = []
    if actual.status is not None:
        parts.append(f"HTTP {actual.status}")
    if actual.error_code:
        parts.append(actual.error_code)
    head = " / ".join(parts)
    if actual.summary:
        return f"{head}. {actual.summary}" if head else actual.summary
    return head


MAX_ROW_ATTEMPTS = 3  # a row the environment failed is tried again, with fresh customers
ROW_RETRY_PAUSE_S = 1.0


def run_step(spec: CaseSpec, step: Step, ctx: CaseContext, recorder: Any,
             earlier: list[dict[str, Any]] | None = None) -> CaseResult:
    """Act, then judge the recorded evidence. Never raises for environment or step problems.

    The verdict is :func:`conformance.judge.decide` over exactly the exchanges that go into
    the evidence file, so ``verify`` reaches the same verdict from the pack. A row whose
    attempt ended in an environment failure is tried again (fresh customers, every attempt
    kept in the evidence), up to ``MAX_ROW_ATTEMPTS``, unless the step forbids it.
    ``earlier``: the row's exchanges from earlier sessions of a resumed run.

    With ``ctx.core`` set and a step that has a core act, the bank's core system performs
    the row (the core act asks it; the tool checks KFR's state) and the judge adds the core
    system's conditions."""
    from conformance.judge import decide

    started = utc_now()
    t0 = time.perf_counter()
    attempts = MAX_ROW_ATTEMPTS if step.retryable else 1
    crash: str | None = None
    by_core = ctx.core is not None and step.core is not None
    act = step.core if by_core else step.func
    core = step.core_conditions if by_core else None
    for number in range(1, attempts + 1):
        with recorder.attempt(number):
            crash = _act(step, act, ctx)
        decision = decide(spec.expected, step.judge,
                          [*(earlier or ()), *recorder.exchanges(spec.case_id)], ctx.fid, core=core)
        if decision.outcome is not Outcome.ERROR or crash is not None or number == attempts:
            break
        ctx.progress(f"feil i testmiljøet ({decision.message}); prøver raden på nytt")
        time.sleep(ROW_RETRY_PAUSE_S)
    actual = decision.actual
    result = CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=decision.outcome, row=spec.row, binding=step.name, manual=spec.manual,
        started_at=iso(started), message=decision.message,
        actual_status=actual.status, actual_error_code=actual.error_code,
        actual=describe_actual(actual),
        checks=[{"description": c.description, "ok": c.ok, "detail": c.detail} for c in actual.checks],
        answered_by=actual.answered_by, identities=[i for i in actual.identities if i],
        attempts=decision.attempts, performed_by=PERFORMED_BY_CORE if by_core else PERFORMED_BY_TOOL,
    )
    if decision.notes:
        result.message = "; ".join([*decision.notes, result.message]).strip("; ")
    if by_core and ctx.core.notes and result.outcome is not Outcome.PASSED:
        # What the core system's command or hook said: context for the bank, not evidence.
        result.message = "\n".join([result.message, *dict.fromkeys(ctx.core.notes)]).strip()
    if crash is not None:
        # A bug in a step is never the bank's failure, and never a pass.
        result.outcome = Outcome.ERROR
        result.message = (result.message + "\n" + crash).strip()
    result.finished_at = iso(utc_now())
    result.duration_s = round(time.perf_counter() - t0, 4)
    return redact_result(result, recorder.secrets)


def redact_result(result: CaseResult, secrets: tuple[str, ...] = ()) -> CaseResult:
    """Every free text of a result redacted as the evidence is: a token or password echoed
    in an error message must not reach run.json, the manifest, the sheet or the terminal."""
    from conformance.evidence import redact_text

    result.actual = redact_text(result.actual, secrets)
    result.message = redact_text(result.message, secrets)
    result.comment = redact_text(result.comment, secrets)
    result.checks = [
        {**check, "description": redact_text(str(check.get("description", "")), secrets),
         "detail": redact_text(str(check.get("detail", "")), secrets)}
        for check in result.checks
    ]
    return result


def _act(step: Step, act: Callable[[Any], Any], ctx: CaseContext) -> str | None:
    """Run the step's requests (``act``: its act, or its core act). What the environment or
    Maskinporten answered is in the evidence; only a bug in the step itself comes back, as
    text."""
    try:
        act(ctx)
    except (AuthError, TargetEnvironmentError, *_NETWORK_ERRORS):
        return None
    except ConformanceError as exc:
        return exc.diagnostics()
    except Exception as exc:
        return (f"Intern feil i teststeget «{step.name}»: {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(exc)))
    return None


def manual_result(spec: CaseSpec, confirmation: dict[str, str] | None,
                  *, instructions: str = "") -> CaseResult:
    """A row a person carries out: pending until confirmed (``--manual FILE``), then passed
    or failed on that person's word — counted apart from rows proven by evidence. A row no
    step can run may be confirmed the same way."""
    from conformance.pack.manual import confirm_case, confirmation_problem, stamp_now

    result = CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=Outcome.PENDING, row=spec.row, binding=spec.binding, manual=True,
        actual="Manuell kontroll – ikke bekreftet",
        message=instructions or "Raden må utføres manuelt og bekreftes med --manual FIL.",
    )
    if confirmation and confirmation_problem(spec.case_id, confirmation) is None:
        confirm_case(result, confirmation, stamp_now())
    return redact_result(result)


def not_automated_result(spec: CaseSpec) -> CaseResult:
    return CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=Outcome.NOT_AUTOMATED, row=spec.row, manual=spec.manual,
        actual="Ikke utført",
        message=(
            "Ingen automatisert test passer til denne raden. Angi en binding med "
            "--bindings FIL, eller utfør og dokumenter raden manuelt."
        ),
    )


def not_run_result(spec: CaseSpec) -> CaseResult:
    return CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=Outcome.NOT_RUN, row=spec.row, binding=spec.binding, manual=spec.manual,
        actual="Ikke kjørt i denne kjøringen",
    )


def resolve_path(value: str | Path | None, base: Path) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)
