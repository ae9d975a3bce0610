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


def oslo_today() -> dt.date:
    """KFR's dates are Norwegian calendar days (the runner uses the same clock)."""
    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo("Europe/Oslo")).date()
    except Exception:  # no time zone data on this machine: the local date is the best guess
        return dt.date.today()


class FaultState:
    """The current faults plus their running state (the fail_next countdown, the RNG)."""

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.set(faults)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._remaining = faults.fail_next
            self._rng = random.Random(faults.seed)

    @property
    def current(self) -> Faults:
        with self._lock:
            return dataclasses.replace(self.faults, fail_next=self._remaining)

    def draw(self) -> FaultOutcome:
        """What happens to the next KFR request: dropped, a 500/504, or nothing."""
        faults = self.faults
        if not (
            self._remaining or faults.drop_rate or faults.error_rate_500 or faults.error_rate_504
        ):
            return None
        with self._lock:
            if self._remaining > 0:
                self._remaining -= 1
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
