"""The trust options shared by ``verify`` and the ``archive`` commands, and the policy they make."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conformance.errors import UsageError


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust", action="append", default=[], type=Path, metavar="PEM",
        help="rotsertifikat(er) Bits godtar, PEM eller DER (kan gjentas)",
    )
    parser.add_argument(
        "--allow-sandbox", action="store_true",
        help="godta pakker fra sandkassen (ikke gyldig som onboarding-bevis)",
    )
    parser.add_argument(
        "--accept-kfr-url", action="append", default=[], metavar="URL",
        help="godta også denne KFR-adressen som testmiljø (kan gjentas)",
    )
    parser.add_argument(
        "--accept-maskinporten-url", action="append", default=[], metavar="URL",
        help="godta også denne Maskinporten-utstederen som testmiljøets (kan gjentas)",
    )
    parser.add_argument(
        "--accept-attested", action="store_true",
        help="godta at rader som forventer et HTTP-svar er bekreftet av en person i stedet for bevist",
    )
    parser.add_argument(
        "--allow-bundled-sheet", action="store_true",
        help="godta kjøringer av verktøyets eget rekonstruerte testark (ikke Bits' ark)",
    )
    parser.add_argument("--expect-sheet-sha256", metavar="HEX", help="krev denne SHA-256 for testarket")
    parser.add_argument("--expect-sheet-version", metavar="V", help="krev denne arkversjonen")


def load_trust_roots(paths: list[Path]) -> tuple[Any, ...]:
    from cryptography import x509

    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"Kan ikke lese --trust-filen {path}: {exc.strerror or exc}") from exc
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                roots.extend(x509.load_pem_x509_certificates(data))
            else:
                roots.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise UsageError(f"--trust-filen {path} er ikke et sertifikat (PEM eller DER).") from exc
    return tuple(roots)


def policy_from_args(args: argparse.Namespace, *, lang: str = "nb") -> Any:
    """The verification policy the trust options describe (Bits' test URL always accepted)."""
    from conformance.pack.verify import VerificationPolicy

    defaults = VerificationPolicy()
    return VerificationPolicy(
        trust_roots=load_trust_roots(args.trust),
        allow_sandbox=args.allow_sandbox,
        accepted_kfr_base_urls=defaults.accepted_kfr_base_urls + tuple(args.accept_kfr_url),
        accepted_maskinporten_issuers=defaults.accepted_maskinporten_issuers
        + tuple(getattr(args, "accept_maskinporten_url", ())),
        accept_attested=getattr(args, "accept_attested", False),
        allow_bundled_sheet=getattr(args, "allow_bundled_sheet", False),
        expect_sheet_sha256=args.expect_sheet_sha256,
        expect_sheet_version=args.expect_sheet_version,
        lang=lang,
    )
