"""The shared contract rules: each says yes or no for the right reason."""

from __future__ import annotations

import pytest

from conformance import contract
from conformance.ids import synthetic_fodselsnummer


def test_correlation_id() -> None:
    assert contract.correlation_id_is_uuid("0b0d8c3e-5a2f-4c1b-9d8e-1f2a3b4c5d6e").ok
    assert not contract.correlation_id_is_uuid(None).ok
    verdict = contract.correlation_id_is_uuid("abc")
    assert not verdict.ok and "abc" in verdict.reason and verdict.rule.id == "correlation-id-uuid"


def test_fid_and_customer() -> None:
    assert contract.fid_is_bank("311000004", "311000004").ok
    assert not contract.fid_is_bank("311000012", "311000004").ok
    assert contract.customer_id_is_valid(synthetic_fodselsnummer()).ok
    assert not contract.customer_id_is_valid("12345678901").ok


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [("multipart/form-data; boundary=123abc", True), ('multipart/form-data; boundary="123abc"', False),
     ("multipart/form-data", False)],
)
def test_boundary(content_type: str, ok: bool) -> None:
    assert contract.boundary_unquoted(content_type).ok is ok


def test_token_claims() -> None:
    claims = {"iss": "https://test.maskinporten.no/", "scope": "bits:kundeforhold.write",
              "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:311000004"}}
    assert contract.token_issuer_is(claims, "https://test.maskinporten.no/").ok
    assert not contract.token_issuer_is(claims, "http://127.0.0.1:5000/maskinporten/").ok
    assert contract.token_consumer_is_bank(claims, "311000004").ok
    assert not contract.token_consumer_is_bank(claims, "311000012").ok
    assert contract.token_has_scope(claims, "bits:kundeforhold.write").ok
    assert not contract.token_has_scope(claims, "bits:kundeforhold").ok


def test_rules_are_registered_once_with_a_source() -> None:
    assert all(r.source and r.title for r in contract.RULES.values())
    with pytest.raises(ValueError):
        contract.rule("fid-is-bank", "x", "y")
