"""``kfr-conformance token --bank ORGNR``: an access token for curl, Postman or a core system.

The token comes from the environment's Maskinporten (Bits' test environment:
test.maskinporten.no; the sandbox: its simulator), with the same settings as
``pytest --bank``. It is cached until :data:`~conformance.token_cache.RENEW_MARGIN_S`
before it expires, encrypted to the bank certificate's key (see
:mod:`conformance.token_cache`), so a developer can call the command again and again.
Production is refused before anything is sent.

Formats: ``raw`` (the token), ``header`` (``Authorization: Bearer …``), ``curl`` (an
own-bank lookup, which writes nothing), ``json`` (token, expiry, scope, KFR URL).
``--decode`` prints the token's header and claims — never the signature — instead of the
token, so it can be pasted into a ticket; with ``--format json`` they are added to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conformance.commands.bank_options import add_bank_options, bank_settings
from conformance.errors import ConformanceError, UsageError

# Maskinporten, the HTTP client and the token cache are imported inside the handlers:
# building the parser (every command, ``--help``) must not load them.
if TYPE_CHECKING:
    from conformance.auth import Credentials
    from conformance.profile import BankEnvironment
    from conformance.token_cache import CachedToken

WRITE_SCOPE = "bits:kundeforhold.write"
FORMATS = ("raw", "header", "curl", "json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="hent et access token fra miljøets Maskinporten (for curl og Postman)",
        description="Henter et access token fra Maskinporten i Bits' testmiljø eller "
        "sandkassen, med samme innstillinger som «pytest --bank». Tokenet gjenbrukes til "
        "like før det utløper, og lagres bare kryptert til bankens sertifikat. "
        "Produksjon avvises.",
    )
    add_bank_options(parser)
    parser.add_argument("--scope", action="append", metavar="S",
                        help=f"scope (kan gjentas; standard {WRITE_SCOPE})")
    parser.add_argument("--format", choices=FORMATS, default="raw",
                        help="raw (tokenet), header, curl (oppslag for egen bank) eller json")
    parser.add_argument("--decode", action="store_true",
                        help="skriv tokenets header og claims (aldri signaturen) i stedet for "
                        "tokenet; med --format json i tillegg")
    parser.add_argument("--no-cache", action="store_true",
                        help="hent alltid et nytt token, og lagre det ikke")
    parser.set_defaults(func=run)


def _credentials(env: BankEnvironment) -> Credentials:
    from conformance.auth import Credentials

    return Credentials.load(Path(env.cert_path), password=env.cert_password, key_path=env.key_path)


def _fetch(env: BankEnvironment, credentials: Credentials, scopes: list[str]) -> Any:
    from conformance.auth import MaskinportenClient
    from conformance.kfr import make_http_client

    with make_http_client(ca_bundle=env.ca_bundle) as http:
        client = MaskinportenClient(issuer=env.maskinporten_issuer, client_id=env.client_id,
                                    credentials=credentials, http=http, retries=1)
        return client.fetch_token(scopes)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from conformance.profile import open_environment
    from conformance.token_cache import CachedToken, TokenCache, default_cache_dir

    out, err = out or sys.stdout, err or sys.stderr
    settings = bank_settings(args)
    scopes = list(dict.fromkeys(s for value in (args.scope or [WRITE_SCOPE]) for s in value.split()))
    if not scopes:
        raise UsageError("--scope kan ikke være tom.")
    # The embedded sandbox (no URL given) lives only while this command runs: its tokens are
    # valid for any sandbox on the same data folder, and a cached one needs no server at all.
    embedded = str(settings.get("kfr_env", "sandbox")) != "test" and not settings.get("kfr_base_url")
    with open_environment(settings, start_sandbox=False) as env:
        credentials = _credentials(env)
        issuer_key = (f"sandbox:{Path(env.sandbox_data_dir or '').resolve()}" if embedded
                      else env.maskinporten_issuer)
        cache = None if args.no_cache else TokenCache(default_cache_dir(), credentials)
        key = cache.key(environment=env.env_name, issuer=issuer_key, client_id=env.client_id,
                        scopes=scopes) if cache else ""
        token = cache.get(key) if cache else None
        cached = token is not None
        kfr_base_url = None if embedded else env.kfr_base_url
        if token is None and not embedded:
            fetched = _fetch(env, credentials, scopes)
            token = CachedToken(fetched.value, fetched.expires_at, fetched.scope)
            if cache:
                cache.put(key, fetched)
    if token is None:
        with open_environment(settings) as env:
            fetched = _fetch(env, credentials, scopes)
        token = CachedToken(fetched.value, fetched.expires_at, fetched.scope)
        if cache:
            cache.put(key, fetched)
    left = max(0, int(token.expires_at - time.time()))
    print(f"Token for {' '.join(scopes)} ({env.env_name}): utløper om {left} s"
          f"{' (fra hurtigbufferen)' if cached else ''}.", file=err)
    if embedded and args.format == "curl" and not args.decode:
        print("Sandkassen kjører bare mens kommandoen kjører: start «kfr-conformance sandbox "
              "serve», sett KFR_BASE_URL til KFR-base-URL-en den skriver ut, og kjør curl.", file=err)
    _print(args, out, token, env, kfr_base_url, cached)
    return 0


def _decoded(token: str) -> dict[str, Any]:
    import jwt

    try:
        return {"header": jwt.get_unverified_header(token),
                "claims": jwt.decode(token, options={"verify_signature": False})}
    except jwt.PyJWTError as exc:
        raise ConformanceError("Tokenet er ikke en JWT og kan ikke dekodes.") from exc


def _curl(token: str, env: BankEnvironment, kfr_base_url: str | None) -> str:
    import shlex
    import uuid

    from conformance.ids import synthetic_fodselsnummer

    base = shlex.quote(kfr_base_url.rstrip("/")) if kfr_base_url else '"${KFR_BASE_URL}"'
    parts = [
        "curl --fail-with-body -sS",
        "-H " + shlex.quote(f"Authorization: Bearer {token}"),
        "-H " + shlex.quote(f"CorrelationID: {uuid.uuid4()}"),
        # A fresh synthetic person: the lookup reads, it writes nothing.
        "-H " + shlex.quote(f"CustomerID: {synthetic_fodselsnummer()}"),
    ]
    if env.ca_bundle:
        parts.append("--cacert " + shlex.quote(str(env.ca_bundle)))
    parts.append(f"{base}/customers/financialInstitutions/{env.orgnr}/")
    return " ".join(parts)


def _print(args: argparse.Namespace, out: TextIO, token: CachedToken, env: BankEnvironment,
           kfr_base_url: str | None, cached: bool) -> None:
    if args.format == "json":
        payload: dict[str, Any] = {
            "access_token": token.value, "token_type": "Bearer", "scope": token.scope,
            "expires_at": dt.datetime.fromtimestamp(token.expires_at, dt.UTC).isoformat(),
            "expires_in": max(0, int(token.expires_at - time.time())),
            "environment": env.env_name, "bank": env.orgnr, "kfr_base_url": kfr_base_url,
            "cached": cached,
        }
        if args.decode:
            payload.update(_decoded(token.value))
        json.dump(payload, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif args.decode:
        json.dump(_decoded(token.value), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif args.format == "header":
        print(f"Authorization: Bearer {token.value}", file=out)
    elif args.format == "curl":
        print(_curl(token.value, env, kfr_base_url), file=out)
    else:
        print(token.value, file=out)
