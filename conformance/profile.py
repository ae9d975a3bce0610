"""The bank's settings: command-line options over ``kfr-conformance.toml`` over defaults.

One place decides, for every command that acts as a bank (the runner, ``pack``, ``doctor``,
``token``, ``batch``, ``gateway``), which environment, certificate, client and tester a
bank uses, so that ``pack`` signs with what ``pytest --bank`` ran with and ``doctor`` checks
what the run will use.

Paths given on the command line are relative to the current folder; paths in the profile
are relative to the profile's folder (so a profile can be shared with its ``certs/``).
Secrets are never in the profile: it names environment variables that hold them.

    [banks.311000004]
    name = "Eksempelbanken ASA"
    env = "test"
    client_id = "…"
    cert = "certs/virksomhetssertifikat-test.p12"
    cert_password_env = "KFR_CERT_PASSWORD"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import ConformanceError, UsageError

__all__ = [
    "PROFILE_FILE",
    "BankEnvironment",
    "Settings",
    "load_settings",
    "open_environment",
]

PROFILE_FILE = "kfr-conformance.toml"
# Option name → key in the profile, where they differ.
PROFILE_KEYS = {"kfr_env": "env", "bank_name": "name"}
PATH_OPTIONS = frozenset({
    "sheet", "suite", "bindings", "cert", "key", "signing_cert", "ca_bundle", "reports_dir",
    "manual", "sandbox_data_dir", "test_ids",
})


@dataclass(frozen=True)
class Settings:
    """Options and profile for one bank. ``get`` prefers the option; ``path`` also resolves
    the value against the folder it came from."""

    orgnr: str
    options: Mapping[str, Any]
    profile: Mapping[str, Any]
    profile_path: Path | None
    cwd: Path

    def _source(self, name: str) -> tuple[Any, Path]:
        value = self.options.get(name)
        if value not in (None, ""):
            return value, self.cwd
        value = self.profile.get(PROFILE_KEYS.get(name, name))
        base = self.profile_path.parent if self.profile_path else self.cwd
        return (None if value in (None, "") else value), base

    def get(self, name: str, default: Any = None) -> Any:
        value, _ = self._source(name)
        return default if value is None else value

    def path(self, name: str) -> Path | None:
        value, base = self._source(name)
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else base / path

    def secret(self, name: str, what: str) -> str | None:
        """The value of the environment variable the option/profile ``name`` names."""
        var = self.get(name)
        if not var:
            return None
        value = os.environ.get(str(var))
        if value is None:
            raise UsageError(f"Miljøvariabelen {var} ({what}) er ikke satt.")
        return value


def load_settings(
    orgnr: str,
    options: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    profile: Path | None = None,
) -> Settings:
    """Read ``profile`` (or ``kfr-conformance.toml`` in ``cwd`` when it exists) for ``orgnr``."""
    cwd = Path(cwd or Path.cwd())
    path = Path(profile) if profile else cwd / PROFILE_FILE
    if not path.is_absolute():
        path = cwd / path
    if not path.exists():
        if profile:
            raise UsageError(f"Profilfilen {path} finnes ikke.")
        return Settings(orgnr, dict(options or {}), {}, None, cwd)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"Profilfilen {path} kan ikke leses: {exc}") from exc
    banks = data.get("banks", {})
    section = banks.get(orgnr, {}) if isinstance(banks, dict) else {}
    if not isinstance(section, dict):
        raise UsageError(f"[banks.{orgnr}] i {path} må være en tabell.")
    return Settings(orgnr, dict(options or {}), section, path, cwd)


@dataclass
class BankEnvironment:
    """Where and as whom a bank talks to KFR: resolved URLs, client and credential files.

    For the sandbox without a given URL, ``sandbox`` is the embedded server this object
    started; :meth:`close` (or ``with``) stops it."""

    orgnr: str
    bank_name: str
    env_name: str                        # "sandbox" | "test"
    kfr_base_url: str
    maskinporten_issuer: str
    client_id: str
    cert_path: Path
    key_path: Path | None = None
    cert_password: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    alt_scope: str | None = None
    sandbox: Any = None
    sandbox_data_dir: Path | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.env_name != "test"

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.__exit__(None, None, None)
            self.sandbox = None

    def __enter__(self) -> BankEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_environment(settings: Settings, *, start_sandbox: bool = True) -> BankEnvironment:
    """Resolve the environment for ``settings``. For the sandbox, start the embedded one when
    no URL is given (``start_sandbox``) and issue the bank's sandbox credentials when no
    certificate is given. Production URLs are refused before anything else happens."""
    from conformance.kfr import TEST_BASE_URL, TEST_MASKINPORTEN_ISSUER, refuse_production

    orgnr = settings.orgnr
    env_name = str(settings.get("kfr_env", "sandbox"))
    if env_name not in ("sandbox", "test"):
        raise UsageError(f"Ukjent miljø «{env_name}» (sandbox eller test).")
    base_url = settings.get("kfr_base_url")
    issuer = settings.get("maskinporten_url")
    for url in (base_url, issuer):
        if url:
            refuse_production(str(url))
    cert = settings.path("cert")
    key = settings.path("key")
    password = settings.secret("cert_password_env", "passord til --cert")
    client_id = settings.get("client_id")
    alt_scope = settings.get("alt_scope")
    bank_name = settings.get("bank_name")
    sandbox = None
    data_dir = None
    if env_name == "test":
        base_url = base_url or TEST_BASE_URL
        issuer = issuer or TEST_MASKINPORTEN_ISSUER
        missing = [flag for flag, value in (("--client-id", client_id), ("--cert", cert)) if not value]
        if missing:
            raise UsageError(
                f"Testmiljøet krever {' og '.join(missing)} (eller i [banks.{orgnr}] i {PROFILE_FILE})."
            )
    else:
        from conformance.home import default_sandbox_dir
        from conformance.sandbox import SandboxSettings, issue_bank_credentials

        data_dir = settings.path("sandbox_data_dir") or default_sandbox_dir()
        bank_name = bank_name or f"Testbank {orgnr} AS"
        if not base_url and start_sandbox:
            from conformance.sandbox import start_sandbox as start

            rate = float(settings.get("ingest_rate", 250.0))
            realistic = bool(settings.get("realistic", False))
            port = int(settings.get("sandbox_port", 0) or 0)
            try:
                sandbox_settings = _sandbox_settings(SandboxSettings, data_dir, rate, realistic, port)
                sandbox = start(sandbox_settings)
                sandbox.__enter__()
            except ConformanceError as exc:
                raise UsageError(f"Sandkassen kunne ikke startes: {exc.diagnostics()}") from exc
            base_url, issuer = sandbox.kfr_base_url, sandbox.maskinporten_issuer
        if not cert:
            creds = issue_bank_credentials(data_dir, orgnr, bank_name, data_dir / "banks" / orgnr)
            cert, key, client_id, password = creds.p12, None, creds.client_id, creds.password
            alt_scope = alt_scope or getattr(creds, "alt_scope", None)
        if base_url and not issuer:
            issuer = str(base_url).split("/kar-ws/")[0] + "/maskinporten/"
    return BankEnvironment(
        orgnr=orgnr, bank_name=str(bank_name or ""), env_name=env_name,
        kfr_base_url=str(base_url or ""), maskinporten_issuer=str(issuer or ""),
        client_id=str(client_id or ""), cert_path=Path(cert), key_path=key,
        cert_password=password, ca_bundle=settings.path("ca_bundle"),
        alt_scope=alt_scope, sandbox=sandbox, sandbox_data_dir=data_dir,
    )


def _sandbox_settings(cls: Any, data_dir: Path, rate: float, realistic: bool, port: int = 0) -> Any:
    # ``realistic`` exists once the gateway mode of the sandbox has landed.
    fields = getattr(cls, "__dataclass_fields__", {})
    extra = {"realistic": realistic} if "realistic" in fields else {}
    return cls(data_dir=data_dir, ingest_rate=rate, port=port, **extra)
