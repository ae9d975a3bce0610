"""What the sandbox's routes share: settings, storage, CA, signing key, faults, URLs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from conformance.sandbox.pki import TestCA
from conformance.sandbox.settings import Faults, SandboxSettings
from conformance.sandbox.store import Store

if TYPE_CHECKING:
    from conformance.sandbox.maskinporten import AccessTokens, SigningKey

KFR_PREFIX = "/kar-ws/api/v1"
MASKINPORTEN_PREFIX = "/maskinporten"

FaultOutcome = Literal["drop", 500, 504] | None
EdgeOutcome = Literal["firewall", "throttle"] | None


@dataclass(frozen=True)
class GatewayError:
    """A 502/503/504 from the gateway, with an HTML page or the gateway's JSON body."""

    status: int
    html: bool


# The burst counters the running sandbox counts down, by Faults field.
_BURSTS = ("fail_next", "firewall_next", "throttle_next", "gateway_error_next")


def oslo_today() -> dt.date:
    """KFR's dates are Norwegian calendar days (the runner uses the same clock)."""
    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo("Europe/Oslo")).date()
    except Exception:  # no time zone data on this machine: the local date is the best guess
        return dt.date.today()


class FaultState:
    """The current faults plus their running state (the burst countdowns, the RNG).

    One RNG, seeded by ``Faults.seed``, serves every layer: a layer draws from it only
    when one of its rates is set, so the same requests in the same order meet the same
    faults.
    """

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.set(faults)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._remaining = {name: getattr(faults, name) for name in _BURSTS}
            self._rng = random.Random(faults.seed)

    @property
    def current(self) -> Faults:
        with self._lock:
            return dataclasses.replace(self.faults, **self._remaining)

    def _take_burst(self, name: str) -> bool:
        """Count one request off burst ``name``; the caller holds the lock."""
        if self._remaining[name] > 0:
            self._remaining[name] -= 1
            return True
        return False

    def draw_edge(self) -> EdgeOutcome:
        """The gateway's edge: is the next KFR request rejected by the firewall or throttled?"""
        faults = self.faults
        if not (
            self._remaining["firewall_next"]
            or self._remaining["throttle_next"]
            or faults.firewall_rate
            or faults.throttle_rate
        ):
            return None
        with self._lock:
            if self._take_burst("firewall_next"):
                return "firewall"
            if self._take_burst("throttle_next"):
                return "throttle"
            if not (faults.firewall_rate or faults.throttle_rate):
                return None
            roll = self._rng.random()
        if roll < faults.firewall_rate:
            return "firewall"
        if roll < faults.firewall_rate + faults.throttle_rate:
            return "throttle"
        return None

    def draw_gateway_error(self) -> GatewayError | None:
        """The gateway towards KFR: does it answer 502/503/504 instead of passing on?"""
        faults = self.faults
        if not (self._remaining["gateway_error_next"] or faults.gateway_error_rate):
            return None
        with self._lock:
            burst = self._take_burst("gateway_error_next")
            if not burst and self._rng.random() >= faults.gateway_error_rate:
                return None
            status = self._rng.choice(faults.gateway_error_statuses)
            if faults.gateway_error_body == "mixed":
                html = self._rng.random() < 0.5
            else:
                html = faults.gateway_error_body == "html"
        return GatewayError(status=status, html=html)

    def draw(self) -> FaultOutcome:
        """What KFR itself does with the next request: dropped, a 500/504, or nothing."""
        faults = self.faults
        if not (
            self._remaining["fail_next"]
            or faults.drop_rate
            or faults.error_rate_500
            or faults.error_rate_504
        ):
            return None
        with self._lock:
            if self._take_burst("fail_next"):
                return 500
            roll = self._rng.random()
        if roll < faults.drop_rate:
            return "drop"
        if roll < faults.drop_rate + faults.error_rate_500:
            return 500
        if roll < faults.drop_rate + faults.error_rate_500 + faults.error_rate_504:
            return 504
        return None


@dataclass
class SandboxContext:
    settings: SandboxSettings
    data_dir: Path
    base_url: str
    store: Store
    ca: TestCA
    signing_key: SigningKey
    tokens: AccessTokens
    fault_state: FaultState
    notify_batch: threading.Event

    @property
    def issuer(self) -> str:
        return self.base_url + MASKINPORTEN_PREFIX + "/"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "token"

    @property
    def faults(self) -> Faults:
        return self.fault_state.faults

    def misbehaves(self, name: str) -> bool:
        return name in self.fault_state.faults.misbehave

    def now(self) -> float:
        """The sandbox's clock: real time plus ``Faults.clock_offset_s``."""
        return time.time() + self.fault_state.faults.clock_offset_s
