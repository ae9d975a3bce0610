"""``kfr-conformance pack | verify | email``: build, check and send the result pack.

Thin on purpose: parse, load files and credentials, call ``conformance.pack``, print,
return the exit code. ``verify`` exits 0 (valid), 1 (invalid) or 2 (unusable input).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from conformance.commands.trust import add_trust_options, policy_from_args
from conformance.errors import InvalidPack, UsageError

_EPILOG_VERIFY = (
    "Avslutningskode: 0 gyldig, 1 ugyldig, 2 ubrukelig inndata. "
    "Exit code: 0 valid, 1 invalid, 2 unusable input."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    pack = subparsers.add_parser(
        "pack",
        help="bygg manifest, signatur og resultatpakke (og C-3-e-post) fra en resultatmappe",
        description="Bygger manifest.json, manifest.json.p7s og <orgnr>-KFR-integrasjonstest-<dato>.zip "
        "på nytt fra en resultatmappe, og C-3-e-posten når alle testtilfeller er bestått mot testmiljøet.",
    )
    pack.add_argument(
        "dir", type=Path, metavar="DIR", help="resultatmappe (reports/<orgnr>/<kjørings-id>)"
    )
    pack.add_argument("--cert", type=Path, help="virksomhetssertifikat (.p12/.pfx eller PEM)")
    pack.add_argument("--cert-password-env", metavar="VAR", help="miljøvariabel med passordet")
    pack.add_argument("--signing-cert", type=Path, help="eget signeringssertifikat for pakken")
    pack.add_argument(
        "--signing-cert-password-env", metavar="VAR", help="miljøvariabel med passordet"
    )
    pack.add_argument("--key", type=Path, help="privat nøkkel (PEM) når --cert er et PEM-sertifikat uten nøkkel")
    pack.add_argument("--profile", type=Path, metavar="FILE",
                      help="profilfil (standard: kfr-conformance.toml i gjeldende mappe)")
    pack.add_argument("--manual", type=Path, metavar="FILE", help="manuelle resultater (TOML/JSON)")
    pack.add_argument("--contact", metavar="ADDR", help="kontaktperson i C-3-e-posten")
    pack.add_argument(
        "--tsa-url",
        metavar="URL",
        help="tidsstempeltjeneste (RFC 3161) som tidsstempler signaturen (standard: tsa_url "
        "i profilen; for en sandkassekjøring sandkassens egen, som da må kjøre)",
    )
    pack.set_defaults(func=run_pack)

    verify = subparsers.add_parser(
        "verify",
        help="kontroller en resultatpakke (zip, resultatmappe eller mottatt .eml)",
        description="Kontrollerer signatur, sertifikat, tidsstempel, tilbakekalling, filer, testtilfeller, testark og miljø i en resultatpakke.",
        epilog=_EPILOG_VERIFY,
    )
    verify.add_argument(
        "path", type=Path, metavar="PATH",
        help="resultatpakken (.zip), resultatmappen eller C-3-e-posten (.eml)",
    )
    add_trust_options(verify)
    verify.add_argument("--json", action="store_true", help="skriv rapporten som JSON")
    verify.add_argument(
        "--lang", choices=("nb", "en"), default="nb",
        help="språk i rapporten: nb (bokmål, standard) eller en (engelsk)",
    )
    verify.add_argument(
        "--export-correlations",
        type=Path,
        metavar="FILE",
        help="skriv alle CorrelationID-er som CSV",
    )
    verify.set_defaults(func=run_verify)

    email = subparsers.add_parser(
        "email",
        help="lag eller send C-3-e-posten til DSOP@bits.no",
        description="Skriver c3-epost.eml når alle testtilfeller er bestått mot testmiljøet, "
        "ellers forklarer den hva som mangler. Med --send sendes den.",
    )
    email.add_argument(
        "dir", type=Path, metavar="DIR", help="resultatmappe (reports/<orgnr>/<kjørings-id>)"
    )
    email.add_argument("--send", action="store_true", help="send e-posten via SMTP (krever --smtp-host)")
    email.add_argument("--smtp-host", metavar="H", help="SMTP-tjeneren e-posten sendes gjennom")
    email.add_argument(
        "--smtp-port", type=int, default=25, metavar="P", help="SMTP-port (standard 25)"
    )
    email.add_argument(
        "--starttls", action="store_true", help="krypter forbindelsen med STARTTLS før innlogging"
    )
    email.add_argument("--smtp-user", metavar="U", help="brukernavn hos SMTP-tjeneren")
    email.add_argument(
        "--smtp-password-env", metavar="VAR",
        help="miljøvariabel med SMTP-passordet (passordet skrives aldri på kommandolinjen)",
    )
    email.add_argument(
        "--from", dest="from_addr", metavar="ADDR",
        help="avsenderadresse (standard: kontaktpersonen i e-posten)",
    )
    email.add_argument("--contact", metavar="ADDR", help="kontaktperson når e-posten lages nå")
    email.set_defaults(func=run_email)


# --- helpers -------------------------------------------------------------------------------


def _secret(var: str | None, what: str) -> str | None:
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise UsageError(f"Miljøvariabelen {var} ({what}) er ikke satt.")
    return value


def _load_credentials(path: Path, password: str | None, key: Path | None = None):
    from conformance.auth import Credentials

    return Credentials.load(path, password=password, key_path=key)


def _signing_credentials(args: argparse.Namespace, record) -> object:
    """The certificate the run signs with: the same options and profile as ``pytest --bank``
    (``--signing-cert``, else ``--cert``; ``kfr-conformance.toml`` fills in what is not
    given), or the sandbox's certificate for a sandbox run."""
    from conformance.home import default_sandbox_dir
    from conformance.profile import load_settings

    orgnr = record.bank["orgnr"]
    options = {name: getattr(args, name, None) for name in (
        "cert", "key", "cert_password_env", "signing_cert", "signing_cert_password_env")}
    settings = load_settings(orgnr, options, profile=getattr(args, "profile", None))
    if settings.path("signing_cert"):
        return _load_credentials(
            settings.path("signing_cert"),
            settings.secret("signing_cert_password_env", "passord for --signing-cert"),
        )
    if settings.path("cert"):
        return _load_credentials(
            settings.path("cert"), settings.secret("cert_password_env", "passord for --cert"),
            key=settings.path("key"),
        )
    if record.is_sandbox:
        sandbox_p12 = default_sandbox_dir() / "banks" / orgnr / f"{orgnr}.p12"
        if sandbox_p12.is_file():
            return _load_credentials(sandbox_p12, None)
        raise UsageError(
            f"Fant ikke sandkassens sertifikat for {orgnr} ({sandbox_p12}).",
            hint="Oppgi sertifikatet med --cert, eller kjør testene mot sandkassen først.",
        )
    raise UsageError(
        "Pakken må signeres med bankens virksomhetssertifikat.",
        hint="Oppgi det med --cert FIL [--cert-password-env VAR] eller --signing-cert FIL, "
        "eller i [banks.<orgnr>] i kfr-conformance.toml.",
    )


# --- pack ----------------------------------------------------------------------------------


def run_pack(args: argparse.Namespace) -> int:
    from conformance.pack.build import build_pack, load_run_record
    from conformance.pack.manual import apply_manual, load_manual_file

    results_dir: Path = args.dir
    if not results_dir.is_dir():
        raise UsageError(f"Finner ikke resultatmappen {results_dir}.")
    record = load_run_record(results_dir)
    credentials = _signing_credentials(args, record)  # before changing anything
    confirmations = load_manual_file(args.manual) if args.manual else None
    with _restored_on_failure(results_dir):
        if confirmations is not None:
            changed = apply_manual(record, confirmations)
            _write_record(results_dir, record)
            print(f"Manuelle resultater lagt inn: {', '.join(changed)}")
        result = build_pack(
            results_dir,
            certificate=credentials.certificate,
            private_key=credentials.private_key,
            chain=credentials.chain,
            contact=args.contact,
            tsa_url=_tsa_url(args, record),
        )
    print(f"Manifest:       {result.manifest_path}")
    print(f"Signatur:       {result.signature_path}")
    print(f"Tidsstempel:    {'ja' if result.timestamped else 'nei'}")
    for warning in result.warnings:
        print(f"Advarsel: {warning}", file=sys.stderr)
    print(f"Resultatpakke:  {result.zip_path}")
    if result.email_path:
        print(f"C-3-e-post:     {result.email_path}")
    else:
        print("C-3-e-post er ikke laget fordi:")
        for reason in result.blockers:
            print(f"  - {reason}")
    return 0


def _write_record(results_dir: Path, record) -> None:
    from conformance.atomic import atomic_write_bytes
    from conformance.pack.manifest import RUN_RECORD_NAME

    atomic_write_bytes(results_dir / RUN_RECORD_NAME, record.to_json())
    _rerender(results_dir, record)


@contextlib.contextmanager
def _restored_on_failure(results_dir: Path):
    """Nothing on disk changes unless the pack is signed: the files a rebuild rewrites are
    put back as they were when anything fails on the way."""
    from conformance.atomic import atomic_write_bytes

    kept: dict[Path, bytes | None] = {}
    for path in results_dir.iterdir():
        if path.is_file() and (path.suffix in (".json", ".p7s", ".html", ".xlsx", ".zip", ".eml")):
            kept[path] = path.read_bytes()
    try:
        yield
    except BaseException:
        for path in results_dir.iterdir():
            if path.is_file() and path not in kept and not path.name.startswith("."):
                path.unlink(missing_ok=True)
        for path, data in kept.items():
            if data is not None:
                atomic_write_bytes(path, data)
        raise


def _tsa_url(args: argparse.Namespace, record) -> str | None:
    """``--tsa-url``, else ``tsa_url`` in the bank's profile, else (a sandbox run) the
    sandbox's own TSA; a test-environment run without one is packed untimestamped."""
    from conformance.profile import load_settings

    orgnr = record.bank["orgnr"]
    options = {"tsa_url": args.tsa_url}
    settings = load_settings(orgnr, options, profile=getattr(args, "profile", None))
    if settings.get("tsa_url"):
        return str(settings.get("tsa_url"))
    if not record.is_sandbox:
        return None
    from conformance.sandbox.pki import PkiUrls, sandbox_base_url

    return PkiUrls.for_base(sandbox_base_url(record.environment["kfr_base_url"])).tsa


def _rerender(results_dir: Path, record) -> None:
    """Write the filled sheet and report again from the updated record (the lead's code)."""
    try:
        from conformance.results import write_outputs
    except ImportError:
        print("Merk: det utfylte arket og rapporten er ikke laget på nytt.", file=sys.stderr)
        return
    outcome = write_outputs(results_dir, record)
    for problem in outcome.problems:
        print(f"Merk: {problem}", file=sys.stderr)


# --- verify --------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from conformance.pack.verify import (
        export_correlations,
        verify_path,
    )

    policy = policy_from_args(args, lang=args.lang)
    try:
        report = verify_path(args.path, policy)
    except InvalidPack as exc:
        if not args.json:
            raise
        reason = getattr(exc, "code", None)
        print(
            json.dumps(
                {"ok": False, "usable": False, "code": reason, "reason": exc.message},
                ensure_ascii=False,
                indent=2,
            )
        )
        return 2
    if args.export_correlations:
        rows = export_correlations(report, args.export_correlations)
        if not args.json:
            print(
                f"{rows} CorrelationID-er skrevet til {args.export_correlations}"
                if args.lang == "nb"
                else f"{rows} CorrelationIDs written to {args.export_correlations}"
            )
    if args.json:
        print(json.dumps({**report.to_dict(), "usable": True}, ensure_ascii=False, indent=2))
    else:
        print(_render(report))
    return 0 if report.ok else 1


def _render(report) -> str:
    lines = [report.verdict()]
    manifest = report.manifest
    if manifest is not None:
        env = manifest.environment.get("name", "")
        if report.lang == "en":
            lines.append(
                f"Bank: {manifest.bank.get('name', '')} ({manifest.bank_orgnr}) · run "
                f"{manifest.run_id} · environment {env}"
            )
        else:
            lines.append(
                f"Bank: {manifest.bank.get('name', '')} ({manifest.bank_orgnr}) · kjøring "
                f"{manifest.run_id} · miljø {env}"
            )
    ok_mark, bad_mark = ("OK  ", "FEIL") if report.lang == "nb" else ("OK  ", "FAIL")
    for check in report.checks:
        mark = ok_mark if check.ok else bad_mark
        lines.append(f"  [{mark}] {report.label(check.name)}: {check.reason}")
    return "\n".join(lines)


# --- email ---------------------------------------------------------------------------------


def run_email(args: argparse.Namespace) -> int:
    from conformance.pack.build import load_run_record
    from conformance.pack.email import email_blockers, send_email, write_email
    from conformance.pack.manifest import EMAIL_NAME, pack_file_name

    results_dir: Path = args.dir
    record = load_run_record(results_dir)
    zip_path = results_dir / pack_file_name(record.bank["orgnr"], record.started_at)
    blockers = email_blockers(record)
    if not blockers and zip_path.is_file():
        from conformance.pack.build import self_check_blockers

        blockers = self_check_blockers(zip_path)
    if blockers:
        print("C-3-e-posten kan ikke lages ennå fordi:")
        for reason in blockers:
            print(f"  - {reason}")
        return 1
    eml = results_dir / EMAIL_NAME
    if not eml.is_file():
        if not zip_path.is_file():
            raise UsageError(
                f"Resultatpakken {zip_path.name} finnes ikke ennå.",
                hint=f"Bygg den først: kfr-conformance pack {results_dir}",
            )
        eml = write_email(results_dir, record, zip_path, contact=args.contact)
    print(f"C-3-e-post: {eml}")
    if not args.send:
        return 0
    if not args.smtp_host:
        raise UsageError("--send krever --smtp-host.")
    password = _secret(args.smtp_password_env, "SMTP-passord")
    if args.smtp_user and password is None:
        raise UsageError("--smtp-user krever --smtp-password-env VAR.")
    recipient = send_email(
        eml,
        host=args.smtp_host,
        port=args.smtp_port,
        starttls=args.starttls,
        user=args.smtp_user,
        password=password,
        from_addr=args.from_addr,
    )
    print(f"Sendt til {recipient} via {args.smtp_host}:{args.smtp_port}.")
    return 0
