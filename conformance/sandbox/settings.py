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


GATEWAY_ERROR_STATUSES = (502, 503, 504)
GATEWAY_ERROR_BODIES = ("json", "html", "mixed")
MAX_RETRY_AFTER_S = 3600


def _burst(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SandboxError(f"Faults.{name} må være et heltall ≥ 0, ikke {value!r}.")


def _switch(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise SandboxError(f"Faults.{name} må være true eller false, ikke {value!r}.")


@dataclass(frozen=True)
class Faults:
    """Fault injection for testing clients. The default injects nothing.

    Faults come in three layers, drawn in this order for every KFR request (Maskinporten
    gets only the latency); each layer with a rate makes one draw from the fault RNG
    (``seed``), so a seeded sandbox repeats the same sequence for the same requests:

    * the gateway's edge — ``firewall_*`` (an HTML 403 "Request Rejected" page) and
      ``throttle_*`` (429 with ``Retry-After: retry_after_s``);
    * the gateway towards KFR — ``gateway_error_*``: 502/503/504 (one of
      ``gateway_error_statuses``) with a gateway JSON body, an HTML page, or either
      (``gateway_error_body``);
    * KFR itself — ``error_rate_500``/``error_rate_504``/``drop_rate``/``fail_next``: KFR's
      JSON KFR-007, or a dropped connection.

    Gateway faults answer before KFR sees the request, so they never change KFR's state.
    Each ``*_next`` is a burst: the next N requests get that fault; the running sandbox
    counts it down, and ``RunningSandbox.faults`` shows what is left of it. Rates of one
    layer may add up to at most 1.

    ``validate_birth_dates`` is not a fault but a stricter KFR: fødselsnumre and
    D-numre must carry a real birth date as python-stdnum reads it (Tenor's month + 80
    is then refused with KFR-005 / ERR-002, and a batch holding one is refused).

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
    firewall_rate: float = 0
    firewall_next: int = 0
    throttle_rate: float = 0
    throttle_next: int = 0
    retry_after_s: int = 1
    gateway_error_rate: float = 0
    gateway_error_next: int = 0
    gateway_error_statuses: tuple[int, ...] = GATEWAY_ERROR_STATUSES
    gateway_error_body: str = "json"
    validate_birth_dates: bool = False
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
        for name in (
            "error_rate_500",
            "error_rate_504",
            "drop_rate",
            "firewall_rate",
            "throttle_rate",
            "gateway_error_rate",
        ):
            _rate(name, getattr(self, name))
        if self.error_rate_500 + self.error_rate_504 + self.drop_rate > 1:
            raise SandboxError(
                "Summen av error_rate_500, error_rate_504 og drop_rate kan ikke overstige 1."
            )
        if self.firewall_rate + self.throttle_rate > 1:
            raise SandboxError("Summen av firewall_rate og throttle_rate kan ikke overstige 1.")
        for name in ("fail_next", "firewall_next", "throttle_next", "gateway_error_next"):
            _burst(name, getattr(self, name))
        retry = self.retry_after_s
        if (
            not isinstance(retry, int)
            or isinstance(retry, bool)
            or not 0 <= retry <= MAX_RETRY_AFTER_S
        ):
            raise SandboxError(
                f"Faults.retry_after_s må være et heltall mellom 0 og {MAX_RETRY_AFTER_S} sekunder, "
                f"ikke {retry!r}."
            )
        statuses = self.gateway_error_statuses
        if isinstance(statuses, str) or not isinstance(statuses, Iterable):
            raise SandboxError("Faults.gateway_error_statuses må være en liste med statuskoder.")
        statuses = tuple(statuses)
        if not statuses or any(
            type(s) is not int or s not in GATEWAY_ERROR_STATUSES for s in statuses
        ):
            raise SandboxError(
                f"Faults.gateway_error_statuses må være en ikke-tom liste av "
                f"{', '.join(map(str, GATEWAY_ERROR_STATUSES))}, ikke {self.gateway_error_statuses!r}."
            )
        object.__setattr__(self, "gateway_error_statuses", statuses)
        if self.gateway_error_body not in GATEWAY_ERROR_BODIES:
            raise SandboxError(
                f"Faults.gateway_error_body må være en av {', '.join(GATEWAY_ERROR_BODIES)}, "
                f"ikke {self.gateway_error_body!r}."
            )
        _switch("validate_birth_dates", self.validate_birth_dates)
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
        data["gateway_error_statuses"] = list(self.gateway_error_statuses)
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
        if "gateway_error_statuses" in values:
            statuses = values["gateway_error_statuses"]
            if not isinstance(statuses, list | tuple):
                raise SandboxError(
                    "Faults.gateway_error_statuses må være en liste med statuskoder."
                )
            values["gateway_error_statuses"] = tuple(statuses)
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
    max_batch_bytes: int = MAX_BATCH_BYTES  # limit on the batch's ``customers`` file part
    # An API gateway in front of KFR, as in Bits' test environment: authentication
    # failures are answered by the gateway in its own shape (see ``gateway.py``).
    realistic: bool = False

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
        if not isinstance(self.realistic, bool):
            raise SandboxError("SandboxSettings.realistic må være true eller false.")

    @property
    def unlimited_ingest(self) -> bool:
        return not self.ingest_rate

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        from conformance.home import default_sandbox_dir

        return default_sandbox_dir()
