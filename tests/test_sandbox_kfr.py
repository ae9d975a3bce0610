"""The KFR simulator over real HTTP: every operation, every row of the error table, history."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.ids import (
    invalid_check_digit,
    synthetic_d_nummer,
    synthetic_fodselsnummer,
    synthetic_orgnr,
)
from conformance.sandbox import BankCredentials, RunningSandbox, SandboxSettings, start_sandbox
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.context import oslo_today
from conformance.sandbox.credentials import ACCOUNT_SCOPE, AGENCY_SCOPE, BANK_ALT_SCOPE
from conformance.sandbox.maskinporten import SigningKey

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"errorCode", "errorMessage", "timestamp"}, body
    assert body["errorCode"] == code, body
    assert body["errorMessage"] and TIMESTAMP.match(body["timestamp"])
    return body


@pytest.fixture(scope="module")
def shared_bank(
    sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> BankCredentials:
    """Most tests here need a bank, not a fresh one: certificates are slow to make."""
    return sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path_factory.mktemp("kfr-bank"))


@pytest.fixture(scope="module")
def second_bank(
    sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory, shared_bank: BankCredentials
) -> BankCredentials:
    orgnr = synthetic_orgnr()
    while orgnr == shared_bank.orgnr:
        orgnr = synthetic_orgnr()
    return sandbox.register_bank(orgnr, out_dir=tmp_path_factory.mktemp("kfr-bank-2"))


@pytest.fixture(scope="module")
def api(shared_bank: BankCredentials, bank_api: Callable[..., Any]) -> Any:
    return bank_api(shared_bank)


# ---------------------------------------------------------------- the bank's four operations


@pytest.mark.parametrize("make_id", [synthetic_fodselsnummer, synthetic_d_nummer, synthetic_orgnr])
def test_add_then_add_again_then_lookup(
    api: Any, shared_bank: BankCredentials, make_id: Callable[[], str]
) -> None:
    customer = make_id()
    correlation_id = str(uuid.uuid4())
    first = api.add(customer, CorrelationID=correlation_id)
    assert first.status_code == 201, first.text
    assert first.headers["CorrelationID"] == correlation_id
    assert api.add(customer).status_code == 200
    lookup = api.lookup(customer)
    assert lookup.status_code == 200
    assert lookup.json() == {
        "banks": [
            {
                "organizationID": shared_bank.orgnr,
                "bankName": shared_bank.name,
                "activeAccount": False,
            }
        ]
    }


def test_end_then_end_again_is_kfr_008(api: Any) -> None:
    customer = synthetic_fodselsnummer()
    assert api.add(customer).status_code == 201
    correlation_id = str(uuid.uuid4())
    ended = api.end(customer, CorrelationID=correlation_id)
    assert ended.status_code == 204 and ended.content == b""
    assert ended.headers["CorrelationID"] == correlation_id
    again = api.end(customer, CorrelationID=correlation_id)
    assert_error(again, 404, "KFR-008")
    assert again.headers["CorrelationID"] == correlation_id


def test_lookup_of_an_unknown_customer_is_an_empty_list(api: Any) -> None:
    response = api.lookup(synthetic_fodselsnummer())
    assert response.status_code == 200 and response.json() == {"banks": []}


def test_lookup_path_works_without_the_trailing_slash(
    api: Any, shared_bank: BankCredentials
) -> None:
    customer = synthetic_orgnr()
    api.add(customer)
    response = api.http.get(
        f"/customers/financialInstitutions/{shared_bank.orgnr}", headers=api.headers(customer)
    )
    assert (
        response.status_code == 200
        and response.json()["banks"][0]["organizationID"] == shared_bank.orgnr
    )


def test_own_bank_lookup_does_not_show_other_banks(
    api: Any, second_bank: BankCredentials, bank_api: Callable[..., Any]
) -> None:
    customer = synthetic_fodselsnummer()
    assert bank_api(second_bank).add(customer).status_code == 201
    assert api.lookup(customer).json() == {"banks": []}


# ---------------------------------------------------------------- the error table, bank operations


@pytest.fixture(scope="module")
def forged_tokens(
    sandbox: RunningSandbox, shared_bank: BankCredentials, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Tokens KFR must refuse with 401: another key, expired, another sandbox, unsigned."""
    bank = shared_bank
    now = int(time.time())
    claims = {
        "iss": sandbox.maskinporten_issuer,
        "client_id": bank.client_id,
        "client_amr": "virksomhetssertifikat",
        "scope": "bits:kundeforhold.write",
        "token_type": "Bearer",
        "iat": now,
        "exp": now + 120,
        "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{bank.orgnr}"},
        "jti": str(uuid.uuid4()),
    }
    real_key = SigningKey(sandbox.data_dir)
    thief = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with start_sandbox(SandboxSettings(data_dir=elsewhere / "data")) as other:
        other_creds = other.register_bank(bank.orgnr, bank.name, elsewhere / "creds")
        yield {
            "another_key": jwt.encode(
                claims, thief, algorithm="RS256", headers={"kid": real_key.kid}
            ),
            "expired": real_key.sign({**claims, "iat": now - 300, "exp": now - 180}),
            "another_sandbox": obtain_token(
                other_creds, other.maskinporten_issuer, ["bits:kundeforhold.write"]
            ),
            "unsigned": jwt.encode(claims, None, algorithm="none"),
            "garbage": "not-a-token",
        }


@pytest.mark.parametrize("method", ["add", "end"])
def test_kfr_001_without_a_valid_token(
    api: Any, forged_tokens: dict[str, str], method: str
) -> None:
    call = getattr(api, method)
    customer = synthetic_fodselsnummer()
    assert_error(call(customer, Authorization=None), 401, "KFR-001")
    assert_error(call(customer, Authorization="Basic dXNlcjpwYXNz"), 401, "KFR-001")
    for name, token in forged_tokens.items():
        response = call(customer, Authorization=f"Bearer {token}")
        assert response.status_code == 401, f"{name}: {response.text}"
        assert_error(response, 401, "KFR-001")


@pytest.mark.parametrize("method", ["add", "end", "batch"])
def test_kfr_002_token_without_the_write_scope(
    shared_bank: BankCredentials, bank_api: Callable[..., Any], method: str
) -> None:
    api = bank_api(shared_bank, scopes=[BANK_ALT_SCOPE])
    response = (
        api.batch(synthetic_orgnr())
        if method == "batch"
        else getattr(api, method)(synthetic_fodselsnummer())
    )
    assert_error(response, 403, "KFR-002")


@pytest.mark.parametrize("method", ["add", "end", "batch"])
def test_kfr_003_another_banks_fid(api: Any, second_bank: BankCredentials, method: str) -> None:
    if method == "batch":
        response = api.batch(synthetic_orgnr(), fid=second_bank.orgnr)
    else:
        response = getattr(api, method)(synthetic_fodselsnummer(), fid=second_bank.orgnr)
    assert_error(response, 403, "KFR-003")


@pytest.mark.parametrize("method", ["add", "end"])
@pytest.mark.parametrize(
    "headers",
    [
        {"CorrelationID": None},
        {"CorrelationID": "not-a-uuid"},
        {"CorrelationID": "294fafb70e4e4177a5ffce7367c45814"},
    ],
)
def test_kfr_004_missing_or_malformed_correlation_id(
    api: Any, method: str, headers: dict[str, Any]
) -> None:
    assert_error(getattr(api, method)(synthetic_fodselsnummer(), **headers), 400, "KFR-004")


def test_kfr_004_missing_customer_id(api: Any) -> None:
    assert_error(api.add(None), 400, "KFR-004")
    assert_error(api.end(None), 400, "KFR-004")


@pytest.mark.parametrize("method", ["add", "end"])
@pytest.mark.parametrize("bad", ["check_digit", "ten_digits", "letters", "orgnr_check_digit"])
def test_kfr_005_invalid_customer_id(api: Any, method: str, bad: str) -> None:
    customer = {
        "check_digit": invalid_check_digit(synthetic_fodselsnummer()),
        "ten_digits": "0590980321",
        "letters": "0590980321X",
        "orgnr_check_digit": invalid_check_digit(synthetic_orgnr()),
    }[bad]
    assert_error(getattr(api, method)(customer), 400, "KFR-005")


@pytest.mark.parametrize("method", ["add", "end"])
def test_kfr_009_invalid_relationship_type(api: Any, method: str) -> None:
    assert_error(
        getattr(api, method)(synthetic_fodselsnummer(), rel_type="DSOPFOO"), 400, "KFR-009"
    )


# ---------------------------------------------------------------- the error table, lookups


def test_err_001_lookup_without_access(
    api: Any,
    shared_bank: BankCredentials,
    second_bank: BankCredentials,
    bank_api: Callable[..., Any],
) -> None:
    customer = synthetic_fodselsnummer()
    assert_error(api.lookup(customer, Authorization=None), 401, "ERR-001")
    assert_error(bank_api(shared_bank, scopes=[BANK_ALT_SCOPE]).lookup(customer), 403, "ERR-001")
    assert_error(api.lookup(customer, fid=second_bank.orgnr), 403, "ERR-001")


@pytest.mark.parametrize("customer", [None, "", "12345678901", "abc"])
def test_err_002_lookup_with_invalid_customer_id(api: Any, customer: str | None) -> None:
    assert_error(api.lookup(customer), 400, "ERR-002")


@pytest.mark.parametrize(
    "period",
    [
        {"from_date": "2021-13-01"},
        {"to_date": "01.01.2021"},
        {"from_date": "2021-02-30"},
        {"from_date": "2022-01-01", "to_date": "2021-01-01"},
        {"from_date": "20210101"},
    ],
)
def test_err_003_lookup_with_invalid_period(api: Any, period: dict[str, str]) -> None:
    assert_error(api.lookup(synthetic_fodselsnummer(), **period), 400, "ERR-003")


# ---------------------------------------------------------------- history


def test_history_is_kept_after_end(
    bank: BankCredentials, bank_api: Callable[..., Any], sandbox: RunningSandbox
) -> None:
    """Started 2020-01-15 (by batch, the only way to give a start date), ended today."""
    api = bank_api(bank)
    customer = synthetic_fodselsnummer()
    assert api.batch(f"{customer}#2020-01-15").status_code == 201
    assert sandbox.wait_for_ingestion(10)
    assert not api.found(customer, from_date="2019-01-01", to_date="2020-01-14")
    assert api.found(customer, from_date="2020-01-15", to_date="2020-01-15")
    assert api.end(customer).status_code == 204
    assert api.found(customer, from_date="2021-01-01", to_date="2021-12-31")
    assert api.found(customer)  # it was a customer relationship today, until it ended
    tomorrow = oslo_today() + dt.timedelta(days=1)
    assert not api.found(customer, from_date=tomorrow, to_date=tomorrow + dt.timedelta(days=30))
    # Adding it again starts a new relationship; the old one is still history.
    assert api.add(customer).status_code == 201
    assert sandbox.relationship_count(api.creds.orgnr) == 2
    assert sandbox.relationship_count(api.creds.orgnr, active_only=True) == 1


def test_a_relationship_added_today_is_not_found_for_yesterday(api: Any) -> None:
    customer = synthetic_orgnr()
    api.add(customer)
    yesterday = oslo_today() - dt.timedelta(days=1)
    assert not api.found(customer, from_date=yesterday - dt.timedelta(days=10), to_date=yesterday)
    assert api.found(customer, from_date=yesterday, to_date=oslo_today())


# ---------------------------------------------------------------- agency operations


def test_customer_relationships_lists_every_bank(
    sandbox: RunningSandbox,
    api: Any,
    shared_bank: BankCredentials,
    second_bank: BankCredentials,
    bank_api: Callable[..., Any],
    tmp_path: Path,
) -> None:
    customer = synthetic_fodselsnummer()
    api.add(customer)
    bank_api(second_bank).add(customer)
    agency = sandbox.register_agency(synthetic_orgnr(), "Testetaten", tmp_path / "agency")
    token = obtain_token(agency, sandbox.maskinporten_issuer, [AGENCY_SCOPE])
    headers = {
        "Authorization": f"Bearer {token}",
        "CustomerID": customer,
        "Accept": "application/json",
    }
    with httpx.Client(base_url=sandbox.kfr_base_url) as http:
        found = http.get("/customers/customerRelationships", headers=headers).json()["banks"]
        assert {b["organizationID"]: b["bankName"] for b in found} == {
            shared_bank.orgnr: shared_bank.name,
            second_bank.orgnr: second_bank.name,
        }
        assert all(b["activeAccount"] is False for b in found)
        assert_error(
            http.get("/customers/customerRelationships", headers={**headers, "Authorization": ""}),
            401,
            "ERR-001",
        )
        assert_error(
            http.get("/customers/customerRelationships", headers=api.headers(customer)),
            403,
            "ERR-001",
        )
        assert_error(
            http.get("/customers/customerRelationships", headers={**headers, "CustomerID": "1"}),
            400,
            "ERR-002",
        )
        assert_error(
            http.get("/customers/customerRelationships", params={"fromDate": "x"}, headers=headers),
            400,
            "ERR-003",
        )
        assert_error(
            http.get(
                "/customers/customerRelationships", headers={**headers, "Accept": "text/html"}
            ),
            406,
            "KFR-004",
        )


def test_account_servicing_provider(
    sandbox: RunningSandbox, shared_bank: BankCredentials, tmp_path: Path
) -> None:
    account = "15030012345"
    sandbox.register_account(account, shared_bank.orgnr)
    agency = sandbox.register_agency(
        synthetic_orgnr(), "Kontoetaten", tmp_path / "agency", scopes=(ACCOUNT_SCOPE,)
    )
    token = obtain_token(agency, sandbox.maskinporten_issuer, [ACCOUNT_SCOPE])
    headers = {
        "Authorization": f"Bearer {token}",
        "AccountID": account,
        "CorrelationID": str(uuid.uuid4()),
    }
    with httpx.Client(base_url=sandbox.kfr_base_url) as http:
        path = "/customers/accountServicingProvider"
        ok = http.get(path, headers=headers)
        assert ok.status_code == 200 and ok.json() == {
            "organizationId": shared_bank.orgnr,
            "bankName": shared_bank.name,
        }
        assert ok.headers["CorrelationID"] == headers["CorrelationID"]
        unauthenticated = http.get(path, headers={**headers, "Authorization": "Bearer x"})
        assert unauthenticated.status_code == 401
        assert unauthenticated.json() == {
            "statusCode": 401,
            "message": "Unauthorized. Access token is missing or invalid",
        }
        assert_error(http.get(path, headers={**headers, "AccountID": "1503001234"}), 400, "ERR-004")
        assert_error(http.get(path, headers={**headers, "CorrelationID": "x"}), 400, "KFR-004")
        assert_error(
            http.get(path, headers={**headers, "AccountID": "99999999999"}), 404, "KFR-008"
        )


# ---------------------------------------------------------------- bad input never gets a 500


def test_unknown_paths_and_methods_get_json(api: Any, shared_bank: BankCredentials) -> None:
    assert_error(api.http.get("/nothing/here", headers=api.headers()), 404, "KFR-004")
    assert_error(
        api.http.put(
            f"/customers/financialInstitutions/{shared_bank.orgnr}/relationshipType/DSOPBANK",
            headers=api.headers(synthetic_fodselsnummer()),
        ),
        405,
        "KFR-004",
    )
    assert_error(
        api.http.get(
            f"/customers/financialInstitutions/{shared_bank.orgnr}/batch", headers=api.headers()
        ),
        405,
        "KFR-004",
    )


_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["POST", "DELETE", "GET"]),
    fid=_header_text.filter(lambda s: s.strip("/. ")),
    rel_type=_header_text.filter(lambda s: s.strip("/. ")),
    customer=_header_text,
    correlation=_header_text,
    from_date=_header_text,
)
def test_arbitrary_input_never_gets_a_500(
    api: Any, method: str, fid: str, rel_type: str, customer: str, correlation: str, from_date: str
) -> None:
    # Re-encode what the join decoded ("%00" → NUL), which httpx rightly refuses to send.
    fid_q, type_q = (
        quote(httpx.URL("http://x/").join(s).path, safe="/").lstrip("/") for s in (fid, rel_type)
    )
    path = (
        f"/customers/financialInstitutions/{fid_q}/relationshipType/{type_q}"
        if method != "GET"
        else f"/customers/financialInstitutions/{fid_q}/"
    )
    response = api.http.request(
        method,
        path,
        params={"fromDate": from_date} if method == "GET" else None,
        headers=api.headers(customer.strip() or None, CorrelationID=correlation.strip() or None),
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"errorCode", "errorMessage", "timestamp"}
