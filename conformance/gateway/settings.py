"""How a recording gateway is started (``GatewaySettings``), validated on construction:
a gateway that starts never points at production and listens on loopback unless told."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conformance.contract import DEFAULT_MAX_RATE, WRITE_SCOPE
from conformance.errors import UsageError
from conformance.ids import require_orgnr
from conformance.kfr import refuse_production
from conformance.sandbox.settings import is_loopback_host

__all__ = ["KFR_PREFIX", "GatewaySettings"]

KFR_PREFIX = "/kar-ws/api/v1"  # the gateway serves KFR's paths, so only the host changes


@dataclass(frozen=True)
class GatewaySettings:
    """``upstream_url`` is KFR's base URL (``…/kar-ws/api/v1``); ``maskinporten_issuer`` is
    the issuer the core system's tokens must come from. ``tls_cert``/``tls_key`` (PEM) make
    the listening side https. ``record_dir`` receives ``gateway.jsonl`` (every exchange,
    redacted, as it happens) and ``robustness.json`` (the injections, when stopped)."""

    bank_orgnr: str
    upstream_url: str
    maskinporten_issuer: str
    env_name: str = "test"                 # "test" | "sandbox" | "url": recorded, never trusted
    client_id: str | None = None
    scope: str = WRITE_SCOPE
    host: str = "127.0.0.1"
    port: int = 0
    allow_non_loopback: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    record_dir: Path | None = None
    upstream_ca_bundle: Path | None = None
    upstream_timeout_s: float = 60.0
    max_rate: float | None = DEFAULT_MAX_RATE
    keep_in_memory: int = 100_000          # exchanges kept for the API; the journal keeps all

    def __post_init__(self) -> None:
        object.__setattr__(self, "bank_orgnr", require_orgnr(self.bank_orgnr))
        for url in (self.upstream_url, self.maskinporten_issuer):
            refuse_production(url)
        if not self.upstream_url.startswith(("http://", "https://")):
            raise UsageError(f"«{self.upstream_url}» er ikke en http(s)-URL til KFR.")
        object.__setattr__(self, "upstream_url", self.upstream_url.rstrip("/"))
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise UsageError(f"Ugyldig port {self.port!r}: bruk 0–65535 (0 = en ledig port).")
        if not self.allow_non_loopback and not is_loopback_host(self.host):
            raise UsageError(
                f"Gatewayen lytter bare på loopback (127.0.0.1), ikke på «{self.host}».",
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("TLS trenger både sertifikat og nøkkel.")
        if self.max_rate is not None and not self.max_rate > 0:
            raise UsageError(f"Takten må være et positivt tall forespørsler per sekund, ikke {self.max_rate!r}.")
        for name in ("tls_cert", "tls_key", "record_dir", "upstream_ca_bundle"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"
