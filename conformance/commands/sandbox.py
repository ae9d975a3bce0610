"""``kfr-conformance sandbox serve | issue-cert | token | ca``: the embedded test environment.

    serve        run the sandbox in the foreground; prints the KFR base URL and the
                 Maskinporten issuer; stops on Ctrl-C / SIGTERM; ``--realistic`` puts an
                 API gateway in front of KFR, as in Bits' test environment
    issue-cert   issue a bank's test certificate and register its Maskinporten client;
                 prints {"orgnr","client_id","p12","cert_pem","key_pem","ca_pem"}
    token        print an access token obtained through the real JWT grant
    ca           print the sandbox CA certificate (what a verifier must trust)

All share one data folder (default ``$KFR_CONFORMANCE_HOME/sandbox``), so the runner's
auto-started sandbox, ``issue-cert`` and ``ca`` use the same CA unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from conformance.errors import SandboxError, UsageError
from conformance.home import default_sandbox_dir
from conformance.ids import require_orgnr
from conformance.sandbox import RunningSandbox, SandboxSettings, TestCA, issue_bank_credentials
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import WRITE_SCOPE


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="det innebygde KFR-testmiljøet (KFR + Maskinporten + test-CA)",
        description="Det innebygde KFR-testmiljøet: en ekte server på loopback med egen "
        "Maskinporten og egen test-CA.",
    )
    parser.set_defaults(func=lambda args: _missing_subcommand(parser))
    sub = parser.add_subparsers(dest="sandbox_command", metavar="KOMMANDO")

    serve = sub.add_parser("serve", help="kjør sandkassen i forgrunnen")
    serve.add_argument(
        "--host", default="127.0.0.1", help="adresse å lytte på (standard 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=0, help="port (standard 0 = en ledig port)")
    _data_dir_option(serve)
    serve.add_argument(
        "--ingest-rate",
        type=float,
        default=250.0,
        metavar="N",
        help="innlesingstakt for batcher, ID-er per sekund (standard 250 som KFR; 0 = ubegrenset)",
    )
    serve.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="tillat å lytte på en adresse som ikke er loopback",
    )
    serve.add_argument(
        "--realistic",
        action="store_true",
        help="svar som Bits' testmiljø: en API-gateway foran KFR svarer selv på "
        "autentiseringsfeil (401 uten KFR-feilkode)",
    )
    serve.set_defaults(func=cmd_serve)

    issue = sub.add_parser(
        "issue-cert", help="utsted testsertifikat og registrer bankens Maskinporten-klient"
    )
    issue.add_argument("--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer")
    issue.add_argument("--name", help='bankens navn (standard "Testbank <orgnr> AS")')
    _data_dir_option(issue)
    issue.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="mappe for sertifikat og nøkkel"
    )
    issue.add_argument("--password", help="passord for PKCS#12-filen og nøkkelen")
    issue.add_argument(
        "--password-env",
        metavar="VAR",
        help="les passordet fra denne miljøvariabelen (synes ikke i prosesslisten)",
    )
    issue.set_defaults(func=cmd_issue_cert)

    token = sub.add_parser("token", help="skriv ut et access token hentet med JWT-grant")
    token.add_argument("--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer")
    token.add_argument(
        "--scope", action="append", metavar="S", help=f"scope (kan gjentas; standard {WRITE_SCOPE})"
    )
    _data_dir_option(token)
    token.add_argument(
        "--url", help="en kjørende sandkasse (standard: start en i prosessen for kallet)"
    )
    token.set_defaults(func=cmd_token)

    ca = sub.add_parser("ca", help="skriv ut sandkassens CA-sertifikat (PEM)")
    _data_dir_option(ca)
    ca.set_defaults(func=cmd_ca)


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="sandkassens datamappe (standard $KFR_CONFORMANCE_HOME/sandbox)",
    )


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).expanduser() if args.data_dir else default_sandbox_dir()


# ---------------------------------------------------------------- serve


def _log_to_stderr() -> None:
    logger = logging.getLogger("conformance.sandbox")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def cmd_serve(args: argparse.Namespace) -> int:
    settings = SandboxSettings(
        data_dir=_data_dir(args),
        ingest_rate=args.ingest_rate or None,
        host=args.host,
        port=args.port,
        allow_non_loopback=args.allow_non_loopback,
        realistic=args.realistic,
    )
    _log_to_stderr()
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        sandbox = RunningSandbox(settings).start()
        rate = f"{settings.ingest_rate:g} ID-er/s" if settings.ingest_rate else "ubegrenset"
        print(f"KFR-base-URL:        {sandbox.kfr_base_url}")
        print(f"Maskinporten-issuer: {sandbox.maskinporten_issuer}")
        print(f"Datamappe:           {sandbox.data_dir}")
        print(f"Batch-innlesing:     {rate}")
        mode = "realistisk – API-gateway foran KFR" if settings.realistic else "KFR direkte"
        print(f"Modus:               {mode}")
        print("Sandkasse – ikke Bits' testmiljø. Stopp med Ctrl-C.", flush=True)
        sandbox.serve_forever(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Sandkassen er stoppet.", flush=True)
    return 0


# ---------------------------------------------------------------- issue-cert


def cmd_issue_cert(args: argparse.Namespace) -> int:
    password = args.password
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError(f"Miljøvariabelen {args.password_env} (passord) er ikke satt.")
    creds = issue_bank_credentials(
        _data_dir(args), require_orgnr(args.bank), args.name, args.out, password=password
    )
    print(json.dumps(creds.to_json(), ensure_ascii=False))
    return 0


# ---------------------------------------------------------------- token


def _issuer_from_url(url: str) -> str:
    """Find the Maskinporten issuer of a running sandbox from any of its URLs."""
    base = url.strip().rstrip("/")
    for marker in ("/kar-ws/", "/maskinporten"):
        if marker in base + "/":
            base = (base + "/").split(marker)[0]
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"«{url}» er ikke en URL (f.eks. http://127.0.0.1:8080).")
    well_known = base + "/maskinporten/.well-known/oauth-authorization-server"
    try:
        response = httpx.get(well_known, timeout=10)
        issuer = response.json()["issuer"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise SandboxError(
            f"Fant ingen sandkasse på {base} ({well_known} svarte ikke som ventet).",
            hint="Start den med «kfr-conformance sandbox serve» og bruk URL-en den skriver ut.",
        ) from exc
    if not isinstance(issuer, str):
        raise SandboxError(f"{well_known} oppgir ingen issuer.")
    return issuer


def cmd_token(args: argparse.Namespace) -> int:
    orgnr = require_orgnr(args.bank)
    data_dir = _data_dir(args)
    scopes = [s for value in (args.scope or [WRITE_SCOPE]) for s in value.split()]
    creds = issue_bank_credentials(data_dir, orgnr, None, data_dir / "banks" / orgnr)
    if args.url:
        token = obtain_token(creds, _issuer_from_url(args.url), scopes)
    else:
        with RunningSandbox(SandboxSettings(data_dir=data_dir)) as sandbox:
            token = obtain_token(creds, sandbox.maskinporten_issuer, scopes)
    print(token)
    return 0


# ---------------------------------------------------------------- ca


def cmd_ca(args: argparse.Namespace) -> int:
    sys.stdout.write(TestCA(_data_dir(args)).cert_pem.decode())
    return 0
