"""The judge on its own: who answered, environment failures, retries that could hide an
answer, attempts and sessions. Exchanges are written here in the recorded shape
(docs/architecture.md) so that each rule can be shown to bite on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.judge import (
    CaseEvidence,
    Exchange,
    answer,
    answered_by,
    decide,
    environment_problem,
)
from conformance.models import Expectation, Outcome
from conformance.steps import Actual

BANK = "311000004"
BASE = "https://preprod.api.bits.no/kar-ws/api/v1"
ADD = f"{BASE}/customers/financialInstitutions/{BANK}/relationshipType/DSOPBANK"


def ex(seq: int, status: int | None, body: Any = "", *, role: str = "main", attempt: int = 1,
       session: int = 1, content_type: str = "application/json", token: str | None = "aa",
       error: str | None = None) -> dict[str, Any]:
    text = json.dumps(body) if isinstance(body, dict) else body
    return {
        "case_id": "KFR-X", "session": session, "seq": seq, "attempt": attempt, "role": role,
        "operation": "add", "correlation_id": f"00000000-0000-4000-8000-{seq:012d}",
        "started_at": "2026-11-30T09:00:00Z",
        "request": {"method": "POST", "url": ADD, "headers": {"CustomerID": "05909803219"},
                    "body": None, **({"token_sha256": token} if token else {})},
        "response": None if status is None else {
            "status": status, "headers": {"Content-Type": content_type}, "body": text},
        "error": error,
    }


KFR_400 = {"errorCode": "KFR-005", "errorMessage": "Invalid customer identifier", "timestamp": "x"}
GATEWAY_401 = {"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid"}


@pytest.mark.parametrize(
    ("raw", "party"),
    [
        (ex(1, 201), "kfr"),
        (ex(1, 400, KFR_400), "kfr"),
        (ex(1, 401, GATEWAY_401), "gateway"),
        (ex(1, 503, "upstream connect error"), "gateway"),
        (ex(1, 403, "<html><body>Request rejected</body></html>", content_type="text/html"), "other"),
        (ex(1, 400, "Bad request from proxy", content_type="text/plain"), "other"),
        (ex(1, None, error="ConnectError: refused"), "none"),
    ],
)
def test_who_answered(raw: dict, party: str) -> None:
    assert answered_by(Exchange(raw)) == party


def test_environment_failures_are_named_and_answers_are_not() -> None:
    assert environment_problem(Exchange(ex(1, 201))) is None
    assert environment_problem(Exchange(ex(1, 400, KFR_400))) is None
    assert "429" in environment_problem(Exchange(ex(1, 429, "slow down")))
    assert "HTTP 502" in environment_problem(Exchange(ex(1, 502, "<html>bad gateway</html>")))
    assert "brannmur" in environment_problem(Exchange(ex(1, 403, "<html>x</html>", content_type="text/html")))
    assert "ingen svar" in environment_problem(Exchange(ex(1, None, error="ReadTimeout")))


def main_answer(ev: CaseEvidence) -> Actual:
    return answer(ev.request("main", "add"))


def test_a_gateway_401_meets_kfr_001_but_no_other_code() -> None:
    verdict = decide(Expectation("401 KFR-001", 401, "KFR-001"), main_answer, [ex(1, 401, GATEWAY_401)], BANK)
    assert verdict.outcome is Outcome.PASSED
    assert "API-gatewayen" in verdict.actual.summary
    verdict = decide(Expectation("403 KFR-002", 403, "KFR-002"), main_answer,
                     [ex(1, 403, {"statusCode": 403, "message": "Forbidden"})], BANK)
    assert verdict.outcome is Outcome.FAILED and "API-gatewayen" in verdict.message


def test_a_firewall_page_is_never_the_answer_even_with_the_expected_status() -> None:
    page = ex(1, 403, "<html>Request rejected</html>", content_type="text/html")
    verdict = decide(Expectation("403", 403), main_answer, [page], BANK)
    assert verdict.outcome is Outcome.ERROR and "brannmur" in verdict.message


def test_retries_after_environment_failures_are_fine_after_an_answer_they_are_not() -> None:
    retried = [ex(1, 503, "busy"), ex(2, 429, "slow"), ex(3, 201)]
    assert decide(Expectation("201", 201), main_answer, retried, BANK).outcome is Outcome.PASSED
    hidden = [ex(1, 400, KFR_400), ex(2, 201)]
    verdict = decide(Expectation("201", 201), main_answer, hidden, BANK)
    assert verdict.outcome is Outcome.FAILED and "sendt på nytt etter et gyldig svar" in verdict.message
    renewed = [ex(1, 401, GATEWAY_401, token="old"), ex(2, 201, token="new")]
    assert decide(Expectation("201", 201), main_answer, renewed, BANK).outcome is Outcome.PASSED
    same_token = [ex(1, 401, GATEWAY_401, token="old"), ex(2, 201, token="old")]
    assert decide(Expectation("201", 201), main_answer, same_token, BANK).outcome is Outcome.FAILED


def test_a_row_is_tried_again_only_after_the_environment_failed_it() -> None:
    after_error = [ex(1, 502, "x", attempt=1), ex(2, 201, attempt=2)]
    verdict = decide(Expectation("201", 201), main_answer, after_error, BANK)
    assert verdict.outcome is Outcome.PASSED and verdict.attempts == 2
    after_failure = [ex(1, 400, KFR_400, attempt=1), ex(2, 201, attempt=2)]
    verdict = decide(Expectation("201", 201), main_answer, after_failure, BANK)
    assert verdict.outcome is Outcome.FAILED and "Forsøk 1" in verdict.message


def test_the_latest_session_decides_and_earlier_ones_are_named() -> None:
    history = [ex(1, 400, KFR_400, session=1), ex(1, 201, session=2)]
    verdict = decide(Expectation("201", 201), main_answer, history, BANK)
    assert verdict.outcome is Outcome.PASSED
    assert verdict.notes and verdict.notes[0].startswith("Økt 1: Feilet")


def test_missing_evidence_fails_and_a_missing_answer_is_an_error() -> None:
    verdict = decide(Expectation("201", 201), main_answer, [], BANK)
    assert verdict.outcome is Outcome.FAILED and "mangler forespørselen" in verdict.message
    verdict = decide(Expectation("201", 201), main_answer, [ex(1, None, error="ConnectError")], BANK)
    assert verdict.outcome is Outcome.ERROR


def test_a_row_cut_short_by_the_environment_is_an_error() -> None:
    # The act stopped after Maskinporten failed the token for the next request: what the row
    # still needed is missing because of the environment, not because of the bank.
    token = {**ex(2, 504, "gateway timeout"), "operation": "token", "role": "token"}
    verdict = decide(Expectation("201", 201), lambda ev: answer(ev.request("control", "add")),
                     [ex(1, 201), token], BANK)
    assert verdict.outcome is Outcome.ERROR and "504" in verdict.message


def test_the_oversize_file_counts_only_sends_that_may_have_reached_kfr() -> None:
    """KFR-20 sends its file once. A send the gateway turned away — throttled, or refused for
    a token revoked meanwhile and sent again with a new one — never reached KFR; a second
    send after any other answer might have queued a million IDs twice."""
    from conformance.suite import default_suite_dir, load_suite

    judge_fn = load_suite(default_suite_dir()).registry.get("batch_too_large").judge
    url = f"{BASE}/customers/financialInstitutions/{BANK}/batch"

    def batch(seq: int, status: int, body: Any = "", *, role: str = "main", token: str = "aa") -> dict:
        raw = ex(seq, status, body, role=role, token=token)
        raw["operation"] = "batch"
        raw["request"].update(url=url, body={"size": 10_486_784, "sha256": "0" * 64, "head": "380000003,"})
        return raw

    too_large = {"errorCode": "KFR-004", "errorMessage": "file too large", "timestamp": "x"}
    expectation = Expectation("413", 413)
    control = batch(9, 201, role="control")
    for turned_away in (batch(1, 429, "slow down"), batch(1, 401, GATEWAY_401, token="old")):
        sends = [turned_away, batch(2, 413, too_large), control]
        verdict = decide(expectation, judge_fn, sends, BANK)
        assert verdict.outcome is Outcome.PASSED, verdict.message
    twice = [batch(1, 502, "<html>bad gateway</html>"), batch(2, 413, too_large), control]
    verdict = decide(expectation, judge_fn, twice, BANK)
    assert verdict.outcome is Outcome.FAILED and "2 sendinger" in verdict.message
