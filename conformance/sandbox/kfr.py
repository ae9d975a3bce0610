"""KFR simulator: every operation of the published API v1.1.2, under /kar-ws/api/v1.

Bank operations need scope ``bits:kundeforhold.write`` and a token whose consumer is the
path's ``fid``. Checks run in this order, each with its documented error:
authentication (KFR-001, 401) → scope (KFR-002, 403) → fid (KFR-003, 403) → CorrelationID
(KFR-004) → relationship type (KFR-009) → CustomerID (KFR-005). The lookups use the ERR-00x
codes of their own description. Agency operations (not a bank's) answer like this:

* ``customerRelationships`` (scope ``bits:kundeforhold``): every bank with a relationship to
  the customer that overlaps the period.
* ``accountServicingProvider`` (scope ``bits:kundeforhold.konto``): the bank registered for
  the account with ``RunningSandbox.register_account``; an unknown account is 404 KFR-008
  (KFR's description names no answer for it). Its 401 has the ``statusCode``/``message``
  shape of that operation's description.

Relationships are dated in Norwegian calendar days: POST starts one today, DELETE ends it
today (history kept), a lookup finds relationships overlapping [fromDate, toDate].

A batch file is checked as it streams in; KFR's 10 MB limit counts its ``customers`` part
and is answered 413 KFR-004 with the connection closed. With ``SandboxSettings.realistic``
an API gateway (``gateway.py``) answers authentication failures before these routes run.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import re
import tempfile
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.sandbox.batch import (
    FORM_ALLOWANCE,
    MAX_FREE_ID_LENGTH,
    BatchRejected,
    BatchStream,
    BatchTooLarge,
    boundary_from_content_type,
)
from conformance.sandbox.context import SandboxContext, oslo_today
from conformance.sandbox.credentials import ACCOUNT_SCOPE, AGENCY_SCOPE, WRITE_SCOPE
from conformance.sandbox.identifiers import acceptable_customer_id
from conformance.sandbox.maskinporten import InvalidToken, consumer_orgnr

DSOPBANK = "DSOPBANK"
DRAIN_CAP = 64 * 1024 * 1024  # read (and discard) at most this much of a refused upload
SPOOL_IN_MEMORY = 64 * 1024  # an accepted file's entry list goes to disk beyond this
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MESSAGES = {
    "KFR-001": "Client is not authenticated",
    "KFR-002": "Client does not have access",
    "KFR-003": "Client cannot manage customer relationships for the given organisation number",
    "KFR-004": "Invalid request",
    "KFR-005": "Invalid customer identifier",
    "KFR-007": "Internal error",
    "KFR-008": "Customer relationship not found",
    "KFR-009": "Invalid customer relationship type",
    "KFR-010": "Invalid date format",
    "ERR-001": "Klient er ikke autorisert",
    "ERR-002": "Ugyldig KUNDEID",
    "ERR-003": "Ugyldig periode eller datoformat",
    "ERR-004": "Ugyldig kontonummer",
}
# Which code a refused caller gets, per family of operations.
BANK_DENIALS = {"unauthenticated": "KFR-001", "scope": "KFR-002", "fid": "KFR-003"}
LOOKUP_DENIALS = {"unauthenticated": "ERR-001", "scope": "ERR-001", "fid": "ERR-001"}
WRONG_BANK_NAME = "Feil Bank ASA"


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_response(
    status: int,
    code: str,
    correlation_id: str | None = None,
    detail: str | None = None,
    *,
    close: bool = False,
) -> Response:
    message = MESSAGES.get(code, "Invalid request")
    if detail:
        message = f"{message}: {detail}"
    body = json.dumps(
        {"errorCode": code, "errorMessage": message, "timestamp": timestamp()}, ensure_ascii=False
    ).encode()
    headers = {"CorrelationID": correlation_id} if correlation_id else {}
    if close:
        headers["Connection"] = "close"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _json(data: Any, correlation_id: str | None) -> Response:
    headers = {"CorrelationID": correlation_id} if correlation_id else None
    return Response(
        json.dumps(data, ensure_ascii=False).encode(),
        media_type="application/json",
        headers=headers,
    )


def _empty(status: int, correlation_id: str | None) -> Response:
    return Response(
        status_code=status, headers={"CorrelationID": correlation_id} if correlation_id else None
    )


def _claims(ctx: SandboxContext, request: Request) -> dict[str, Any] | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return ctx.tokens.verify(token)
    except InvalidToken:
        return None


def _denial(
    ctx: SandboxContext, request: Request, scope: str, fid: str | None
) -> tuple[int, str] | None:
    """(status, reason) when the caller may not do this, else None."""
    claims = _claims(ctx, request)
    if claims is None:
        return None if ctx.misbehaves("skip_auth") else (401, "unauthenticated")
    scopes = str(claims.get("scope", "")).split()
    if scope not in scopes and not ctx.misbehaves("skip_scope_check"):
        return 403, "scope"
    if fid is not None and consumer_orgnr(claims) != fid and not ctx.misbehaves("skip_fid_check"):
        return 403, "fid"
    return None


def _fid_ok(fid: str) -> bool:
    return len(fid) == 9 and fid.isdigit()


def _correlation_ok(ctx: SandboxContext, value: str | None) -> bool:
    return ctx.misbehaves("skip_correlation_check") or (
        value is not None and bool(_UUID.match(value))
    )


def _customer_problem(ctx: SandboxContext, value: str | None) -> str | None:
    """The KFR code for a bad CustomerID header, or None when it is acceptable."""
    if value is None or not value.strip():
        return "KFR-004"
    value = value.strip()
    if ctx.misbehaves("skip_customer_id_check"):
        return None if len(value) <= MAX_FREE_ID_LENGTH else "KFR-004"
    strict = ctx.faults.validate_birth_dates
    return None if acceptable_customer_id(value, strict_birth_dates=strict) else "KFR-005"


# ---------------------------------------------------------------- single relationships


async def relationship(request: Request) -> Response:
    """POST adds (201, or 200 when already active); DELETE ends (204, or 404 KFR-008)."""
    ctx: SandboxContext = request.app.state.ctx
    correlation_id = request.headers.get("correlationid")
    fid = request.path_params["fid"]
    denied = _denial(ctx, request, WRITE_SCOPE, fid)
    if denied:
        return error_response(denied[0], BANK_DENIALS[denied[1]], correlation_id)
    if not _fid_ok(fid):
        return error_response(
            403, "KFR-003", correlation_id, "fid must be a 9-digit organisation number"
        )
    if not _correlation_ok(ctx, correlation_id):
        return error_response(400, "KFR-004", correlation_id, "CorrelationID must be a UUID")
    if request.path_params["type"] != DSOPBANK and not ctx.misbehaves("skip_type_check"):
        return error_response(400, "KFR-009", correlation_id)
    raw_customer = request.headers.get("customerid")
    problem = _customer_problem(ctx, raw_customer)
    if problem:
        detail = "CustomerID header is missing" if problem == "KFR-004" else None
        return error_response(400, problem, correlation_id, detail)
    customer = (raw_customer or "").strip()
    today = oslo_today().isoformat()
    if request.method == "POST":
        created = ctx.store.add_relationship(fid, customer, today)
        return _empty(201 if created or ctx.misbehaves("always_201") else 200, correlation_id)
    ended = ctx.store.end_relationship(fid, customer, today, erase=ctx.misbehaves("forget_history"))
    if ended or ctx.misbehaves("delete_missing_204"):
        return _empty(200 if ended and ctx.misbehaves("end_returns_200") else 204, correlation_id)
    return error_response(404, "KFR-008", correlation_id)


# ---------------------------------------------------------------- batch


async def _drain(request: Request, already: int = 0) -> bool:
    """Read and discard the rest of an upload we refuse, so the client sees our answer
    instead of a reset connection. False when it was too big even for that."""
    total = already
    async for chunk in request.stream():
        total += len(chunk)
        if total > DRAIN_CAP:
            return False
    return True


async def _refuse_upload(
    request: Request, status: int, code: str, correlation_id: str | None, detail: str | None = None
) -> Response:
    length = request.headers.get("content-length", "")
    drained = (not length.isdigit() or int(length) <= DRAIN_CAP) and await _drain(request)
    return error_response(status, code, correlation_id, detail, close=not drained)


def _too_large(correlation_id: str | None, detail: str) -> Response:
    """413, and the connection is closed at once: nothing more of the upload is read, and
    a client waiting for the connection to come free is not left hanging."""
    return error_response(413, "KFR-004", correlation_id, detail, close=True)


async def batch(request: Request) -> Response:
    """The file is checked as it streams in (``BatchStream``): KFR's 10 MB limit counts
    the ``customers`` part, and an accepted list goes to a spooled temporary file and on
    into the database in pieces, so memory stays flat whatever the file's size."""
    ctx: SandboxContext = request.app.state.ctx
    correlation_id = request.headers.get("correlationid")
    fid = request.path_params["fid"]
    denied = _denial(ctx, request, WRITE_SCOPE, fid)
    if denied:
        return await _refuse_upload(request, denied[0], BANK_DENIALS[denied[1]], correlation_id)
    if not _fid_ok(fid):
        return await _refuse_upload(request, 403, "KFR-003", correlation_id)
    if not _correlation_ok(ctx, correlation_id):
        return await _refuse_upload(
            request, 400, "KFR-004", correlation_id, "CorrelationID must be a UUID"
        )
    lenient = ctx.misbehaves("accept_any_boundary")
    try:
        boundary = boundary_from_content_type(
            request.headers.get("content-type", ""), accept_quoted=lenient
        )
    except BatchRejected as exc:
        return await _refuse_upload(request, exc.status, exc.code, correlation_id, exc.message)

    limit = DRAIN_CAP if ctx.misbehaves("no_size_limit") else ctx.settings.max_batch_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_ALLOWANCE:
        return _too_large(
            correlation_id, f"forespørselen er større enn {limit + FORM_ALLOWANCE} byte"
        )
    read_all = False
    # A body that may carry a file over the limit holds the file part back unread, so the
    # 413 is not delayed by validating a million IDs first (see ``batch.BatchStream``).
    may_exceed = not length.isdigit() or int(length) > limit
    with (
        tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=ctx.data_dir) as spool,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=ctx.data_dir) as held,
    ):
        try:
            stream = BatchStream(
                boundary,
                sink=spool,
                lenient_boundary=lenient,
                check_type=not ctx.misbehaves("skip_type_check"),
                check_ids=not ctx.misbehaves("skip_customer_id_check"),
                check_dates=not ctx.misbehaves("skip_batch_date_check"),
                keep_dates=not ctx.misbehaves("ignore_batch_dates"),
                strict_birth_dates=ctx.faults.validate_birth_dates,
                max_file_bytes=limit,
                hold=held if may_exceed else None,
            )
            async for chunk in request.stream():
                # Validating a piece's IDs takes milliseconds: off the event loop.
                await run_in_threadpool(stream.feed, chunk)
            read_all = True
            total = await run_in_threadpool(stream.finish)
        except BatchTooLarge as exc:
            return _too_large(correlation_id, exc.message)
        except BatchRejected as exc:
            if read_all:
                return error_response(exc.status, exc.code, correlation_id, exc.message)
            return await _refuse_upload(request, exc.status, exc.code, correlation_id, exc.message)
        await run_in_threadpool(
            ctx.store.add_batch,
            fid,
            correlation_id,
            spool,
            total,
            oslo_today().isoformat(),
            discard=ctx.misbehaves("never_ingest"),
        )
    ctx.notify_batch.set()
    return _empty(201, correlation_id)


# ---------------------------------------------------------------- lookups


def _period(request: Request) -> tuple[str, str] | None:
    today = oslo_today().isoformat()
    values = []
    for name in ("fromDate", "toDate"):
        value = request.query_params.get(name) or today
        if not _DATE.match(value):
            return None
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return None
        values.append(value)
    if values[0] > values[1]:
        return None
    return values[0], values[1]


def _banks(ctx: SandboxContext, fids: list[str]) -> list[dict[str, Any]]:
    names = ctx.store.bank_names(fids)
    wrong = ctx.misbehaves("wrong_bank_name")
    return [
        {
            "organizationID": fid,
            "bankName": WRONG_BANK_NAME if wrong else names.get(fid, f"Ukjent bank {fid}"),
            "activeAccount": False,
        }  # always false in KFR (FAQ)
        for fid in fids
    ]


async def _lookup(request: Request, scope: str, fid: str | None) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    correlation_id = request.headers.get("correlationid")
    denied = _denial(ctx, request, scope, fid)
    if denied:
        return error_response(denied[0], LOOKUP_DENIALS[denied[1]], correlation_id)
    customer = (request.headers.get("customerid") or "").strip()
    if not acceptable_customer_id(customer, strict_birth_dates=ctx.faults.validate_birth_dates):
        return error_response(400, "ERR-002", correlation_id)
    period = _period(request)
    if period is None:
        return error_response(400, "ERR-003", correlation_id)
    if ctx.misbehaves("lookup_empty"):
        return _json({"banks": []}, correlation_id)
    fids = ctx.store.banks_for(customer, period[0], period[1], fid=fid)
    return _json({"banks": _banks(ctx, fids)}, correlation_id)


async def lookup_own_bank(request: Request) -> Response:
    return await _lookup(request, WRITE_SCOPE, request.path_params["fid"])


def _accepts_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return True
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {"application/json", "application/*", "*/*"})


async def customer_relationships(request: Request) -> Response:
    if not _accepts_json(request):
        return error_response(
            406,
            "KFR-004",
            request.headers.get("correlationid"),
            "only application/json is available",
        )
    return await _lookup(request, AGENCY_SCOPE, None)


async def account_servicing_provider(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    correlation_id = request.headers.get("correlationid")
    denied = _denial(ctx, request, ACCOUNT_SCOPE, None)
    if denied and denied[0] == 401:
        body = {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid"}
        return Response(
            json.dumps(body).encode(),
            status_code=401,
            media_type="application/json",
            headers={"CorrelationID": correlation_id} if correlation_id else None,
        )
    if denied:
        return error_response(403, "ERR-001", correlation_id)
    if not _correlation_ok(ctx, correlation_id):
        return error_response(400, "KFR-004", correlation_id, "CorrelationID must be a UUID")
    account = (request.headers.get("accountid") or "").strip()
    # KFR's description: no MOD11 check of the account number, only its shape.
    if len(account) != 11 or not account.isdigit():
        return error_response(400, "ERR-004", correlation_id)
    orgnr = ctx.store.account_provider(account)
    if orgnr is None:
        return error_response(404, "KFR-008", correlation_id, "unknown account in the sandbox")
    name = ctx.store.bank_names([orgnr]).get(orgnr, f"Ukjent bank {orgnr}")
    if ctx.misbehaves("wrong_bank_name"):
        name = WRONG_BANK_NAME
    return _json({"organizationId": orgnr, "bankName": name}, correlation_id)


async def openapi(request: Request) -> Response:
    text = importlib.resources.files("conformance.sandbox").joinpath("openapi.yaml").read_bytes()
    return Response(text, media_type="application/yaml")


ROUTES = [
    Route(
        "/customers/financialInstitutions/{fid}/relationshipType/{type}",
        relationship,
        methods=["POST", "DELETE"],
    ),
    Route("/customers/financialInstitutions/{fid}/batch", batch, methods=["POST"]),
    Route("/customers/financialInstitutions/{fid}/", lookup_own_bank, methods=["GET"]),
    Route("/customers/financialInstitutions/{fid}", lookup_own_bank, methods=["GET"]),
    Route("/customers/customerRelationships", customer_relationships, methods=["GET"]),
    Route("/customers/accountServicingProvider", account_servicing_provider, methods=["GET"]),
    Route("/openapi.yaml", openapi, methods=["GET"]),
]
