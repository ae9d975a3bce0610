"""How a sandbox is started (``SandboxSettings``) and how it is told to misbehave (``Faults``).

Both are plain frozen dataclasses validated on construction, so a sandbox that starts has
sane settings. ``Faults`` round-trips through JSON for ``GET/PUT /_sandbox/faults``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import SandboxError

MAX_BATCH_BYTES = 10 * 1024 * 1024  # KFR's documented file size limit

# Deliberately WRONG KFR / Maskinporten behaviour, so that tests can show each
# integration-test case fails when the environment answers wrongly.
MISBEHAVIOURS: dict[str, str] = {
    "skip_customer_id_check": "no KFR-005: invalid customer IDs are accepted with 201",
    "skip_type_check": "no KFR-009: any relationship type is accepted",
    "skip_correlation_check": "no KFR-004: a missing or malformed CorrelationID is accepted",
    "skip_fid_check": "no KFR-003: a bank may write for another bank's fid",
    "skip_auth": "no KFR-001: requests without a valid token pass",
    "skip_scope_check": "no KFR-002: a token without the write scope passes",
    "always_201": "an existing active relationship gives 201 instead of 200",
    "delete_missing_204": "DELETE of a missing relationship gives 204 instead of 404",
    "end_returns_200": "DELETE of an existing relationship gives 200 instead of 204",
    "forget_history": "DELETE erases the relationship, so period lookups no longer find it",
    "never_ingest": "batches get 201 but are never ingested",
    "ignore_batch_dates": "batch start dates are ignored: every start is today",
    "skip_batch_date_check": "no KFR-010: bad batch dates are accepted (start = today)",
    "accept_any_boundary": "no 403 for a quoted or mismatched multipart boundary",
    "no_size_limit": "no 413 for batches over 10 MB",
    "lookup_empty": 'lookups always answer {"banks": []}',
    "wrong_bank_name": "lookups answer with another bankName",
    "token_wrong_scope": "Maskinporten grants tokens without the requested write scope",
}
MAX_CLOCK_OFFSET_S = 86_400.0


def _rate(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise SandboxError(f"Faults.{name} må være en andel mellom 0 og 1, ikke {value!r}.")
    return float(value)


@dataclass(frozen=True)
class Faults:
    """Fault injection for testing clients. The default injects nothing.

    ``fail_next`` is a burst: the next N KFR requests answer 500 KFR-007; the running
    sandbox counts it down, and ``RunningSandbox.faults`` shows what is left of it.
    ``clock_offset_s`` runs the sandbox's clock that many seconds ahead (negative: behind):
    its ``Date`` header and Maskinporten's iat/exp checks use the shifted clock, so a
    client's wrong clock can be shown without changing the client's.
    """

    latency_ms: float = 0
    error_rate_500: float = 0
    error_rate_504: float = 0
    drop_rate: float = 0
    fail_next: int = 0
    token_lifetime_s: int | None = None
    seed: int | None = None
    misbehave: frozenset[str] = field(default_factory=frozenset)
    clock_offset_s: float = 0

    def __post_init__(self) -> None:
        offset = self.clock_offset_s
        if (
            not isinstance(offset, int | float)
            or isinstance(offset, bool)
            or not math.isfinite(offset)
            or abs(offset) > MAX_CLOCK_OFFSET_S
        ):
            raise SandboxError(
                f"Faults.clock_offset_s må være mellom -86400 og 86400 sekunder, ikke {offset!r}."
            )
        latency = self.latency_ms
        if (
            not isinstance(latency, int | float)
            or isinstance(latency, bool)
            or not math.isfinite(latency)
            or not 0 <= latency <= 60_000
        ):
            raise SandboxError(f"Faults.latency_ms må være mellom 0 og 60000, ikke {latency!r}.")
        for name in ("error_rate_500", "error_rate_504", "drop_rate"):
            _rate(name, getattr(self, name))
        if self.error_rate_500 + self.error_rate_504 + self.drop_rate > 1:
            raise SandboxError(
                "Summen av error_rate_500, error_rate_504 og drop_rate kan ikke overstige 1."
            )
        if (
            not isinstance(self.fail_next, int)
            or isinstance(self.fail_next, bool)
            or self.fail_next < 0
        ):
            raise SandboxError(f"Faults.fail_next må være et heltall ≥ 0, ikke {self.fail_next!r}.")
        lifetime = self.token_lifetime_s
        if lifetime is not None and (
            not isinstance(lifetime, int)
            or isinstance(lifetime, bool)
            or not 1 <= lifetime <= 86_400
        ):
            raise SandboxError(
                f"Faults.token_lifetime_s må være mellom 1 og 86400 sekunder, ikke {lifetime!r}."
            )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise SandboxError(f"Faults.seed må være et heltall, ikke {self.seed!r}.")
        raw = self.misbehave
        if isinstance(raw, str) or not isinstance(raw, Iterable):
            raise SandboxError("Faults.misbehave må være en liste med navn, ikke en enkelt streng.")
        names = frozenset(raw)
        unknown = sorted(str(n) for n in names if n not in MISBEHAVIOURS)
        if unknown:
            raise SandboxError(
                f"Ukjent misbehave-bryter: {', '.join(unknown)}.",
                hint=f"Gyldige: {', '.join(sorted(MISBEHAVIOURS))}.",
            )
        object.__setattr__(self, "misbehave", names)

    def misbehaves(self, name: str) -> bool:
        return name in self.misbehave

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["misbehave"] = sorted(self.misbehave)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        if not isinstance(data, Mapping):
            raise SandboxError("Feil må angis som et JSON-objekt.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SandboxError(
                f"Ukjente felt i faults: {', '.join(map(str, unknown))}.",
                hint=f"Gyldige felt: {', '.join(sorted(known))}.",
            )
        values = dict(data)
        if "misbehave" in values:
            misbehave = values["misbehave"]
            if not isinstance(misbehave, list | tuple | set | frozenset):
                raise SandboxError("Faults.misbehave må være en liste med navn.")
            values["misbehave"] = frozenset(misbehave)
        return cls(**values)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SandboxSettings:
    """How to start a sandbox. ``data_dir=None`` means ``conformance.home.default_sandbox_dir()``."""

    data_dir: Path | None = None
    in_memory: bool = False  # SQLite in memory; the CA and signing key stay in data_dir
    ingest_rate: float | None = 250.0  # IDs per second, like KFR; None or 0 = unlimited
    host: str = "127.0.0.1"
    port: int = 0
    allow_non_loopback: bool = False
    faults: Faults = field(default_factory=Faults)
    max_batch_bytes: int = MAX_BATCH_BYTES

    def __post_init__(self) -> None:
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        rate = self.ingest_rate
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or rate < 0
        ):
            raise SandboxError(
                f"Innlesingstakten må være et tall ≥ 0 (ID-er per sekund), ikke {rate!r}."
            )
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise SandboxError(f"Ugyldig port {self.port!r}: bruk 0–65535 (0 = en ledig port).")
        if not self.host:
            raise SandboxError("Vertsnavn mangler.")
        if not self.allow_non_loopback and not is_loopback_host(self.host):
            raise SandboxError(
                f"Sandkassen lytter bare på loopback (127.0.0.1), ikke på «{self.host}».",
                hint="Bruk --allow-non-loopback hvis du virkelig vil åpne den for andre maskiner.",
            )
        if not isinstance(self.faults, Faults):
            raise SandboxError("SandboxSettings.faults må være en Faults.")
        if not isinstance(self.max_batch_bytes, int) or self.max_batch_bytes < 1:
            raise SandboxError("max_batch_bytes må være et positivt heltall.")

    @property
    def unlimited_ingest(self) -> bool:
        return not self.ingest_rate

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        from conformance.home import default_sandbox_dir

        return default_sandbox_dir()
