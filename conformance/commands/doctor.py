"""``kfr-conformance doctor --bank ORGNR [--json]``: is the bank ready for its first run?

One line per check (certificate, network, clock, Maskinporten, KFR, sheet), each with the
onboarding step it belongs to and what to do when it is not green; the checks live in
:mod:`conformance.preflight`. Writes nothing to KFR. Exit 0: all green or only warnings;
1: at least one red line; 2: unusable input (as every command).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

from conformance.commands.bank_options import add_bank_options, bank_settings

# The checks (network, TLS, Maskinporten, the sheet reader) are imported inside the
# handlers: building the parser (every command, ``--help``) must not load them.
if TYPE_CHECKING:
    from conformance.preflight import PreflightReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="sjekk sertifikat, nettverk, klokke, Maskinporten, KFR og testark før første kjøring",
        description="Sjekker alt en kjøring av integrasjonstesten trenger, med samme "
        "innstillinger som «pytest --bank»: sertifikatet (A-3), nettverk og klokke (A-7), "
        "token fra Maskinporten (B-1/A-4), at KFR svarer (C-1) og testarket (C-2). "
        "Skriver ingenting til KFR.",
        epilog="Avslutningskode: 0 alt grønt eller bare advarsler, 1 minst én feil, "
        "2 ubrukelig inndata.",
    )
    add_bank_options(parser, alt_scope=True, sheet=True, signing=True)
    parser.add_argument("--json", action="store_true", help="skriv resultatet som JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from conformance.preflight import run_doctor
    from conformance.profile import open_environment

    out = out or sys.stdout
    settings = bank_settings(args)
    signing_password = settings.secret("signing_cert_password_env", "passord til --signing-cert")
    with open_environment(settings) as env:
        report = run_doctor(
            env,
            sheet=settings.path("sheet"),
            suite_dir=settings.path("suite"),
            bindings=settings.path("bindings"),
            signing_cert=settings.path("signing_cert"),
            signing_password=signing_password,
            cwd=settings.cwd,
        )
    if args.json:
        json.dump(report.to_dict(), out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        print_report(report, out)
    return 0 if report.ok else 1


def print_report(report: PreflightReport, out: TextIO) -> None:
    from conformance.preflight import Status

    labels = {Status.OK: "ok", Status.WARN: "advarsel", Status.FAIL: "feil"}
    where = "sandkassen (SANDBOX)" if report.environment != "test" else "Bits' testmiljø"
    print(f"kfr-conformance doctor – bank {report.bank}, {where}", file=out)
    print(f"  KFR:          {report.kfr_base_url}", file=out)
    print(f"  Maskinporten: {report.maskinporten_issuer}", file=out)
    print(file=out)
    for line in report.lines:
        text = line.message
        if line.advice and line.status is not Status.OK:
            text += f"  → Tiltak: {line.advice}"
        print(f"{labels[line.status]:<9} {line.step:<8} {text}", file=out)
    counts = report.counts()
    print(file=out)
    summary = (f"{counts['ok']} ok, {counts['advarsel']} advarsler, {counts['feil']} feil")
    if report.ok:
        print(f"{summary}: klar for «pytest --bank={report.bank}».", file=out)
    else:
        print(f"{summary}: rett linjene merket «feil» før kjøringen.", file=out)
