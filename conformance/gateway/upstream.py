"""Where the gateway forwards to: ``test``, ``sandbox`` or a URL, resolved like a run.

``test`` is Bits' test environment (preprod); ``sandbox`` starts the embedded one (and
issues the bank's sandbox credentials, so a core system under development can fetch its
own token); a URL is used as KFR's base URL. Production is refused here, before the
gateway listens. The gateway needs no certificate or password: the core system brings
its own token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from conformance.errors import UsageError
from conformance.kfr import TEST_BASE_URL, TEST_MASKINPORTEN_ISSUER, refuse_production
from conformance.profile import Settings

__all__ = ["Upstream", "resolve_upstream"]


@dataclass
class Upstream:
    env_name: str                      # "test" | "sandbox" | "url"
    label: str                         # Norwegian, for the banner
    kfr_base_url: str
    maskinporten_issuer: str
    client_id: str | None = None
    ca_bundle: Path | None = None
    notes: list[str] = field(default_factory=list)
    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()


def _issuer_for(url: str) -> str:
    """The Maskinporten issuer that goes with a KFR base URL: Bits' test environment uses
    test.maskinporten.no; a sandbox serves its own under ``/maskinporten/``."""
    if urlsplit(url).hostname == urlsplit(TEST_BASE_URL).hostname:
        return TEST_MASKINPORTEN_ISSUER
    return url.split("/kar-ws/")[0].rstrip("/") + "/maskinporten/"


def resolve_upstream(choice: str, settings: Settings) -> Upstream:
    choice = (choice or "").strip()
    client_id = settings.get("client_id")
    ca_bundle = settings.path("ca_bundle")
    issuer = settings.get("maskinporten_url")
    if issuer:
        refuse_production(str(issuer))
    if choice == "test":
        base = str(settings.get("kfr_base_url") or TEST_BASE_URL)
        refuse_production(base)
        return Upstream(
            "test", "Bits' testmiljø", base, str(issuer or TEST_MASKINPORTEN_ISSUER),
            client_id=client_id, ca_bundle=ca_bundle,
        )
    if choice == "sandbox":
        return _sandbox(settings, issuer)
    if choice.startswith(("http://", "https://")):
        refuse_production(choice)
        return Upstream(
            "url", "oppgitt URL", choice.rstrip("/"), str(issuer or _issuer_for(choice)),
            client_id=client_id, ca_bundle=ca_bundle,
        )
    refuse_production(choice)   # "api.bits.no/…" without a scheme is still production
    raise UsageError(f"Ukjent --upstream «{choice}».", hint=f"Bruk {UPSTREAM_CHOICES}.")


UPSTREAM_CHOICES = "test, sandbox eller en http(s)-URL til KFR (…/kar-ws/api/v1)"


def _sandbox(settings: Settings, issuer: str | None) -> Upstream:
    from conformance.profile import open_environment

    # The sandbox issues its own test credentials: a profile's real certificate, client id
    # or URLs (for Bits' test environment) must not leak into it.
    options = {"kfr_env": "sandbox", "sandbox_data_dir": settings.options.get("sandbox_data_dir")}
    profile = {k: v for k, v in settings.profile.items() if k in ("name", "sandbox_data_dir", "ingest_rate")}
    env = open_environment(dataclasses.replace(settings, options=options, profile=profile))
    folder = env.cert_path.parent
    notes = [
        f"Sandkasse – ikke Bits' testmiljø. Kjernesystemets Maskinporten-klient: {env.client_id}",
        f"Bankens testsertifikat og nøkkel (PEM og .p12):  {folder}",
    ]
    return Upstream(
        "sandbox", "innebygd sandkasse", env.kfr_base_url, issuer or env.maskinporten_issuer,
        client_id=env.client_id, notes=notes, on_close=env.close,
    )
