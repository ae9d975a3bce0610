"""The options every command that acts as a bank shares with the runner (``doctor``,
``token``): the same names as ``pytest --bank``'s, resolved through
:mod:`conformance.profile` (options over ``kfr-conformance.toml`` over defaults), so a
command checks or uses exactly what the run will use."""

from __future__ import annotations

import argparse
from pathlib import Path

from conformance.profile import PROFILE_FILE, Settings, load_settings

# Option dest → the name profile.Settings knows it by (the runner's names).
_OPTION_NAMES = (
    "kfr_env", "kfr_base_url", "maskinporten_url", "client_id", "cert", "key",
    "cert_password_env", "ca_bundle", "sandbox_data_dir", "alt_scope", "sheet", "suite",
    "bindings", "signing_cert", "signing_cert_password_env",
)


def add_bank_options(
    parser: argparse.ArgumentParser, *, alt_scope: bool = False, sheet: bool = False,
    signing: bool = False,
) -> None:
    add = parser.add_argument
    add("--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer")
    add("--profile", metavar="FILE", help=f"profilfil (standard: {PROFILE_FILE} i denne mappen)")
    add("--kfr-env", choices=["sandbox", "test"],
        help="sandbox (innebygd, standard) eller test (Bits' testmiljø)")
    add("--kfr-base-url", metavar="URL", help="KFR base-URL (standard: Bits' testmiljø for --kfr-env=test)")
    add("--maskinporten-url", metavar="URL", help="Maskinporten-utsteder (issuer), med avsluttende /")
    add("--client-id", metavar="ID", help="klient-ID i Maskinporten")
    add("--cert", metavar="PATH", help="virksomhetssertifikat: PKCS#12 (.p12/.pfx) eller PEM")
    add("--key", metavar="PATH", help="privat nøkkel (PEM) når --cert er et PEM-sertifikat uten nøkkel")
    add("--cert-password-env", metavar="VAR", help="miljøvariabel som holder passordet til --cert")
    add("--ca-bundle", metavar="PEM", help="CA-bundle for TLS (f.eks. bak TLS-inspiserende proxy)")
    add("--sandbox-data-dir", metavar="DIR", help="datamappe for den innebygde sandkassen")
    if alt_scope:
        add("--alt-scope", metavar="SCOPE",
            help="et scope klienten har som IKKE er skrivescope (for KFR-002-testen)")
    if sheet:
        add("--sheet", metavar="PATH", help="testarket fra Bits (standard: det medfølgende)")
        add("--suite", metavar="DIR", help="mappe med testtrinnene (standard: testcases/)")
        add("--bindings", metavar="FILE", help="bindingsfil (TOML/JSON) for rader teksten ikke binder")
    if signing:
        add("--signing-cert", metavar="PATH", help="eget signeringssertifikat for resultatpakken")
        add("--signing-cert-password-env", metavar="VAR",
            help="miljøvariabel med passordet til --signing-cert")


def bank_settings(args: argparse.Namespace, *, cwd: Path | None = None) -> Settings:
    """The bank's settings from the parsed options and the profile."""
    from conformance.ids import require_orgnr  # python-stdnum: only once a command runs

    orgnr = require_orgnr(str(args.bank))
    options = {name: getattr(args, name, None) for name in _OPTION_NAMES}
    return load_settings(orgnr, options, cwd=cwd, profile=args.profile)
