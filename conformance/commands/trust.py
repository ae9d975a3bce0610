"""The trust options shared by ``verify`` and the ``archive`` commands, and the policy they make.

Trusted time and revocation (see ``conformance/pack/timestamp.py`` and ``revocation.py``):
``--tsa-trust`` adds roots a timestamp's TSA may chain to (the ``--trust`` roots count
too); ``--require-timestamp`` refuses an untimestamped pack whose certificate has expired
since; ``--revocation off|soft|hard``; ``--ocsp-url`` and ``--crl`` (URL or file) override
the addresses in the certificate (a sandbox's port changes between runs); ``--strict`` is
the preset ``--require-timestamp --revocation hard``; ``--now`` judges the pack as of
another moment ("how will this pack stand in 2031?").
"""

from __future__ import annotations

import argparse
import datetime as dt
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
    time_options = parser.add_argument_group("pålitelig tid og tilbakekalling")
    time_options.add_argument(
        "--tsa-trust", action="append", default=[], type=Path, metavar="PEM",
        help="rotsertifikat(er) for tidsstempeltjenester (TSA), PEM eller DER (kan gjentas); "
        "rotsertifikatene fra --trust godtas også",
    )
    time_options.add_argument(
        "--require-timestamp", action="store_true", default=None,
        help="godta ikke en pakke uten tidsstempel når signeringssertifikatet er utløpt",
    )
    time_options.add_argument(
        "--revocation", choices=("off", "soft", "hard"),
        help="kontroll av tilbakekalling (OCSP, så CRL): off = ingen, soft = godta med merknad "
        "når status ikke kan hentes (standard), hard = avvis når status er ukjent",
    )
    time_options.add_argument(
        "--ocsp-url", metavar="URL",
        help="spør denne OCSP-tjenesten i stedet for adressen i sertifikatet",
    )
    time_options.add_argument(
        "--crl", action="append", default=[], metavar="URL|FIL",
        help="bruk denne sperrelisten (CRL, URL eller fil) i stedet for adressen i sertifikatet "
        "(kan gjentas)",
    )
    time_options.add_argument(
        "--strict", action="store_true",
        help="streng politikk: krever tidsstempel når sertifikatet er utløpt, og kjent "
        "tilbakekallingsstatus (--require-timestamp --revocation hard)",
    )
    time_options.add_argument(
        "--now", metavar="TID", type=_moment,
        help="vurder pakken som om det nå var TID (ISO 8601, f.eks. 2031-06-01 eller "
        "2031-06-01T12:00:00+02:00; uten sone: UTC)",
    )


def _moment(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"«{value}» er ikke et tidspunkt (ISO 8601, f.eks. 2031-06-01T12:00:00Z)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def load_trust_roots(paths: list[Path], *, option: str = "--trust") -> tuple[Any, ...]:
    from cryptography import x509

    roots: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"Kan ikke lese {option}-filen {path}: {exc.strerror or exc}") from exc
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                roots.extend(x509.load_pem_x509_certificates(data))
            else:
                roots.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise UsageError(f"{option}-filen {path} er ikke et sertifikat (PEM eller DER).") from exc
    return tuple(roots)


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def load_crl_options(values: list[str]) -> tuple[str | None, tuple[Any, ...]]:
    """``--crl`` values: at most one URL (asked instead of the certificate's), and files."""
    from conformance.pack.revocation import load_crl

    urls = [v for v in values if _is_url(v)]
    if len(urls) > 1:
        raise UsageError("Oppgi høyst én --crl-URL (filer kan gjentas).")
    crls = []
    for value in values:
        if _is_url(value):
            continue
        path = Path(value).expanduser()
        try:
            crls.append(load_crl(path.read_bytes()))
        except OSError as exc:
            raise UsageError(f"Kan ikke lese --crl-filen {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise UsageError(f"--crl-filen {path} er ikke en sperreliste (CRL, DER eller PEM).") from exc
    return (urls[0] if urls else None), tuple(crls)


def policy_from_args(args: argparse.Namespace, *, lang: str = "nb") -> Any:
    """The verification policy the trust options describe (Bits' test URL always accepted)."""
    from conformance.pack.verify import VerificationPolicy

    def option(name: str) -> Any:
        # getattr: a caller may build its Namespace from an older set of trust options.
        return getattr(args, name, None)

    defaults = VerificationPolicy.strict() if option("strict") else VerificationPolicy()
    ocsp_url = option("ocsp_url")
    if ocsp_url and not _is_url(ocsp_url):
        raise UsageError(f"--ocsp-url «{ocsp_url}» er ikke en http(s)-adresse.")
    crl_url, crls = load_crl_options(option("crl") or [])
    require = defaults.require_timestamp or bool(option("require_timestamp"))
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
        tsa_trust_roots=load_trust_roots(option("tsa_trust") or [], option="--tsa-trust"),
        require_timestamp=require,
        revocation=option("revocation") or defaults.revocation,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
        crls=crls,
        now=option("now"),
    )
