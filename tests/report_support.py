"""A realistic finished run for report tests and the report benchmark.

``make_run(results_dir)`` writes ``evidence/<case>.json`` files shaped like the recorder's
(docs/architecture.md, "Exchange") and returns the matching ``RunRecord``: every outcome
occurs, bodies are JSON, form and HTML text, and one batch body is recorded as
size + SHA-256 + first lines. Identities are synthetic (``conformance.ids``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.ids import synthetic_d_nummer, synthetic_fodselsnummer, synthetic_orgnr
from conformance.models import CaseResult, Expectation, Outcome, RunRecord
from conformance.runner import safe_file_name

BANK_NAME = "Testbank Nord AS"
RUN_START = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.UTC)  # 10:00 in Oslo (CET)
SANDBOX_BASE = "http://127.0.0.1:5000"
TEST_KFR = "https://preprod.api.bits.no/kar-ws/api/v1"
TEST_ISSUER = "https://test.maskinporten.no/"
SHEET_BYTES = b"stand-in for KFR-Integrasjonstester.xlsx"


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_evidence(results_dir: Path, case_id: str, exchanges: list[dict[str, Any]]) -> str:
    """Write one case's evidence file; returns its path relative to the results folder."""
    rel = f"evidence/{safe_file_name(case_id)}.json"
    path = results_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"case_id": case_id, "exchanges": exchanges}, ensure_ascii=False, indent=2)
    )
    return rel


def big_body_summary(text: str) -> dict[str, Any]:
    """How the recorder stores a body over 64 KiB."""
    data = text.encode()
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "head": "\n".join(text.splitlines()[:3])[:500],
    }


@dataclass
class _Builder:
    """Makes exchanges and results for one run, with a clock that moves forward."""

    results_dir: Path
    environment: str
    rng: random.Random
    bank_orgnr: str
    clock: dt.datetime = RUN_START
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def kfr(self) -> str:
        return TEST_KFR if self.environment == "test" else f"{SANDBOX_BASE}/kar-ws/api/v1"

    @property
    def issuer(self) -> str:
        return TEST_ISSUER if self.environment == "test" else f"{SANDBOX_BASE}/maskinporten/"

    def _tick(self, ms: float) -> str:
        stamp = iso(self.clock)
        self.clock += dt.timedelta(milliseconds=ms)
        return stamp

    def exchange(
        self,
        case_id: str,
        seq: int,
        operation: str,
        method: str,
        url: str,
        *,
        status: int | None,
        request_headers: dict[str, str] | None = None,
        request_body: Any = None,
        response_body: Any = None,
        response_headers: dict[str, str] | None = None,
        correlation_id: str | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        elapsed = round(self.rng.uniform(3, 40), 1)
        headers = {"Authorization": "[REDACTED]", **(request_headers or {})}
        if correlation_id:
            headers["CorrelationID"] = correlation_id
        response = None
        if status is not None:
            response = {
                "status": status,
                "headers": {
                    "content-type": "application/json",
                    "date": "Mon, 23 Nov 2026 09:00:00 GMT",
                    **(response_headers or {}),
                },
                "body": response_body,
            }
        return {
            "case_id": case_id,
            "seq": seq,
            "operation": operation,
            "correlation_id": correlation_id,
            "started_at": self._tick(elapsed),
            "elapsed_ms": elapsed,
            "request": {"method": method, "url": url, "headers": headers, "body": request_body},
            "response": response,
            "error": error,
        }

    def token(self, case_id: str, seq: int = 1) -> dict[str, Any]:
        ex = self.exchange(
            case_id,
            seq,
            "token",
            "POST",
            f"{self.issuer}token",
            status=200,
            request_headers={"Content-Type": "application/x-www-form-urlencoded"},
            request_body="grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            "&assertion=[REDACTED]",
            response_body=json.dumps(
                {
                    "access_token": "[REDACTED]",
                    "token_type": "Bearer",
                    "expires_in": 119,
                    "scope": "bits:kundeforhold.write",
                }
            ),
        )
        del ex["request"]["headers"]["Authorization"]  # the token call has none
        return ex

    def add(
        self,
        case_id: str,
        seq: int,
        customer_id: str,
        status: int,
        body: Any = None,
        rel_type: str = "DSOPBANK",
        fid: str | None = None,
        correlation: bool = True,
    ) -> dict[str, Any]:
        url = (
            f"{self.kfr}/customers/financialInstitutions/{fid or self.bank_orgnr}"
            f"/relationshipType/{rel_type}"
        )
        return self.exchange(
            case_id,
            seq,
            "add",
            "POST",
            url,
            status=status,
            request_headers={"CustomerID": customer_id},
            response_body=body,
            correlation_id=str(uuid.UUID(int=self.rng.getrandbits(128))) if correlation else None,
        )

    def finish(
        self,
        case_id: str,
        title: str,
        expected: Expectation,
        outcome: Outcome,
        exchanges: list[dict[str, Any]],
        **result: Any,
    ) -> CaseResult:
        started = self.clock
        evidence_file = write_evidence(self.results_dir, case_id, exchanges) if exchanges else None
        cids = list(
            dict.fromkeys(e["correlation_id"] for e in exchanges if e.get("correlation_id"))
        )
        self.clock += dt.timedelta(milliseconds=5)
        case = CaseResult(
            case_id=case_id,
            title=title,
            expected=expected,
            outcome=outcome,
            correlation_ids=cids,
            evidence_file=evidence_file,
            started_at=iso(started) if exchanges else None,
            finished_at=iso(self.clock) if exchanges else None,
            duration_s=(self.clock - started).total_seconds() if exchanges else 0.0,
            row=len(self.cases) + 5,
            **result,
        )
        self.cases.append(case)
        return case


def _error_json(code: str, message: str) -> str:
    return json.dumps(
        {"errorCode": code, "errorMessage": message, "timestamp": "2026-11-23T09:00:01.000+00:00"}
    )


# One function per kind of row, so a large run can cycle through them.
def _token_ok(b: _Builder, cid: str) -> None:
    b.finish(
        cid,
        "Hente token fra Maskinporten med scope bits:kundeforhold.write",
        Expectation("Responskode 200 OK med access_token", status=200),
        Outcome.PASSED,
        [b.token(cid)],
        actual="HTTP 200, token med riktig scope",
        actual_status=200,
        binding="token",
    )


def _add_person(b: _Builder, cid: str) -> None:
    fnr = synthetic_fodselsnummer(b.rng)
    b.finish(
        cid,
        "Registrere kundeforhold for fødselsnummer",
        Expectation("Responskode 201 Created", status=201),
        Outcome.PASSED,
        [b.token(cid), b.add(cid, 2, fnr, 201)],
        actual="HTTP 201 Created",
        actual_status=201,
        binding="add_fodselsnummer",
    )


def _add_existing(b: _Builder, cid: str) -> None:
    dnr = synthetic_d_nummer(b.rng)
    b.finish(
        cid,
        "Registrere kundeforhold som finnes fra før (D-nummer)",
        Expectation("Responskode 200 OK", status=200),
        Outcome.PASSED,
        [b.token(cid), b.add(cid, 2, dnr, 201), b.add(cid, 3, dnr, 200)],
        actual="HTTP 200 OK",
        actual_status=200,
        binding="add_existing",
    )


def _lookup(b: _Builder, cid: str) -> None:
    org = synthetic_orgnr(b.rng)
    url = f"{b.kfr}/customers/financialInstitutions/{b.bank_orgnr}/?fromDate=2026-11-23&toDate=2026-11-23"
    body = json.dumps(
        {"banks": [{"organizationID": b.bank_orgnr, "bankName": BANK_NAME, "activeAccount": False}]}
    )
    lookup = b.exchange(
        cid,
        3,
        "lookup",
        "GET",
        url,
        status=200,
        request_headers={"CustomerID": org},
        response_body=body,
        correlation_id=str(uuid.UUID(int=b.rng.getrandbits(128))),
    )
    b.finish(
        cid,
        "Oppslag på egen bank finner eget organisasjonsnummer",
        Expectation("Responskode 200 OK, egen bank i svaret", status=200),
        Outcome.PASSED,
        [b.token(cid), b.add(cid, 2, org, 201), lookup],
        actual="HTTP 200, egen bank funnet",
        actual_status=200,
        binding="lookup_own",
        checks=[
            {
                "description": "Eget organisasjonsnummer finnes i svaret",
                "ok": True,
                "detail": b.bank_orgnr,
            }
        ],
    )


def _end_missing_failed(b: _Builder, cid: str) -> None:
    fnr = synthetic_fodselsnummer(b.rng)
    url = f"{b.kfr}/customers/financialInstitutions/{b.bank_orgnr}/relationshipType/DSOPBANK"
    end = b.exchange(
        cid,
        2,
        "end",
        "DELETE",
        url,
        status=204,
        request_headers={"CustomerID": fnr},
        correlation_id=str(uuid.UUID(int=b.rng.getrandbits(128))),
    )
    b.finish(
        cid,
        "Avslutte kundeforhold som ikke finnes",
        Expectation("HTTP 404 Not Found med feilkode KFR-008", status=404, error_code="KFR-008"),
        Outcome.FAILED,
        [b.token(cid), end],
        actual="HTTP 204 No Content",
        actual_status=204,
        message="Forventet HTTP 404 med KFR-008, men fikk HTTP 204.",
        binding="end_missing",
    )


def _history_failed_check(b: _Builder, cid: str) -> None:
    fnr = synthetic_fodselsnummer(b.rng)
    url = f"{b.kfr}/customers/financialInstitutions/{b.bank_orgnr}/?fromDate=2026-01-01&toDate=2026-01-31"
    lookup = b.exchange(
        cid,
        3,
        "lookup",
        "GET",
        url,
        status=200,
        request_headers={"CustomerID": fnr},
        response_body=json.dumps({"banks": []}),
        correlation_id=str(uuid.UUID(int=b.rng.getrandbits(128))),
    )
    b.finish(
        cid,
        "Historikk: avsluttet kundeforhold finnes for periode før avslutning",
        Expectation("Responskode 200 OK, banken i svaret for perioden før", status=200),
        Outcome.FAILED,
        [b.token(cid), b.add(cid, 2, fnr, 201), lookup],
        actual="HTTP 200, men banken mangler i svaret",
        actual_status=200,
        message="Et avsluttet kundeforhold skal finnes for perioden før avslutningen.",
        binding="history",
        checks=[
            {"description": "Status 200 for oppslaget", "ok": True, "detail": ""},
            {
                "description": "Banken finnes for perioden før avslutning",
                "ok": False,
                "detail": "svaret hadde ingen banker",
            },
        ],
    )


def _batch_big(b: _Builder, cid: str) -> None:
    ids = ",".join(f"{synthetic_orgnr(b.rng)}#2019-11-08" for _ in range(40))
    text = (ids + ",") * 160  # > 64 KiB: recorded as a summary
    url = f"{b.kfr}/customers/financialInstitutions/{b.bank_orgnr}/batch"
    batch = b.exchange(
        cid,
        2,
        "batch",
        "POST",
        url,
        status=201,
        request_headers={"Content-Type": "multipart/form-data; boundary=kfr0b0undary"},
        request_body=big_body_summary(text),
        correlation_id=str(uuid.UUID(int=b.rng.getrandbits(128))),
    )
    b.finish(
        cid,
        "Batch med startdatoer",
        Expectation("Responskode 201 Created, deretter synlig når filen er lest", status=201),
        Outcome.PASSED,
        [b.token(cid), batch],
        actual="HTTP 201, alle synlige etter innlesing",
        actual_status=201,
        binding="batch_dates",
    )


def _env_error(b: _Builder, cid: str) -> None:
    fnr = synthetic_fodselsnummer(b.rng)
    html = "<html><body><h1>503 Service Unavailable</h1></body></html>"
    first = b.add(cid, 2, fnr[:-1] + str((int(fnr[-1]) + 1) % 10), 503, body=html)
    first["response"]["headers"]["content-type"] = "text/html"
    second = b.exchange(
        cid,
        3,
        "add",
        "POST",
        first["request"]["url"],
        status=None,
        request_headers={"CustomerID": first["request"]["headers"]["CustomerID"]},
        correlation_id=first["correlation_id"],
        error="ReadTimeout: svar uteble etter 10 s",
    )
    b.finish(
        cid,
        "Ugyldig kontrollsiffer i kunde-ID",
        Expectation("400 Bad Request with error code KFR-005", status=400, error_code="KFR-005"),
        Outcome.ERROR,
        [b.token(cid), first, second],
        actual="HTTP 503, deretter tidsavbrudd",
        actual_status=503,
        message="Testmiljøet svarte 503 og deretter ikke i det hele tatt (2 forsøk).",
        binding="bad_check_digit",
    )


def _bad_type(b: _Builder, cid: str) -> None:
    fnr = synthetic_fodselsnummer(b.rng)
    b.finish(
        cid,
        "Ugyldig relasjonstype",
        Expectation("400 Bad Request med feilkode KFR-009", status=400, error_code="KFR-009"),
        Outcome.PASSED,
        [
            b.token(cid),
            b.add(
                cid,
                2,
                fnr,
                400,
                rel_type="NOTABANK",
                body=_error_json("KFR-009", "Ugyldig relasjonstype"),
            ),
        ],
        actual="HTTP 400, KFR-009",
        actual_status=400,
        actual_error_code="KFR-009",
        binding="bad_type",
    )


def _not_automated(b: _Builder, cid: str) -> None:
    b.finish(
        cid,
        "Varsling til Bits ved mer enn 100 000 endringer per dag",
        Expectation("Bits er varslet på forhånd"),
        Outcome.NOT_AUTOMATED,
        [],
        message="Ingen automatisk test passer til denne raden.",
    )


def _pending_manual(b: _Builder, cid: str) -> None:
    b.finish(
        cid,
        "Sletting venter til opplastet batch er lest (D-3)",
        Expectation("Rutinen er beskrevet og fulgt"),
        Outcome.PENDING,
        [],
        manual=True,
        message="Manuell rad: må bekreftes med --manual.",
    )


def _manual_confirmed(b: _Builder, cid: str) -> None:
    b.finish(
        cid,
        "Kjernebanksystemet holder KFR oppdatert (A-8)",
        Expectation("Endringer i kundeforhold sendes til KFR samme dag"),
        Outcome.PASSED,
        [],
        manual=True,
        confirmed_by="Kari Testesen",
        confirmed_at="2026-11-24T08:30:00Z",
        comment="Verifisert i rutinebeskrivelse v3.",
    )


def _not_run(b: _Builder, cid: str) -> None:
    b.finish(
        cid,
        "Batch over 10 MB avvises",
        Expectation("Responskode 413", status=413),
        Outcome.NOT_RUN,
        [],
        message="Ikke valgt i denne kjøringen (-k).",
    )


ROW_KINDS: list[Callable[[_Builder, str], None]] = [
    _token_ok,
    _add_person,
    _add_existing,
    _lookup,
    _end_missing_failed,
    _history_failed_check,
    _batch_big,
    _env_error,
    _bad_type,
    _not_automated,
    _pending_manual,
    _manual_confirmed,
    _not_run,
]


def make_run(
    results_dir: Path, *, environment: str = "sandbox", n_cases: int | None = None, seed: int = 7
) -> RunRecord:
    """A finished run with its evidence written under ``results_dir``.

    ``n_cases=None`` gives one case of each kind (every outcome occurs); a number cycles
    through the kinds to that many cases (the benchmark's 1 000-case run)."""
    rng = random.Random(seed)
    b = _Builder(
        results_dir=results_dir, environment=environment, rng=rng, bank_orgnr=synthetic_orgnr(rng)
    )
    count = len(ROW_KINDS) if n_cases is None else n_cases
    width = max(2, len(str(count)))
    for i in range(count):
        ROW_KINDS[i % len(ROW_KINDS)](b, f"KFR-{i + 1:0{width}d}")
    return RunRecord(
        run_id=f"{RUN_START:%Y%m%dT%H%M%SZ}-a1b2c3",
        bank={"orgnr": b.bank_orgnr, "name": BANK_NAME},
        environment={"name": environment, "kfr_base_url": b.kfr, "maskinporten_issuer": b.issuer},
        sheet={
            "file_name": "KFR-Integrasjonstester.xlsx",
            "version": "1.3",
            "sha256": hashlib.sha256(SHEET_BYTES).hexdigest(),
        },
        runner={"version": "0.1.0", "python": "3.11.9", "platform": "Linux-x86_64"},
        attestation={"tester": "Ola Testperson", "role": "Integrasjonsansvarlig"},
        started_at=iso(RUN_START),
        finished_at=iso(b.clock + dt.timedelta(seconds=1)),
        cases=b.cases,
    )
