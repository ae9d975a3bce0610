"""``kfr-conformance sandbox serve | issue-cert | token | ca | revoke``: the embedded test environment.

    serve        run the sandbox in the foreground; prints the KFR base URL and the
                 Maskinporten issuer; stops on Ctrl-C / SIGTERM; ``--realistic`` puts an
                 API gateway in front of KFR, as in Bits' test environment
    log          the request log: every KFR request with the contract's findings
    issue-cert   issue a bank's test certificate and register its Maskinporten client;
                 prints {"orgnr","client_id","p12","cert_pem","key_pem","ca_pem"}
    token        print an access token obtained through the real JWT grant
    ca           print the sandbox CA certificate (what a verifier must trust)
    revoke       revoke a bank's test certificate: the sandbox's CRL (also written to
                 ``crl.der`` in the data folder) and OCSP responder say so at once

All share one data folder (default ``$KFR_CONFORMANCE_HOME/sandbox``), so the runner's
auto-started sandbox, ``issue-cert`` and ``ca`` use the same CA unless told otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from conformance.cli import DeferredChoices
from conformance.commands.token import WRITE_SCOPE
from conformance.errors import SandboxError, UsageError
from conformance.home import default_sandbox_dir

# The sandbox itself (uvicorn, Starlette, the test CA) is imported inside the handlers:
# building the parser (every command, ``--help``) must not start loading a server.


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="det innebygde KFR-testmiljøet (KFR + Maskinporten + test-CA)",
        description="Det innebygde KFR-testmiljøet: en ekte server på loopback med egen "
        "Maskinporten og egen test-CA.",
    )
    parser.set_defaults(func=lambda args: _missing_subcommand(parser))
    sub = parser.add_subparsers(
        dest="sandbox_command", metavar="KOMMANDO", help="hva som skal gjøres med sandkassen"
    )

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

    revoke = sub.add_parser(
        "revoke",
        help="tilbakekall en banks testsertifikat (CRL og OCSP i sandkassen)",
        description="Tilbakekaller bankens testsertifikat hos sandkassens CA. Sandkassens "
        "sperreliste (CRL, også skrevet til crl.der i datamappen) og OCSP-tjeneste sier det "
        "fra neste forespørsel. Neste kjøring får et nytt sertifikat.",
    )
    revoke.add_argument(
        "--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer"
    )
    revoke.add_argument(
        "--cert",
        type=Path,
        metavar="PEM",
        help="sertifikatet som skal tilbakekalles (standard: bankens i datamappen)",
    )
    reason = revoke.add_argument(
        "--reason",
        default="key_compromise",
        help="årsak (standard key_compromise)",
    )
    reason.choices = DeferredChoices(_revocation_reason_names)
    revoke.add_argument(
        "--at",
        metavar="TID",
        help="tilbakekall fra dette tidspunktet (ISO 8601; standard nå), f.eks. nøkkelen "
        "kompromittert siden i går",
    )
    _data_dir_option(revoke)
    revoke.set_defaults(func=cmd_revoke)

    log = sub.add_parser(
        "log", help="vis sandkassens forespørselslogg med kontraktsfunn",
        description="Viser hver KFR-forespørsel sandkassen har fått, med funnene fra KFRs kontrakt "
        "(de samme reglene som opptaksgatewayen bruker). Også som side: /_sandbox/log.",
    )
    log.add_argument("--follow", "-f", action="store_true", help="fortsett å vise nye forespørsler")
    log.add_argument("--bank", metavar="ORGNR", help="bare denne bankens forespørsler")
    log.add_argument("--last", type=int, default=50, metavar="N", help="vis de N siste (standard 50)")
    log.add_argument("--json", action="store_true", help="én JSON-linje per forespørsel")
    _data_dir_option(log)
    log.set_defaults(func=cmd_log)


def _revocation_reason_names() -> list[str]:
    from conformance.sandbox.pki import REVOCATION_REASONS

    return sorted(r for r in REVOCATION_REASONS if r != "remove_from_crl")


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
    import logging

    logger = logging.getLogger("conformance.sandbox")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from conformance.sandbox import RunningSandbox, SandboxSettings

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
    from conformance.ids import require_orgnr
    from conformance.sandbox import issue_bank_credentials

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
    import httpx

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
    from conformance.ids import require_orgnr
    from conformance.sandbox import RunningSandbox, SandboxSettings, issue_bank_credentials
    from conformance.sandbox.assertion import obtain_token

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


# ---------------------------------------------------------------- log


def cmd_log(args: argparse.Namespace) -> int:
    import signal
    import threading

    from conformance.ids import require_orgnr
    from conformance.sandbox.request_log import follow_log, format_entry, read_log

    bank = require_orgnr(args.bank) if args.bank else None
    if args.last < 0:
        raise UsageError("--last må være 0 eller mer.")
    data_dir = _data_dir(args)

    def show(entry: dict[str, Any]) -> None:
        text = json.dumps(entry, ensure_ascii=False) if args.json else format_entry(entry)
        print(text, flush=True)

    entries, position = read_log(data_dir, bank)
    if not entries and not args.follow:
        print(f"Ingen forespørsler i loggen i {data_dir}.", file=sys.stderr)
    for entry in entries[-args.last:] if args.last else []:
        show(entry)
    if args.follow:
        stop = threading.Event()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"Følger {data_dir / 'request-log.jsonl'} – stopp med Ctrl-C.", file=sys.stderr, flush=True)
        try:
            for entry in follow_log(data_dir, bank, stop, start=position):
                show(entry)
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return 0


# ---------------------------------------------------------------- ca


def cmd_ca(args: argparse.Namespace) -> int:
    from conformance.sandbox import TestCA

    sys.stdout.write(TestCA(_data_dir(args)).cert_pem.decode())
    return 0


# ---------------------------------------------------------------- revoke


def _revocation_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise UsageError(f"--at «{value}» er ikke et tidspunkt (ISO 8601).") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def cmd_revoke(args: argparse.Namespace) -> int:
    from cryptography import x509

    from conformance.ids import require_orgnr
    from conformance.sandbox import TestCA
    from conformance.sandbox.pki import (
        CRL_FILE,
        REVOCATION_REASONS,
        bank_certificate,
        orgnr_from_certificate,
    )

    orgnr = require_orgnr(args.bank)
    data_dir = _data_dir(args)
    if args.cert:
        try:
            cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--cert-filen {args.cert} er ikke et PEM-sertifikat.") from exc
    else:
        cert = bank_certificate(data_dir, orgnr)
    if orgnr_from_certificate(cert) != orgnr:
        raise UsageError(
            f"Sertifikatet {cert.subject.rfc4514_string()} tilhører ikke banken {orgnr}."
        )
    entry = TestCA(data_dir).revoke(
        cert, at=_revocation_time(args.at), reason=REVOCATION_REASONS[args.reason]
    )
    print(f"Tilbakekalt:   {entry.subject} (serienummer {entry.serial_number:x})")
    print(f"Tidspunkt:     {entry.revoked_at.isoformat()} ({entry.reason.name})")
    print(f"Sperreliste:   {data_dir / CRL_FILE}")
    print(
        "En sandkasse som kjører, svarer det i OCSP og CRL under /_pki/ fra nå; "
        "verify bruker adressene i sertifikatet, eller --ocsp-url / --crl."
    )
    return 0
