"""Robustness injections: the gateway answers a core-system request itself, then watches
how the core system reacts.

    unavailable      503 (optionally with Retry-After)   → it should retry, backing off
    rate_limited     429 + Retry-After                   → it should wait that long, then retry
    expired_token    401 as for an expired token          → it should fetch a new token and retry
    already_exists   200 for an add («finnes allerede»)   → it should take that as success

An :class:`Injection` says what to answer and to which request (an operation, a customer,
how many times). Once it has struck, :class:`InjectionTracker` follows the same request
(same method, path and customer, or the same batch file) and judges the reaction with the
rules in :mod:`conformance.contract`. These verdicts are a report of their own, apart from
Bits' sheet: they never enter the C-2 verdict.

For ``already_exists`` the gateway does not forward the add: the runner makes sure the
relationship really exists first, so the answer is the truth.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from conformance import contract
from conformance.contract import RequestFacts, Verdict
from conformance.errors import UsageError

__all__ = ["INJECTION_KINDS", "Injection", "InjectionTracker", "injected_response"]

INJECTION_KINDS = {
    "unavailable": 503,
    "rate_limited": 429,
    "expired_token": 401,
    "already_exists": 200,
}
OPERATIONS = ("add", "end", "batch", "lookup")
# Verdicts of the retries that follow an injection, shown with its report.
RETRY_RULES = ("retry-after-respected", "retry-backoff", "no-retry-loop", "correlation-id-unique")


@dataclass(frozen=True)
class Injection:
    kind: str
    operation: str | None = None       # None: the next KFR request of any bank operation
    customer_id: str | None = None
    count: int = 1                     # how many matching requests get the injected answer
    retry_after_s: int | None = None   # Retry-After; rate_limited defaults to 1 s
    observe_s: float = 30.0            # how long to watch the reaction after the last hit

    def __post_init__(self) -> None:
        if self.customer_id is not None and not isinstance(self.customer_id, str):
            raise UsageError("customer_id må være en streng (kundens ID-nummer).")
        if not isinstance(self.kind, str) or self.kind not in INJECTION_KINDS:
            raise UsageError(
                f"Ukjent injeksjon «{self.kind}».", hint=f"Gyldige: {', '.join(INJECTION_KINDS)}."
            )
        if self.operation is not None and (not isinstance(self.operation, str) or self.operation not in OPERATIONS):
            raise UsageError(f"Ukjent operasjon «{self.operation}» (gyldige: {', '.join(OPERATIONS)}).")
        if self.kind == "already_exists":
            if self.operation not in (None, "add"):
                raise UsageError("«already_exists» gjelder bare registrering (operation add).")
            object.__setattr__(self, "operation", "add")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= 100:
            raise UsageError(f"count må være et heltall 1–100, ikke {self.count!r}.")
        if self.kind == "rate_limited" and self.retry_after_s is None:
            object.__setattr__(self, "retry_after_s", 1)
        ra = self.retry_after_s
        if ra is not None and (isinstance(ra, bool) or not isinstance(ra, int) or not 0 <= ra <= 3600):
            raise UsageError(f"retry_after_s må være et heltall 0–3600, ikke {ra!r}.")
        if not isinstance(self.observe_s, int | float) or not 0 < self.observe_s <= 3600:
            raise UsageError(f"observe_s må være mellom 0 og 3600 sekunder, ikke {self.observe_s!r}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Injection:
        if not isinstance(data, Mapping):
            raise UsageError("En injeksjon er et JSON-objekt.")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"Ukjente felt i injeksjonen: {', '.join(unknown)}.")
        if "kind" not in data:
            raise UsageError("Injeksjonen mangler «kind».")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, facts: RequestFacts) -> bool:
        if facts.operation not in OPERATIONS:
            return False
        if self.operation is not None and facts.operation != self.operation:
            return False
        return self.customer_id is None or facts.customer_id == self.customer_id


def injected_response(
    injection: Injection, correlation_id: str | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The answer the gateway gives instead of KFR: status, headers, body."""
    status = INJECTION_KINDS[injection.kind]
    headers: list[tuple[bytes, bytes]] = []
    if correlation_id:
        headers.append((b"correlationid", correlation_id.encode("latin-1", "replace")))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body: dict[str, Any] | None
    if injection.kind == "already_exists":
        body = None
    elif injection.kind == "expired_token":
        body = {"errorCode": "KFR-001", "errorMessage": "Client is not authenticated: the access token has expired", "timestamp": stamp}
        headers.append((b"www-authenticate", b'Bearer error="invalid_token", error_description="The access token expired"'))
    elif injection.kind == "rate_limited":
        body = {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {injection.retry_after_s} seconds."}
    else:
        body = {"errorCode": "KFR-007", "errorMessage": "Internal error: service unavailable", "timestamp": stamp}
    if injection.retry_after_s is not None and injection.kind in ("unavailable", "rate_limited"):
        headers.append((b"retry-after", str(injection.retry_after_s).encode()))
    content = json.dumps(body).encode() if body is not None else b""
    if content:
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(content)).encode()))
    return status, headers, content


def _what(facts: RequestFacts) -> str:
    customer = facts.customer_id or "?"
    return {
        "add": f"registreringen av {customer}",
        "end": f"avslutningen av {customer}",
        "lookup": f"oppslaget på {customer}",
        "batch": "batchopplastingen",
    }.get(facts.operation, f"{facts.method} {facts.path}")


def _answer(injection: Injection) -> str:
    status = INJECTION_KINDS[injection.kind]
    if injection.kind == "expired_token":
        return "401 (utløpt token)"
    if injection.retry_after_s is not None and status != 200:
        return f"{status} (Retry-After {injection.retry_after_s} s)"
    return str(status)


@dataclass
class _Attempt:
    seq: int
    at: float
    status: int | None
    answered_by: str
    jti: str | None
    verdicts: list[dict[str, Any]]


@dataclass
class _State:
    id: int
    spec: Injection
    created_at: float
    remaining: int
    key: tuple[str, ...] | None = None
    what: str = ""
    hits: list[_Attempt] = field(default_factory=list)
    after: list[_Attempt] = field(default_factory=list)
    last_hit_at: float = 0.0
    finished: bool = False

    @property
    def succeeded(self) -> bool:
        return any(a.answered_by == "upstream" and a.status is not None and 200 <= a.status < 300 for a in self.after)

    def settled(self, now: float) -> bool:
        """Judged once the request succeeded after the injection, or the observation time
        after the last hit has passed (an ``already_exists`` is always watched that long:
        a repeat can come at any time), or the gateway stopped."""
        if self.finished:
            return True
        if not self.hits:
            return False
        if self.spec.kind != "already_exists" and self.succeeded:
            return True
        return now - self.last_hit_at >= self.spec.observe_s


class InjectionTracker:
    """Schedules injections, picks the request each strikes, and follows the reaction.
    Called from the gateway's event loop and, for the API, from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._states: list[_State] = []

    def add(self, injection: Injection) -> int:
        with self._lock:
            state = _State(id=next(self._ids), spec=injection, created_at=time.time(), remaining=injection.count)
            self._states.append(state)
            return state.id

    def armed_for(self, operation: str) -> bool:
        """Whether an injection may strike a request of this operation (the proxy then reads
        a batch body before deciding, since the batch's identity is its content)."""
        with self._lock:
            return any(
                s.remaining > 0 and not s.finished and s.spec.operation in (None, operation)
                for s in self._states
            )

    def strike(self, facts: RequestFacts) -> tuple[int, Injection] | None:
        """The injection that answers this request instead of KFR, if any."""
        if not self._states:
            return None
        with self._lock:
            for state in self._states:
                if state.remaining <= 0 or state.finished or not state.spec.matches(facts):
                    continue
                if state.key is not None and state.key != facts.retry_key:
                    continue  # a later hit of a count > 1 injection is the same request again
                state.remaining -= 1
                state.key = facts.retry_key
                state.what = state.what or _what(facts)
                return state.id, state.spec
        return None

    def observe(self, facts: RequestFacts, exchange: Mapping[str, Any], injection_id: int | None) -> None:
        """Every recorded exchange passes here; those of a struck request are kept."""
        if not self._states:   # no injection scheduled: nothing to follow (no lock needed)
            return
        with self._lock:
            for state in self._states:
                if state.key is None or state.key != facts.retry_key or state.finished:
                    continue
                claims = exchange.get("token_claims") or {}
                response = exchange.get("response") or {}
                attempt = _Attempt(
                    seq=int(exchange.get("seq") or 0), at=facts.at, status=response.get("status"),
                    answered_by=str(exchange.get("answered_by") or "upstream"),
                    jti=claims.get("jti") if isinstance(claims, Mapping) else None,
                    verdicts=[v for v in exchange.get("contract") or [] if v.get("rule") in RETRY_RULES],
                )
                if injection_id == state.id:
                    state.hits.append(attempt)
                    state.last_hit_at = time.time()
                elif state.hits:
                    state.after.append(attempt)

    def finish(self) -> None:
        """The gateway stops: every reaction is judged on what was seen."""
        with self._lock:
            for state in self._states:
                state.finished = True

    def settled(self, injection_id: int) -> bool:
        with self._lock:
            state = self._find(injection_id)
            return state.settled(time.time())

    def report(self, injection_id: int | None = None) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            states = [self._find(injection_id)] if injection_id is not None else list(self._states)
            return [self._report(state, now) for state in states]

    def _find(self, injection_id: int) -> _State:
        for state in self._states:
            if state.id == injection_id:
                return state
        raise UsageError(f"Ingen injeksjon med id {injection_id}.")

    @staticmethod
    def _report(state: _State, now: float) -> dict[str, Any]:
        settled = state.settled(now)
        status = "ferdig" if settled and state.hits else "venter på reaksjon" if state.hits else "ikke truffet"
        verdicts: list[Verdict] = []
        if state.hits and settled:
            verdicts = _judge(state)
        retry_verdicts = _retry_verdicts(state.after)
        return {
            "id": state.id,
            "injection": state.spec.to_dict(),
            "status": status,
            "request": state.what or None,
            "hits": [a.seq for a in state.hits],
            "attempts_after": [a.seq for a in state.after],
            "verdicts": [v.to_dict() for v in verdicts] + retry_verdicts,
            "ok": settled and bool(state.hits) and all(v.ok for v in verdicts)
            and all(v["ok"] for v in retry_verdicts),
        }


def _judge(state: _State) -> list[Verdict]:
    kind = state.spec.kind
    if kind == "already_exists":
        return [contract.already_exists_accepted(state.what, len(state.after))]
    verdicts = [contract.nothing_lost(state.what, _answer(state.spec), state.succeeded, len(state.after))]
    if kind == "expired_token" and state.after:
        verdicts.append(contract.token_renewed_after_401(state.hits[-1].jti, state.after[0].jti))
    return verdicts


def _retry_verdicts(attempts: list[_Attempt]) -> list[dict[str, Any]]:
    """For each retry rule, its first failing verdict after the injection, else its last."""
    chosen: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        for verdict in attempt.verdicts:
            current = chosen.get(verdict["rule"])
            if current is None or current["ok"]:
                chosen[verdict["rule"]] = verdict
    return [chosen[r] for r in RETRY_RULES if r in chosen]
