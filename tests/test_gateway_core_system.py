"""The reference core system through the recording gateway against the sandbox.

The good core system leaves no finding anywhere; each broken variant is caught by the one
rule that should catch it — a contract rule on a request, a reaction to an injection, or
an expected request that never came — with a message that says what it did wrong, and
by no other rule.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from core_system_ref import CoreSystem, CoreSystemConfig

from conformance import contract
from conformance.gateway import GatewaySettings, Injection, RunningGateway, start_gateway
from conformance.ids import synthetic_fodselsnummer, synthetic_orgnr
from conformance.sandbox import BankCredentials, RunningSandbox

REF = Path(__file__).with_name("core_system_ref.py")


@pytest.fixture
def gateway(sandbox: RunningSandbox, bank: BankCredentials, tmp_path: Path) -> Iterator[RunningGateway]:
    settings = GatewaySettings(
        bank_orgnr=bank.orgnr, upstream_url=sandbox.kfr_base_url,
        maskinporten_issuer=sandbox.maskinporten_issuer, env_name="sandbox",
        client_id=bank.client_id, record_dir=tmp_path / "gateway",
    )
    with start_gateway(settings) as gw:
        yield gw


def config(sb: RunningSandbox, bank: BankCredentials, kfr_url: str, variant: str, state: Path) -> CoreSystemConfig:
    return CoreSystemConfig(
        kfr_url=kfr_url, issuer=sb.maskinporten_issuer, client_id=bank.client_id,
        cert=bank.cert_pem, key=bank.key_pem, bank=bank.orgnr, variant=variant,
        state_dir=state, backoff_s=0.15,
    )


@pytest.fixture
def core_system(
    sandbox: RunningSandbox, bank: BankCredentials, gateway: RunningGateway, tmp_path: Path
) -> Iterator[Callable[..., CoreSystem]]:
    """``core_system(variant)``: the reference core system pointed at the gateway;
    ``core_system(variant, direct=True)``: the same bank's system straight at the sandbox."""
    made: list[CoreSystem] = []

    def make(variant: str = "good", *, direct: bool = False) -> CoreSystem:
        url = sandbox.kfr_base_url if direct else gateway.kfr_base_url
        state = tmp_path / f"state-{variant}-{'direct' if direct else 'gw'}"
        system = CoreSystem(config(sandbox, bank, url, variant, state))
        made.append(system)
        return system

    yield make
    for system in made:
        system.close_http()


def failing_rules(gw: RunningGateway, extra: list[contract.Verdict] = ()) -> dict[str, str]:  # type: ignore[assignment]
    """Every failed verdict anywhere: contract findings, injection reactions, expectations."""
    found = {verdict["rule"]: verdict["reason"] for _, verdict in gw.findings()}
    for report in gw.injection_report():
        found.update({v["rule"]: v["reason"] for v in report["verdicts"] if not v["ok"]})
    found.update({v.rule.id: v.reason for v in extra if not v.ok})
    return found


def in_kfr(direct: CoreSystem, bank: BankCredentials, customer: str) -> contract.Verdict:
    return contract.relationship_state_is(True, bank.orgnr, customer, direct.lookup(customer))


# ---------------------------------------------------------------- the good system


def test_the_good_core_system_leaves_no_finding_and_everything_is_recorded(
    gateway: RunningGateway, core_system: Callable[..., CoreSystem], bank: BankCredentials,
    sandbox: RunningSandbox,
) -> None:
    system = core_system("good")
    stays, leaves = synthetic_fodselsnummer(), synthetic_fodselsnummer()
    loaded = [synthetic_fodselsnummer(), synthetic_orgnr()]
    assert system.open(stays).status == 201
    assert system.open(leaves).status == 201
    assert system.close(leaves).status == 204
    assert system.batch([(loaded[0], dt.date(2019, 11, 8)), (loaded[1], None)]).status == 201
    assert system.lookup(stays)["banks"][0]["organizationID"] == bank.orgnr

    assert failing_rules(gateway) == {}
    exchanges = gateway.exchanges()
    assert [e["operation"] for e in exchanges] == ["add", "add", "end", "batch", "lookup"]
    assert all(e["source"] == "gateway" and e["answered_by"] == "upstream" for e in exchanges)
    assert all(e["token_claims"]["consumer"]["ID"] == f"0192:{bank.orgnr}" for e in exchanges)
    assert {e["correlation_id"] for e in exchanges} == {
        e["request"]["headers"]["correlationid"] for e in exchanges
    } and len({e["correlation_id"] for e in exchanges}) == 5
    assert sandbox.relationship_count(bank.orgnr, active_only=True) == 3

    # The journal holds every exchange, and no token: only the claims that are not secret.
    assert gateway.flush()
    lines = gateway.journal_path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]
    token = system._token
    assert token and token not in gateway.journal_path.read_text()
    assert all(json.loads(line)["request"]["headers"]["authorization"] == "[REDACTED]" for line in lines)


# ---------------------------------------------------------------- broken variants


@dataclass(frozen=True)
class Scenario:
    variant: str
    rule: str            # the one rule that must catch the broken variant
    words: str           # what its message must say
    injection: dict[str, Any] | None = None
    precreate: bool = False


def _two_opens(system: CoreSystem, customer: str) -> list[contract.Verdict]:
    system.open(customer)
    system.open(synthetic_fodselsnummer())
    return []


def _one_open(system: CoreSystem, customer: str) -> list[contract.Verdict]:
    system.open(customer)
    return []


def _batch(system: CoreSystem, customer: str) -> list[contract.Verdict]:
    system.batch([(customer, None), (synthetic_fodselsnummer(), dt.date(2020, 2, 29))])
    return []


SCENARIOS = {
    "reuse-correlation-id": (Scenario("reuse-correlation-id", "correlation-id-unique", "på nytt"), _two_opens),
    "token-per-call": (Scenario("token-per-call", "token-reused", "hentet et nytt token"), _two_opens),
    "quoted-boundary": (Scenario("quoted-boundary", "boundary-unquoted", "anførselstegn"), _batch),
    "no-retry-503": (
        Scenario("no-retry-503", "nothing-lost", "prøvde aldri igjen",
                 injection={"kind": "unavailable", "operation": "add", "observe_s": 1.5}),
        _one_open,
    ),
    "already-exists-error": (
        Scenario("already-exists-error", "already-exists-accepted", "behandlet det som en feil",
                 injection={"kind": "already_exists", "observe_s": 1.5}, precreate=True),
        _one_open,
    ),
}


@pytest.mark.parametrize("variant", ["good", "broken"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_broken_variant_is_caught_by_its_rule_alone(
    name: str, variant: str, gateway: RunningGateway, core_system: Callable[..., CoreSystem],
) -> None:
    scenario, act = SCENARIOS[name]
    customer = synthetic_fodselsnummer()
    if scenario.precreate:   # "already exists" must be the truth
        assert core_system("good", direct=True).open(customer).status == 201
    injection_id = None
    if scenario.injection:
        injection_id = gateway.inject(Injection(customer_id=customer, **scenario.injection))
    act(core_system(scenario.variant if variant == "broken" else "good"), customer)
    if injection_id is not None:
        report = gateway.wait_settled(injection_id, timeout=10)
        assert report["status"] == "ferdig" and report["hits"]
    found = failing_rules(gateway)
    if variant == "good":
        assert found == {}
    else:
        assert set(found) == {scenario.rule}, found
        assert scenario.words in found[scenario.rule]


def test_a_core_system_that_forgets_to_end_is_caught_by_the_expectation_alone(
    gateway: RunningGateway, core_system: Callable[..., CoreSystem], bank: BankCredentials,
) -> None:
    customer = synthetic_fodselsnummer()
    forgetful = core_system("forget-end")
    assert forgetful.open(customer).status == 201
    since = gateway.last_seq
    assert forgetful.close(customer).ok   # the core system believes it is done
    verdict, exchange = gateway.expect("end", customer, timeout=1.0, since=since)
    assert exchange is None
    assert failing_rules(gateway, [verdict]) == {
        "expected-request-seen": f"kjernesystemet sendte ingen avslutning av {customer} til KFR i løpet av 1 s"
    }

    good = core_system("good")
    other = synthetic_fodselsnummer()
    good.open(other)
    since = gateway.last_seq
    good.close(other)
    verdict, exchange = gateway.expect("end", other, timeout=5.0, since=since)
    assert verdict.ok and exchange is not None and exchange["response"]["status"] == 204


# ---------------------------------------------------------------- reactions of the good system


def test_the_good_core_system_recovers_from_every_injection_and_nothing_is_lost(
    gateway: RunningGateway, core_system: Callable[..., CoreSystem], bank: BankCredentials,
) -> None:
    system = core_system("good")
    direct = core_system("good", direct=True)
    kinds = [
        Injection("unavailable", operation="add", count=3, observe_s=5),
        Injection("rate_limited", operation="add", retry_after_s=1, observe_s=5),
        Injection("expired_token", operation="add", observe_s=5),
    ]
    for injection in kinds:
        customer = synthetic_fodselsnummer()
        injection_id = gateway.inject(Injection(**{**injection.to_dict(), "customer_id": customer}))
        assert system.open(customer).status == 201
        report = gateway.wait_settled(injection_id, timeout=10)
        assert report["ok"], report
        assert len(report["hits"]) == injection.count and report["attempts_after"]
        assert in_kfr(direct, bank, customer).ok

    exchanges = gateway.exchanges()
    unavailable = [e for e in exchanges if e["injected"] == "unavailable"]
    waits = [dt.datetime.fromisoformat(b["started_at"]) - dt.datetime.fromisoformat(a["started_at"])
             for a, b in itertools.pairwise(unavailable)]
    assert waits[1] > waits[0]   # the retries waited longer each time
    limited = next(e for e in exchanges if e["injected"] == "rate_limited")
    assert limited["response"]["status"] == 429 and limited["response"]["headers"]["retry-after"] == "1"
    expired = next(e for e in exchanges if e["injected"] == "expired_token")
    after = next(e for e in exchanges if e["seq"] > expired["seq"])
    assert after["token_claims"]["jti"] != expired["token_claims"]["jti"]
    assert failing_rules(gateway) == {}


def test_an_injection_is_answered_by_the_gateway_and_recorded_as_such(
    gateway: RunningGateway, core_system: Callable[..., CoreSystem],
) -> None:
    customer = synthetic_fodselsnummer()
    gateway.inject(Injection("unavailable", operation="add", customer_id=customer))
    core_system("good").open(customer)
    injected, retried = [e for e in gateway.exchanges() if e["request"]["headers"].get("customerid") == customer]
    assert injected["answered_by"] == "gateway" and injected["injected"] == "unavailable"
    assert injected["response"]["status"] == 503 and injected["upstream_ms"] is None
    assert retried["answered_by"] == "upstream" and retried["response"]["status"] == 201
    assert retried["correlation_id"] != injected["correlation_id"]


# ---------------------------------------------------------------- its command line


def test_the_reference_command_line_keeps_its_token_between_invocations(
    gateway: RunningGateway, sandbox: RunningSandbox, bank: BankCredentials, tmp_path: Path,
) -> None:
    """How phase 2's command adapter will drive it: one process per action."""
    cfg = config(sandbox, bank, gateway.kfr_base_url, "good", tmp_path / "cli-state")
    path = tmp_path / "core.json"
    path.write_text(json.dumps({
        "kfr_url": cfg.kfr_url, "issuer": cfg.issuer, "client_id": cfg.client_id,
        "cert": str(cfg.cert), "key": str(cfg.key), "bank": cfg.bank, "state_dir": str(cfg.state_dir),
    }))
    customer = synthetic_fodselsnummer()
    for action in (["open", customer], ["close", customer]):
        done = subprocess.run([sys.executable, str(REF), "--config", str(path), *action],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ok"] is True
    assert [e["response"]["status"] for e in gateway.exchanges()] == [201, 204]
    assert failing_rules(gateway) == {}
    bad = subprocess.run([sys.executable, str(REF), "--config", str(path), "--variant", "nope", "open", customer],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_batch_answered_with_503_is_sent_again_as_the_same_file(
    gateway: RunningGateway, core_system: Callable[..., CoreSystem], sandbox: RunningSandbox,
    bank: BankCredentials,
) -> None:
    customers = [(synthetic_fodselsnummer(), dt.date(2021, 3, 1)), (synthetic_orgnr(), None)]
    injection_id = gateway.inject(Injection("unavailable", operation="batch", observe_s=5))
    assert core_system("good").batch(customers).status == 201
    report = gateway.wait_settled(injection_id, timeout=10)
    assert report["ok"] and len(report["hits"]) == 1 and len(report["attempts_after"]) == 1
    first, second = gateway.exchanges()
    assert first["request"]["body"] == second["request"]["body"]          # the same file again
    assert first["correlation_id"] != second["correlation_id"]
    assert sandbox.wait_for_ingestion(10)
    assert failing_rules(gateway) == {}
