"""A reference core system: how a bank's own system would talk to KFR, for the gateway tests.

Written the way a bank would write it — its own Maskinporten client (JWT grant signed with
the bank's certificate, the leaf in ``x5c``, as the KFR FAQ asks) and its own KFR calls,
with pyjwt and httpx — and deliberately *not* with this project's client, so that the
gateway is tested against something it did not build.

The good variant does what KFR and Maskinporten ask: one token reused until near expiry, a
fresh CorrelationID for every request (retries included), retries of 429/5xx with growing
waits that honour Retry-After, a new token after a 401, 200 on an add taken as success, an
unquoted multipart boundary, and a modest pace. Each broken variant gets one thing wrong:

    reuse-correlation-id   sends the same CorrelationID on every request
    token-per-call         fetches a new Maskinporten token for every call
    quoted-boundary        quotes the boundary in the batch's Content-Type
    no-retry-503           gives up on the first 503
    already-exists-error   treats 200 ("already exists") on an add as an error and resends
    forget-end             never tells KFR that a relationship has ended

Command line (exit 0 done, 1 KFR refused or gave up, 2 usage)::

    python tests/core_system_ref.py --config core.json [--variant NAME] open ID [--from YYYY-MM-DD]
    python tests/core_system_ref.py --config core.json close ID
    python tests/core_system_ref.py --config core.json batch ID[#YYYY-MM-DD] ...
    python tests/core_system_ref.py --config core.json lookup ID

``core.json`` holds ``kfr_url``, ``issuer``, ``client_id``, ``cert``, ``key``, ``bank`` and
optionally ``ca``, ``state_dir``, ``variant``, ``max_rate``; each is also an option
(``--kfr-url`` …). The token cache and the variant's memory live in ``state_dir``, so
separate invocations behave like one long-running system.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import ssl
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

VARIANTS = (
    "good",
    "reuse-correlation-id",
    "token-per-call",
    "quoted-boundary",
    "no-retry-503",
    "already-exists-error",
    "forget-end",
)
SCOPE = "bits:kundeforhold.write"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
RENEW_MARGIN_S = 30          # fetch a new token when the cached one has less than this left
RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5


class CoreSystemError(Exception):
    pass


@dataclass
class CoreSystemConfig:
    kfr_url: str
    issuer: str
    client_id: str
    cert: Path
    key: Path
    bank: str
    ca: Path | None = None
    state_dir: Path | None = None
    variant: str = "good"
    max_rate: float = 10.0           # requests per second at most
    backoff_s: float = 0.2           # first wait before a retry
    key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise CoreSystemError(f"unknown variant {self.variant!r} (one of {', '.join(VARIANTS)})")
        self.kfr_url = self.kfr_url.rstrip("/")
        for name in ("cert", "key", "ca", "state_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))


@dataclass
class Result:
    ok: bool
    status: int | None
    detail: str = ""


class CoreSystem:
    def __init__(self, config: CoreSystemConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        verify: Any = ssl.create_default_context(cafile=str(config.ca)) if config.ca else True
        self.http = http or httpx.Client(timeout=30, verify=verify)
        self._token: str | None = None
        self._token_expires = 0.0
        self._last_request = 0.0
        self._fixed_correlation_id: str | None = None
        self._load_state()

    def close_http(self) -> None:
        self.http.close()

    # ---------------------------------------------------------------- state between runs

    def _state_file(self) -> Path | None:
        return self.config.state_dir / "core-system-state.json" if self.config.state_dir else None

    def _load_state(self) -> None:
        path = self._state_file()
        if path is None or not path.exists():
            return
        data = json.loads(path.read_text())
        self._token = data.get("access_token")
        self._token_expires = float(data.get("expires_at") or 0)
        self._fixed_correlation_id = data.get("correlation_id")
        self._last_request = float(data.get("last_request") or 0)

    def _save_state(self) -> None:
        path = self._state_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "access_token": self._token, "expires_at": self._token_expires,
            "correlation_id": self._fixed_correlation_id, "last_request": self._last_request,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)

    # ---------------------------------------------------------------- Maskinporten

    def _assertion(self) -> str:
        cfg = self.config
        cert = x509.load_pem_x509_certificate(cfg.cert.read_bytes())
        key = serialization.load_pem_private_key(
            cfg.key.read_bytes(), password=cfg.key_password.encode() if cfg.key_password else None
        )
        now = int(time.time())
        claims = {
            "aud": cfg.issuer, "iss": cfg.client_id, "scope": SCOPE,
            "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()),
        }
        x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, key, algorithm="RS256", headers={"x5c": x5c})  # type: ignore[arg-type]

    def _fetch_token(self) -> None:
        response = self.http.post(
            self.config.issuer + "token",
            data={"grant_type": GRANT_TYPE, "assertion": self._assertion()},
        )
        if response.status_code != 200:
            raise CoreSystemError(f"Maskinporten refused the token request: {response.text[:300]}")
        data = response.json()
        self._token = data["access_token"]
        self._token_expires = time.time() + float(data.get("expires_in", 120))

    def token(self) -> str:
        per_call = self.config.variant == "token-per-call"
        if per_call or self._token is None or self._token_expires - time.time() < RENEW_MARGIN_S:
            self._fetch_token()
        assert self._token is not None
        return self._token

    # ---------------------------------------------------------------- KFR calls

    def _correlation_id(self) -> str:
        if self.config.variant == "reuse-correlation-id":
            if self._fixed_correlation_id is None:
                self._fixed_correlation_id = str(uuid.uuid4())
            return self._fixed_correlation_id
        return str(uuid.uuid4())

    def _pace(self) -> None:
        wait = self._last_request + 1 / self.config.max_rate - time.time()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.time()

    def _send(
        self, method: str, path: str, headers: dict[str, str] | None = None, content: bytes = b""
    ) -> httpx.Response | None:
        """One KFR call with this system's retry policy; None when it gave up without an answer."""
        wait = self.config.backoff_s
        renewed = False
        response: httpx.Response | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self._pace()
            request_headers = {
                "Authorization": f"Bearer {self.token()}",
                "CorrelationID": self._correlation_id(),
                **(headers or {}),
            }
            try:
                response = self.http.request(method, self.config.kfr_url + path, headers=request_headers, content=content)
            except httpx.TransportError:
                response = None
            status = response.status_code if response is not None else None
            if status == 401 and not renewed:
                self._token = None   # expired or revoked: fetch a new one and try again
                renewed = True
                continue
            if status is not None and status not in RETRYABLE:
                return response
            if self.config.variant == "no-retry-503" or attempt == MAX_ATTEMPTS:
                return response
            retry_after = _retry_after(response)
            wait = max(wait, retry_after)
            time.sleep(wait)
            wait *= 2        # the next wait is longer than this one, whatever the server said
        return response

    def _relationship_path(self) -> str:
        return f"/customers/financialInstitutions/{self.config.bank}/relationshipType/DSOPBANK"

    def open(self, customer_id: str, start: dt.date | None = None) -> Result:
        """Register a relationship; a start date other than today needs the batch, the only
        KFR operation that carries one."""
        try:
            if start is not None and start != dt.date.today():
                return self.batch([(customer_id, start)])
            for tries in range(3):
                response = self._send("POST", self._relationship_path(), {"CustomerID": customer_id})
                status = response.status_code if response is not None else None
                if status == 201 or (status == 200 and self.config.variant != "already-exists-error"):
                    return Result(True, status)
                if status == 200 and tries < 2:
                    time.sleep(self.config.backoff_s)   # the broken variant: "200 is not 201"
                    continue
                return Result(False, status, _detail(response))
            return Result(False, 200, "KFR did not answer 201 Created")
        finally:
            self._save_state()

    def close(self, customer_id: str) -> Result:
        try:
            if self.config.variant == "forget-end":
                return Result(True, None, "ended in the core system only")
            response = self._send("DELETE", self._relationship_path(), {"CustomerID": customer_id})
            status = response.status_code if response is not None else None
            if status in (204, 404):   # 404 KFR-008: already ended — the goal is reached
                return Result(True, status)
            return Result(False, status, _detail(response))
        finally:
            self._save_state()

    def batch(self, entries: Iterable[tuple[str, dt.date | None]]) -> Result:
        try:
            customers = ",".join(f"{cid}#{day.isoformat()}" if day else cid for cid, day in entries)
            boundary = "".join(secrets.choice("0123456789") for _ in range(24))
            body = (
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"customer_type\"\r\n\r\nDSOPBANK\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"customers\"\r\n"
                f"Content-Type: text/plain\r\n\r\n{customers}\r\n--{boundary}--\r\n"
            ).encode()
            in_header = f'"{boundary}"' if self.config.variant == "quoted-boundary" else boundary
            response = self._send(
                "POST", f"/customers/financialInstitutions/{self.config.bank}/batch",
                {"Content-Type": f"multipart/form-data; boundary={in_header}"}, body,
            )
            status = response.status_code if response is not None else None
            return Result(status == 201, status, "" if status == 201 else _detail(response))
        finally:
            self._save_state()

    def lookup(self, customer_id: str) -> dict[str, Any]:
        try:
            response = self._send(
                "GET", f"/customers/financialInstitutions/{self.config.bank}/", {"CustomerID": customer_id}
            )
            if response is None or response.status_code != 200:
                raise CoreSystemError(f"lookup failed: {_detail(response)}")
            return dict(response.json())
        finally:
            self._save_state()


def _retry_after(response: httpx.Response | None) -> float:
    value = response.headers.get("Retry-After", "") if response is not None else ""
    return float(value) if value.strip().isdigit() else 0.0


def _detail(response: httpx.Response | None) -> str:
    if response is None:
        return "no answer from KFR"
    return f"HTTP {response.status_code} {response.text[:200]}"


# ---------------------------------------------------------------- command line


def _parse_entry(text: str) -> tuple[str, dt.date | None]:
    cid, _, day = text.partition("#")
    return cid, dt.date.fromisoformat(day) if day else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="core_system_ref", description="Reference core system for KFR")
    parser.add_argument("--config", type=Path)
    for name in ("kfr-url", "issuer", "client-id", "cert", "key", "bank", "ca", "state-dir"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--max-rate", type=float)
    sub = parser.add_subparsers(dest="command", required=True)
    open_ = sub.add_parser("open")
    open_.add_argument("customer")
    open_.add_argument("--from", dest="start", type=dt.date.fromisoformat)
    sub.add_parser("close").add_argument("customer")
    sub.add_parser("batch").add_argument("entries", nargs="+")
    sub.add_parser("lookup").add_argument("customer")
    args = parser.parse_args(argv)

    values: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for name in ("kfr_url", "issuer", "client_id", "cert", "key", "bank", "ca", "state_dir", "variant", "max_rate"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    try:
        system = CoreSystem(CoreSystemConfig(**values))
    except (TypeError, CoreSystemError) as exc:
        print(f"core_system_ref: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "open":
            result = system.open(args.customer, args.start)
        elif args.command == "close":
            result = system.close(args.customer)
        elif args.command == "batch":
            result = system.batch([_parse_entry(e) for e in args.entries])
        else:
            print(json.dumps(system.lookup(args.customer)))
            return 0
    except CoreSystemError as exc:
        print(f"core_system_ref: {exc}", file=sys.stderr)
        return 1
    finally:
        system.close_http()
    print(json.dumps({"ok": result.ok, "status": result.status, "detail": result.detail}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
