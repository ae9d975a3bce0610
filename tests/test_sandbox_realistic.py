"""The sandbox as Bits' test environment is: an API gateway in front of KFR.

Over real HTTP against running sandboxes, in both modes where the behaviour is shared:
the gateway's own answers (401, 429, 502/503/504, the firewall's HTML 403) with their
exact shapes and headers, that they never change KFR's state, revoked tokens, seeded
faults, the strict birth-date switch, and the upload limit at the socket level.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from stdnum.no import fodselsnummer

from conformance.ids import synthetic_d_nummer, synthetic_fodselsnummer, synthetic_orgnr
from conformance.sandbox import (
    BankCredentials,
    Faults,
    RunningSandbox,
    SandboxSettings,
    start_sandbox,
)
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import BANK_ALT_SCOPE, WRITE_SCOPE
from conformance.sandbox.maskinporten import SigningKey
from conftest import BankApi

BOUNDARY = "873380600719114776488944"
GATEWAY_401 = {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid"}
LIMIT = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def realistic_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    data_dir = tmp_path_factory.mktemp("realistic")
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None), realistic=True) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _reset_realistic_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "realistic_sandbox" in request.fixturenames:
        request.getfixturevalue("realistic_sandbox").set_faults(Faults())


@dataclass
class Env:
    sb: RunningSandbox
    bank: BankCredentials
    api: Any  # conftest.BankApi

    @property
    def realistic(self) -> bool:
        return self.sb.realistic


@pytest.fixture(scope="module")
def _banks(
    sandbox: RunningSandbox,
    realistic_sandbox: RunningSandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[RunningSandbox, BankCredentials]]:
    return {
        name: (sb, sb.register_bank(synthetic_orgnr(), out_dir=tmp_path_factory.mktemp(name)))
        for name, sb in (("default", sandbox), ("realistic", realistic_sandbox))
    }


@pytest.fixture(params=["default", "realistic"])
def env(
    request: pytest.FixtureRequest,
    _banks: dict[str, tuple[RunningSandbox, BankCredentials]],
    bank_api: Callable[..., Any],
) -> Env:
    sb, bank = _banks[request.param]
    return Env(sb, bank, bank_api(bank, sb=sb))


@pytest.fixture
def gateway(_banks: dict[str, tuple[RunningSandbox, BankCredentials]], bank_api: Any) -> Env:
    sb, bank = _banks["realistic"]
    return Env(sb, bank, bank_api(bank, sb=sb))


def _signed_token(sb: RunningSandbox, bank: BankCredentials, **overrides: Any) -> str:
    """A token as the sandbox's Maskinporten would sign it, with claims changed."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": sb.maskinporten_issuer,
        "client_amr": "virksomhetssertifikat",
        "token_type": "Bearer",
        "scope": WRITE_SCOPE,
        "client_id": bank.client_id,
        "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{bank.orgnr}"},
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return SigningKey(sb.data_dir).sign(claims)


def _foreign_token(sb: RunningSandbox, bank: BankCredentials) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    decoded = jwt.decode(_signed_token(sb, bank), options={"verify_signature": False})
    return jwt.encode(decoded, key, algorithm="RS256")


def _assert_gateway_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == GATEWAY_401
    assert "correlationid" not in response.headers, "the gateway does not echo KFR's headers"


def _assert_kfr_001(response: httpx.Response, correlation_id: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"errorCode", "errorMessage", "timestamp"}
    assert body["errorCode"] == "KFR-001"
    assert response.headers["correlationid"] == correlation_id


# ---------------------------------------------------------------- authentication


AUTH_FAILURES: dict[str, Callable[[RunningSandbox, BankCredentials], str | None]] = {
    "missing": lambda sb, bank: None,
    "not bearer": lambda sb, bank: "Basic " + "dXNlcjpwYXNz",
    "empty bearer": lambda sb, bank: "Bearer",
    "not a jwt": lambda sb, bank: "Bearer not-a-jwt",
    "expired": lambda sb, bank: (
        "Bearer " + _signed_token(sb, bank, iat=int(time.time()) - 600, exp=int(time.time()) - 300)
    ),
    "wrongly signed": lambda sb, bank: "Bearer " + _foreign_token(sb, bank),
    "another issuer": lambda sb, bank: (
        "Bearer " + _signed_token(sb, bank, iss="https://test.maskinporten.example/")
    ),
}


@pytest.mark.parametrize("failure", sorted(AUTH_FAILURES))
def test_authentication_failures_by_mode(env: Env, failure: str) -> None:
    authorization = AUTH_FAILURES[failure](env.sb, env.bank)
    customer = synthetic_fodselsnummer()
    correlation_id = str(uuid.uuid4())
    response = env.api.add(customer, Authorization=authorization, CorrelationID=correlation_id)
    if env.realistic:
        _assert_gateway_401(response)
    else:
        _assert_kfr_001(response, correlation_id)
    assert not env.api.found(customer), "a refused request changes nothing"
    # The positive control: the same request with a valid token is accepted.
    assert env.api.add(customer).status_code == 201


def test_scope_fid_and_header_errors_still_come_from_kfr(
    gateway: Env, bank_api: Callable[..., Any], other_bank_in_realistic: BankCredentials
) -> None:
    alt = bank_api(gateway.bank, sb=gateway.sb, scopes=[BANK_ALT_SCOPE])
    scope = alt.add(synthetic_fodselsnummer())
    assert (scope.status_code, scope.json()["errorCode"]) == (403, "KFR-002")
    fid = gateway.api.add(synthetic_fodselsnummer(), fid=other_bank_in_realistic.orgnr)
    assert (fid.status_code, fid.json()["errorCode"]) == (403, "KFR-003")
    header = gateway.api.add(synthetic_fodselsnummer(), CorrelationID="not-a-uuid")
    assert (header.status_code, header.json()["errorCode"]) == (400, "KFR-004")
    lookup = gateway.api.lookup("12345")
    assert (lookup.status_code, lookup.json()["errorCode"]) == (400, "ERR-002")


@pytest.fixture
def other_bank_in_realistic(gateway: Env, tmp_path: Path) -> BankCredentials:
    return gateway.sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "other")


def test_a_batch_without_a_token_is_refused_by_the_gateway_before_kfr(gateway: Env) -> None:
    customers = [synthetic_fodselsnummer() for _ in range(3)]
    padding = " " * (2 * 1024 * 1024)  # a body the gateway has to read past
    response = gateway.api.batch(",".join(customers) + padding, Authorization=None)
    _assert_gateway_401(response)
    assert gateway.sb.wait_for_ingestion(5)
    assert not any(gateway.api.found(c) for c in customers)
    assert gateway.api.batch(",".join(customers)).status_code == 201, "positive control"


def test_the_openapi_description_is_not_behind_the_gateway(gateway: Env) -> None:
    response = httpx.get(gateway.sb.kfr_base_url + "/openapi.yaml", timeout=10)
    assert response.status_code == 200 and b"openapi" in response.content


def test_the_mode_is_visible(gateway: Env, sandbox: RunningSandbox) -> None:
    assert gateway.sb.realistic and not sandbox.realistic
    for sb in (gateway.sb, sandbox):
        status = httpx.get(sb.base_url + "/_sandbox/status", timeout=10).json()
        assert status["realistic"] is sb.realistic


# ---------------------------------------------------------------- revoked tokens


@pytest.mark.parametrize("realistic", [False, True], ids=["default", "realistic"])
def test_revoked_tokens_are_refused_and_new_ones_work(
    realistic: bool,
    sandbox_factory: Callable[..., RunningSandbox],
    bank_api: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sb = sandbox_factory(data_dir=tmp_path / "sb", ingest_rate=None, realistic=realistic)
    bank = sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "bank")
    before = bank_api(bank, sb=sb)
    assert before.add(synthetic_fodselsnummer()).status_code == 201

    revoked = httpx.post(sb.base_url + "/_sandbox/revoke-tokens", timeout=10)
    assert revoked.status_code == 200 and revoked.json()["revoked"] >= 1

    customer, correlation_id = synthetic_fodselsnummer(), str(uuid.uuid4())
    refused = before.add(customer, CorrelationID=correlation_id)
    if realistic:
        _assert_gateway_401(refused)
    else:
        _assert_kfr_001(refused, correlation_id)
    after = bank_api(bank, sb=sb)
    assert not after.found(customer)
    assert after.add(customer).status_code == 201, "a token issued after the revocation works"


def test_revocation_covers_tokens_another_process_issued(
    sandbox_factory: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    first = sandbox_factory(data_dir=tmp_path / "shared", ingest_rate=None, realistic=True)
    second = sandbox_factory(data_dir=tmp_path / "shared", ingest_rate=None, realistic=True)
    bank = first.register_bank(synthetic_orgnr(), out_dir=tmp_path / "bank")
    # Issued by the other sandbox on the same data folder (same signing key), used on this one.
    api = BankApi(first, bank, obtain_token(bank, second.maskinporten_issuer, [WRITE_SCOPE]))
    try:
        assert api.add(synthetic_fodselsnummer()).status_code == 201
        assert first.revoke_tokens() == 0, "this sandbox issued none of them"
        _assert_gateway_401(api.add(synthetic_fodselsnummer()))
    finally:
        api.close()


# ---------------------------------------------------------------- gateway faults


def _gateway_refusal_leaves_kfr_alone(env: Env, faults: Faults) -> list[httpx.Response]:
    """Send an add, an end and a batch through ``faults``; assert KFR saw none of them."""
    existing, new, batched = synthetic_fodselsnummer(), synthetic_orgnr(), synthetic_d_nummer()
    assert env.api.add(existing).status_code == 201
    count = env.sb.relationship_count(env.bank.orgnr)
    env.sb.set_faults(faults)
    responses = [env.api.add(new), env.api.end(existing), env.api.batch(batched)]
    env.sb.set_faults(Faults())
    assert env.sb.wait_for_ingestion(5)
    assert env.sb.relationship_count(env.bank.orgnr) == count
    assert env.api.found(existing) and not env.api.found(new) and not env.api.found(batched)
    return responses


def test_throttling_is_429_with_retry_after(env: Env) -> None:
    faults = Faults(throttle_next=3, retry_after_s=7)
    for response in _gateway_refusal_leaves_kfr_alone(env, faults):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "statusCode": 429,
            "message": "Rate limit is exceeded. Try again in 7 seconds.",
        }
        assert "correlationid" not in response.headers
    env.sb.set_faults(Faults(throttle_next=1))
    assert env.api.lookup(synthetic_orgnr()).status_code == 429
    assert env.api.lookup(synthetic_orgnr()).status_code == 200, "the burst is over"
    assert env.sb.faults.throttle_next == 0


REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("body", ["json", "html"])
def test_gateway_errors_in_json_or_html(env: Env, status: int, body: str) -> None:
    faults = Faults(gateway_error_next=3, gateway_error_statuses=(status,), gateway_error_body=body)
    for response in _gateway_refusal_leaves_kfr_alone(env, faults):
        assert response.status_code == status
        assert "correlationid" not in response.headers
        if body == "json":
            assert response.headers["content-type"] == "application/json"
            data = response.json()
            assert set(data) == {"statusCode", "message"} and data["statusCode"] == status
        else:
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert f"<title>{status} {REASONS[status]}</title>" in response.text
            assert "errorCode" not in response.text


def test_the_firewall_answers_an_html_403_and_closes(env: Env) -> None:
    for response in _gateway_refusal_leaves_kfr_alone(env, Faults(firewall_next=3)):
        assert response.status_code == 403
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["connection"] == "close"
        assert "<title>Request Rejected</title>" in response.text
        assert re.search(r"Your support ID is: \d+", response.text)
        assert "errorCode" not in response.text


def test_gateway_faults_reach_neither_maskinporten_nor_the_openapi_file(env: Env) -> None:
    env.sb.set_faults(Faults(firewall_rate=0.5, throttle_rate=0.5, gateway_error_rate=1))
    assert obtain_token(env.bank, env.sb.maskinporten_issuer, [WRITE_SCOPE])
    assert httpx.get(env.sb.kfr_base_url + "/openapi.yaml", timeout=10).status_code == 200


def _fault_sequence(env: Env, seed: int) -> list[tuple[int, str]]:
    env.sb.set_faults(
        Faults(
            firewall_rate=0.1,
            throttle_rate=0.2,
            gateway_error_rate=0.2,
            gateway_error_body="mixed",
            error_rate_500=0.1,
            seed=seed,
        )
    )
    seen = []
    for _ in range(40):
        response = env.api.lookup(synthetic_orgnr())
        seen.append((response.status_code, response.headers["content-type"].split(";")[0]))
    return seen


def test_seeded_gateway_faults_repeat_themselves(env: Env) -> None:
    first, again, other = (
        _fault_sequence(env, 11),
        _fault_sequence(env, 11),
        _fault_sequence(env, 12),
    )
    assert first == again
    assert first != other
    kinds = set(first)
    assert {(200, "application/json"), (429, "application/json"), (403, "text/html")} <= kinds
    assert {status for status, _ in first} & {502, 503, 504}
    assert (500, "application/json") in kinds, "KFR's own faults still come after the gateway"


# ---------------------------------------------------------------- a strict environment


def _nav_synthetic_fodselsnummer(born: dt.date, individual: int) -> str:
    """A synthetic number with NAV's month + 40: a real date as python-stdnum reads it."""
    base = f"{born.day:02d}{born.month + 40:02d}{born.year % 100:02d}{individual:03d}"
    while True:
        k1 = fodselsnummer.calc_check_digit1(base)
        k2 = fodselsnummer.calc_check_digit2(base + k1)
        if len(k1) == 1 and len(k2) == 1:
            return base + k1 + k2
        individual += 1
        base = base[:6] + f"{individual:03d}"


def test_birth_dates_validated_like_python_stdnum(env: Env) -> None:
    tenor, tenor_d = synthetic_fodselsnummer(), synthetic_d_nummer()
    strict_ok = _nav_synthetic_fodselsnummer(dt.date(1985, 3, 14), 123)
    assert fodselsnummer.is_valid(strict_ok) and not fodselsnummer.is_valid(tenor)
    orgnr = synthetic_orgnr()

    env.sb.set_faults(Faults(validate_birth_dates=True))
    for refused in (tenor, tenor_d):
        response = env.api.add(refused)
        assert (response.status_code, response.json()["errorCode"]) == (400, "KFR-005")
        assert env.api.lookup(refused).json()["errorCode"] == "ERR-002"
    batch = env.api.batch(f"{orgnr},{strict_ok},{tenor}")
    assert (batch.status_code, batch.json()["errorCode"]) == (400, "KFR-005")
    assert "element 3" in batch.json()["errorMessage"]
    assert env.api.add(strict_ok).status_code == 201
    assert env.api.batch(f"{orgnr},{strict_ok}").status_code == 201

    env.sb.set_faults(Faults())
    assert env.sb.wait_for_ingestion(5)
    assert env.api.found(orgnr) and not env.api.found(tenor)
    assert env.api.add(tenor).status_code == 201, "by default Tenor's numbers are accepted"


# ---------------------------------------------------------------- the upload limit, on the socket


def _file_body(file_size: int, customer: str) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    )
    return (head + customer.ljust(file_size) + f"\r\n--{BOUNDARY}--\r\n").encode()


def _request_head(env: Env, length: int) -> bytes:
    return (
        f"POST /kar-ws/api/v1/customers/financialInstitutions/{env.bank.orgnr}/batch HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {env.api.token}\r\n"
        f"CorrelationID: {uuid.uuid4()}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; False if it kept the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:  # closed while our upload was still arriving
        pass
    return data, True


def _status_and_headers(data: bytes) -> tuple[int, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def test_a_file_part_just_over_the_limit_is_answered_at_once_and_closed(env: Env) -> None:
    body = _file_body(LIMIT + 1, synthetic_orgnr())
    with socket.create_connection(("127.0.0.1", env.sb.port)) as sock:
        sock.sendall(_request_head(env, len(body)))
        sender = threading.Thread(target=_send_quietly, args=(sock, body), daemon=True)
        started = time.monotonic()
        sender.start()
        data, closed = _read_until_closed(sock, timeout=25)
        answered_in = time.monotonic() - started
    status, headers = _status_and_headers(data)
    assert status == 413 and headers["connection"] == "close"
    assert b'"errorCode": "KFR-004"' in data
    assert closed, "the server must close the connection, not wait for keep-alive"
    # Measured: the answer and the close come with the upload, not after the 30 s keep-alive.
    assert answered_in < 10, answered_in


def test_an_oversized_declared_length_is_refused_before_the_body_is_sent(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.sb.port)) as sock:
        started = time.monotonic()
        sock.sendall(_request_head(env, 50 * 1024 * 1024))  # and never a byte of body
        data, closed = _read_until_closed(sock, timeout=25)
        answered_in = time.monotonic() - started
    status, headers = _status_and_headers(data)
    assert status == 413 and headers["connection"] == "close" and closed
    assert answered_in < 5, answered_in  # measured: no waiting for a body that is not coming


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body, leaving the connection as it is."""
    sock.settimeout(25)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    status, headers = _status_and_headers(data)
    body = data.split(b"\r\n\r\n", 1)[1]
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return status, headers, body


def test_a_body_over_the_limit_with_a_file_part_under_is_accepted_and_kept_alive(
    env: Env,
) -> None:
    customer = synthetic_orgnr()
    comment = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="comment"\r\n\r\n{"x" * 8192}\r\n'
    )
    body = comment.encode() + _file_body(LIMIT - 100, customer)
    assert len(body) > LIMIT
    lookup = (
        f"GET /kar-ws/api/v1/customers/financialInstitutions/{env.bank.orgnr}/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {env.api.token}\r\n"
        f"CorrelationID: {uuid.uuid4()}\r\nCustomerID: {customer}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", env.sb.port)) as sock:
        sock.sendall(_request_head(env, len(body)) + body)
        status, headers, _ = _read_response(sock)
        assert status == 201 and "connection" not in headers
        # The same connection serves the next request: an accepted upload does not close it.
        assert env.sb.wait_for_ingestion(10)
        sock.sendall(lookup)
        status, _, found = _read_response(sock)
    assert status == 200 and env.bank.orgnr.encode() in found


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    # The server may close while we are still sending: that is the point.
    with contextlib.suppress(OSError):
        sock.sendall(data)
