"""Fault injection and the deliberately wrong KFR: each switch really changes the answer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from conformance.errors import SandboxError
from conformance.ids import invalid_check_digit, synthetic_fodselsnummer, synthetic_orgnr
from conformance.sandbox import MISBEHAVIOURS, BankCredentials, Faults, RunningSandbox
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import BANK_ALT_SCOPE, WRITE_SCOPE

BOUNDARY = "873380600719114776488944"


@dataclass
class Env:
    sb: RunningSandbox
    bank: BankCredentials
    api: Any
    other: BankCredentials
    alt_api: Any


@pytest.fixture(scope="module")
def env(
    sandbox: RunningSandbox, bank_api: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Env:
    bank = sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path_factory.mktemp("faults-bank"))
    other = sandbox.register_bank(
        synthetic_orgnr(), out_dir=tmp_path_factory.mktemp("faults-other")
    )
    return Env(sandbox, bank, bank_api(bank), other, bank_api(bank, scopes=[BANK_ALT_SCOPE]))


# ---------------------------------------------------------------- faults


def test_faults_are_validated() -> None:
    for bad in (
        {"error_rate_500": 1.5},
        {"drop_rate": -0.1},
        {"error_rate_500": 0.6, "error_rate_504": 0.6},
        {"fail_next": -1},
        {"latency_ms": float("nan")},
        {"token_lifetime_s": 0},
        {"misbehave": frozenset({"no_such_switch"})},
        {"misbehave": "always_201"},
        {"throttle_rate": 2},
        {"firewall_rate": 0.6, "throttle_rate": 0.6},
        {"gateway_error_rate": -1},
        {"throttle_next": -1},
        {"gateway_error_next": True},
        {"retry_after_s": -1},
        {"retry_after_s": 1.5},
        {"gateway_error_statuses": (500,)},
        {"gateway_error_statuses": ()},
        {"gateway_error_statuses": "502"},
        {"gateway_error_statuses": (502.0,)},
        {"gateway_error_statuses": (True,)},
        {"gateway_error_body": "xml"},
        {"validate_birth_dates": "yes"},
    ):
        with pytest.raises(SandboxError):
            Faults(**bad)
    assert Faults.from_dict(
        Faults(fail_next=2, misbehave=frozenset({"always_201"})).to_dict()
    ) == Faults(fail_next=2, misbehave=frozenset({"always_201"}))
    with pytest.raises(SandboxError):
        Faults.from_dict({"nonsense": 1})


def test_gateway_faults_round_trip_through_json() -> None:
    faults = Faults(
        firewall_rate=0.1,
        firewall_next=1,
        throttle_rate=0.2,
        throttle_next=2,
        retry_after_s=5,
        gateway_error_rate=0.3,
        gateway_error_next=3,
        gateway_error_statuses=[502, 504],  # type: ignore[arg-type]  # a JSON list is accepted
        gateway_error_body="mixed",
        validate_birth_dates=True,
        seed=4,
    )
    assert faults.gateway_error_statuses == (502, 504)
    data = json.loads(json.dumps(faults.to_dict()))
    assert data["gateway_error_statuses"] == [502, 504]
    assert Faults.from_dict(data) == faults


def test_latency_is_added_to_kfr_and_maskinporten(env: Env) -> None:
    env.sb.set_faults(Faults(latency_ms=250))
    started = time.monotonic()
    assert env.api.lookup(synthetic_fodselsnummer()).status_code == 200
    middle = time.monotonic()
    obtain_token(env.bank, env.sb.maskinporten_issuer, [WRITE_SCOPE])
    ended = time.monotonic()
    assert middle - started >= 0.25 and ended - middle >= 0.25


@pytest.mark.parametrize(
    ("faults", "status"), [(Faults(error_rate_500=1), 500), (Faults(error_rate_504=1), 504)]
)
def test_error_rates_answer_with_kfr_json(env: Env, faults: Faults, status: int) -> None:
    env.sb.set_faults(faults)
    correlation_id = str(uuid.uuid4())
    response = env.api.add(synthetic_fodselsnummer(), CorrelationID=correlation_id)
    assert response.status_code == status
    assert response.json()["errorCode"] == "KFR-007"
    assert response.headers["CorrelationID"] == correlation_id
    # Maskinporten is not affected: clients can still get tokens.
    assert obtain_token(env.bank, env.sb.maskinporten_issuer, [WRITE_SCOPE])


def test_fail_next_is_a_burst_then_normal(env: Env) -> None:
    env.sb.set_faults(Faults(fail_next=3))
    assert env.sb.faults.fail_next == 3
    statuses = [env.api.add(synthetic_fodselsnummer()).status_code for _ in range(5)]
    assert statuses == [500, 500, 500, 201, 201]
    assert env.sb.faults.fail_next == 0


def test_seeded_error_rate_repeats_itself(env: Env) -> None:
    runs = []
    for _ in range(2):
        env.sb.set_faults(Faults(error_rate_500=0.5, seed=7))
        runs.append([env.api.lookup(synthetic_fodselsnummer()).status_code for _ in range(16)])
    assert runs[0] == runs[1] and set(runs[0]) == {200, 500}


def test_drop_closes_the_connection_without_an_answer(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="conformance.sandbox")
    env.sb.set_faults(Faults(drop_rate=1))
    with httpx.Client(base_url=env.sb.kfr_base_url) as http, pytest.raises(httpx.TransportError):
        http.post(
            f"/customers/financialInstitutions/{env.bank.orgnr}/relationshipType/DSOPBANK",
            headers=env.api.headers(synthetic_fodselsnummer()),
        )
    env.sb.set_faults(Faults())
    assert env.api.lookup(synthetic_fodselsnummer()).status_code == 200, "the server lives on"
    # The server thread logs the drop after closing the socket: give it a moment.
    deadline = time.monotonic() + 3
    while not any(" dropped " in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the drop was not logged"
        time.sleep(0.02)


def test_token_lifetime_fault_makes_kfr_refuse_soon(env: Env, bank_api: Callable[..., Any]) -> None:
    env.sb.set_faults(Faults(token_lifetime_s=1))
    short = bank_api(env.bank)
    assert short.add(synthetic_fodselsnummer()).status_code == 201
    exp = jwt.decode(short.token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    assert short.add(synthetic_fodselsnummer()).json()["errorCode"] == "KFR-001"


def test_faults_over_http_from_another_process_view(env: Env) -> None:
    with httpx.Client(base_url=env.sb.base_url) as http:
        assert http.get("/_sandbox/faults").json() == Faults().to_dict()
        put = http.put("/_sandbox/faults", json={"fail_next": 1, "misbehave": ["lookup_empty"]})
        assert put.status_code == 200 and put.json()["fail_next"] == 1
        assert env.sb.faults == Faults(fail_next=1, misbehave=frozenset({"lookup_empty"}))
        assert env.api.lookup(synthetic_fodselsnummer()).status_code == 500
        for bad in (
            {"drop_rate": 3},
            {"misbehave": ["nope"]},
            {"unknown": 1},
            [1, 2],
            {"gateway_error_statuses": [404]},
            {"gateway_error_statuses": 502},
            {"retry_after_s": "soon"},
        ):
            response = http.put("/_sandbox/faults", json=bad)
            assert response.status_code == 400 and response.json()["error"]
        gateway = {
            "throttle_next": 2,
            "retry_after_s": 3,
            "gateway_error_statuses": [503],
            "gateway_error_body": "html",
            "validate_birth_dates": True,
        }
        put = http.put("/_sandbox/faults", json=gateway)
        assert put.status_code == 200
        assert {k: put.json()[k] for k in gateway} == gateway
        assert env.sb.faults.throttle_next == 2 and env.sb.faults.gateway_error_statuses == (503,)
        assert env.api.lookup(synthetic_fodselsnummer()).status_code == 429
        assert http.get("/_sandbox/faults").json()["throttle_next"] == 1, "the burst counts down"
        assert http.put("/_sandbox/faults", content=b"{not json").status_code == 400
        status = http.get("/_sandbox/status").json()
        assert status["maskinporten_issuer"] == env.sb.maskinporten_issuer


# ---------------------------------------------------------------- the deliberately wrong KFR


def _added_then_ended(e: Any, customer: str) -> int:
    assert e.api.add(customer).status_code == 201
    return e.api.end(customer).status_code


def _batch_then_found(env: Env, entry: str, **period: str) -> bool:
    customer = entry.split("#")[0]
    assert env.api.batch(entry).status_code == 201
    assert env.sb.wait_for_ingestion(10)
    return env.api.found(customer, **period)


def _ended_then_found_before(env: Env) -> bool:
    customer = synthetic_fodselsnummer()
    assert env.api.batch(f"{customer}#2020-01-15").status_code == 201
    assert env.sb.wait_for_ingestion(10)
    assert env.api.end(customer).status_code == 204
    return env.api.found(customer, from_date="2021-01-01", to_date="2021-12-31")


def _fresh_token_add(env: Env) -> int:
    token = obtain_token(env.bank, env.sb.maskinporten_issuer, [WRITE_SCOPE])
    return env.api.add(synthetic_fodselsnummer(), Authorization=f"Bearer {token}").status_code


def _added_then_listed(env: Env) -> list[Any]:
    customer = synthetic_orgnr()
    env.api.add(customer)
    return [(b["organizationID"], b["bankName"]) for b in env.api.lookup(customer).json()["banks"]]


def _oversized_batch(env: Env) -> int:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\n\r\n{synthetic_orgnr()}'
    )
    body = (head + " " * (10 * 1024 * 1024) + f"\r\n--{BOUNDARY}--\r\n").encode()
    return env.api.batch(body=body).status_code


# name -> (action, answer of a correct KFR, answer when misbehaving)
CASES: dict[str, tuple[Callable[[Env], Any], Any, Any]] = {
    "skip_customer_id_check": (
        lambda e: e.api.add(invalid_check_digit(synthetic_fodselsnummer())).status_code,
        400,
        201,
    ),
    "skip_type_check": (
        lambda e: e.api.add(synthetic_fodselsnummer(), rel_type="DSOPFOO").status_code,
        400,
        201,
    ),
    "skip_correlation_check": (
        lambda e: e.api.add(synthetic_fodselsnummer(), CorrelationID=None).status_code,
        400,
        201,
    ),
    "skip_fid_check": (
        lambda e: e.api.add(synthetic_fodselsnummer(), fid=e.other.orgnr).status_code,
        403,
        201,
    ),
    "skip_auth": (
        lambda e: e.api.add(synthetic_fodselsnummer(), Authorization=None).status_code,
        401,
        201,
    ),
    "skip_scope_check": (lambda e: e.alt_api.add(synthetic_fodselsnummer()).status_code, 403, 201),
    "always_201": (
        lambda e: [e.api.add(c).status_code for c in [synthetic_orgnr()] * 2],
        [201, 200],
        [201, 201],
    ),
    "delete_missing_204": (lambda e: e.api.end(synthetic_fodselsnummer()).status_code, 404, 204),
    "end_returns_200": (lambda e: _added_then_ended(e, synthetic_fodselsnummer()), 204, 200),
    "forget_history": (_ended_then_found_before, True, False),
    "never_ingest": (lambda e: _batch_then_found(e, synthetic_fodselsnummer()), True, False),
    "ignore_batch_dates": (
        lambda e: _batch_then_found(
            e, f"{synthetic_orgnr()}#2019-11-08", from_date="2019-11-08", to_date="2019-11-08"
        ),
        True,
        False,
    ),
    "skip_batch_date_check": (
        lambda e: e.api.batch(f"{synthetic_orgnr()}#2019-13-45").status_code,
        400,
        201,
    ),
    "accept_any_boundary": (
        lambda e: (
            e.api.batch(
                synthetic_orgnr(), content_type=f'multipart/form-data; boundary="{BOUNDARY}"'
            ).status_code
        ),
        403,
        201,
    ),
    "no_size_limit": (_oversized_batch, 413, 201),
    "lookup_empty": (lambda e: len(_added_then_listed(e)), 1, 0),
    "wrong_bank_name": (lambda e: _added_then_listed(e)[0][1] == e.bank.name, True, False),
    "token_wrong_scope": (_fresh_token_add, 201, 403),
}


def test_every_misbehaviour_has_a_case() -> None:
    assert set(CASES) == set(MISBEHAVIOURS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_misbehaviour_changes_the_answer(env: Env, name: str) -> None:
    action, correct, wrong = CASES[name]
    env.sb.set_faults(Faults())
    assert action(env) == correct
    env.sb.set_faults(Faults(misbehave=frozenset({name})))
    assert action(env) == wrong
