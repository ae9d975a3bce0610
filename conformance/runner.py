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
from conformance.models import CaseResult, CaseSpec, Expectation, Outcome
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

    @property
    def fid(self) -> str:
        return self.config.bank_orgnr

    @property
    def bank_name(self) -> str:
        return self.config.bank_name

    def new_fodselsnummer(self) -> str:
        return synthetic_fodselsnummer(self.rng)

    def new_d_nummer(self) -> str:
        return synthetic_d_nummer(self.rng)

    def new_orgnr(self) -> str:
        while True:
            value = synthetic_orgnr(self.rng)
            if value != self.fid:
                return value

    def auth_for(self, scopes: list[str]) -> httpx.Auth:
        from conformance.auth import MaskinportenAuth

        return MaskinportenAuth(self.maskinporten, scopes)

    def today(self) -> dt.date:
        # KFR's dates are Norwegian calendar days.
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo("Europe/Oslo")).date()


def judge(expected: Expectation, actual: Actual) -> tuple[Outcome, str]:
    """Compare the environment's answer with the row's own expectation from the sheet."""
    if expected.status is None and expected.error_code is None:
        return Outcome.NOT_AUTOMATED, (
            "Forventet resultat i arket angir verken HTTP-status eller feilkode, "
            "så svaret kan ikke kontrolleres automatisk."
        )
    problems: list[str] = []
    if expected.status is not None and actual.status != expected.status:
        problems.append(f"forventet HTTP {expected.status}, fikk {actual.status}")
    if expected.error_code and (actual.error_code or "") != expected.error_code:
        problems.append(
            f"forventet feilkode {expected.error_code}, fikk {actual.error_code or 'ingen'}"
        )
    for check in actual.checks:
        if not check.ok:
            problems.append(check.description + (f" ({check.detail})" if check.detail else ""))
    if problems:
        return Outcome.FAILED, "; ".join(problems)
    return Outcome.PASSED, ""


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


def run_step(spec: CaseSpec, step: Step, ctx: CaseContext) -> CaseResult:
    """Run one bound row and judge it. Never raises for environment or step problems."""
    started = utc_now()
    t0 = time.perf_counter()
    result = CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=Outcome.ERROR, row=spec.row, binding=step.name, manual=spec.manual,
        started_at=iso(started),
    )
    try:
        actual = step.func(ctx)
    except AuthError as exc:
        # Maskinporten refused the bank's own credentials: the bank's setup is wrong.
        result.outcome = Outcome.FAILED
        result.actual = f"Maskinporten avviste forespørselen ({exc.mp_code or exc.error or 'ukjent'})"
        result.message = exc.diagnostics()
    except TargetEnvironmentError as exc:
        result.outcome = Outcome.ERROR
        result.actual = "Ingen gyldig respons fra testmiljøet"
        result.message = exc.diagnostics()
    except ConformanceError as exc:
        result.outcome = Outcome.ERROR
        result.message = exc.diagnostics()
    except _NETWORK_ERRORS as exc:
        # Normally mapped by the clients; this is the last line of defence, so that a
        # connection problem can never be reported as the bank's failure or as our bug.
        result.outcome = Outcome.ERROR
        result.actual = "Ingen gyldig respons fra testmiljøet"
        result.message = f"Forbindelsen til testmiljøet feilet: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in a step is never the bank's failure
        result.outcome = Outcome.ERROR
        result.message = (
            f"Intern feil i teststeget «{step.name}»: {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(exc))
        )
    else:
        result.actual_status = actual.status
        result.actual_error_code = actual.error_code
        result.actual = describe_actual(actual)
        result.outcome, result.message = judge(spec.expected, actual)
        result.checks = [
            {"description": c.description, "ok": c.ok, "detail": c.detail} for c in actual.checks
        ]
    result.finished_at = iso(utc_now())
    result.duration_s = round(time.perf_counter() - t0, 4)
    return result


def manual_result(spec: CaseSpec, confirmation: dict[str, str] | None) -> CaseResult:
    """A manual row: pending until a person confirms it (``--manual FILE``)."""
    result = CaseResult(
        case_id=spec.case_id, title=spec.title, expected=spec.expected,
        outcome=Outcome.PENDING, row=spec.row, binding=spec.binding, manual=True,
        actual="Manuell kontroll – ikke bekreftet",
        message="Raden må utføres manuelt og bekreftes med --manual FIL.",
    )
    if confirmation:
        status = str(confirmation.get("status", "")).strip().lower()
        result.confirmed_by = confirmation.get("by") or confirmation.get("who") or None
        result.comment = confirmation.get("comment", "")
        if status in {"ok", "passed", "bestått", "godkjent"}:
            result.outcome = Outcome.PASSED
            result.actual = "Manuelt bekreftet OK"
            result.message = ""
        elif status in {"feilet", "failed", "ikke ok", "fail"}:
            result.outcome = Outcome.FAILED
            result.actual = "Manuelt kontrollert: feilet"
            result.message = result.comment
    return result


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
