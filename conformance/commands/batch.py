"""``kfr-conformance batch build | check | upload | confirm``: the D-3 first load.

    build     the core system's export → batch files of at most 10 MB, rejected lines
              (avviste-linjer.csv), sammendrag.json and, above 100 000 IDs, the draft
              announcement to DSOP@bits.no (d3-kunngjoring.eml)
    check     batch files from elsewhere, by the same rules
    upload    the files to KFR's test environment or the sandbox: paced, resumable
    confirm   are the uploaded IDs visible in KFR? (sample or all, paced, resumable)

Exit codes: 0 done and clean; 1 done with findings (rejected lines, invalid files, a
stopped upload, IDs not visible); 2 unusable input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.cli import DeferredDefault
from conformance.errors import UsageError

# The first-load engine (and through it the KFR client and python-stdnum) is imported
# inside the handlers: building the parser (every command, ``--help``) must not load it.
if TYPE_CHECKING:
    from conformance.firstload.build import BuildSummary
    from conformance.firstload.check import CheckReport, Problem

PROBLEMS_SHOWN = 20
DEFAULT_LOOKUP_RATE = 10.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="førstegangslast (D-3): bygg, kontroller, last opp og bekreft batchfiler",
        description="Førstegangslasten av kundeforhold til KFR (onboarding-steg D-3).",
    )
    parser.set_defaults(func=lambda args: _missing_subcommand(parser))
    sub = parser.add_subparsers(
        dest="batch_command", metavar="KOMMANDO", help="hva som skal gjøres med batchfilene"
    )

    build = sub.add_parser("build", help="lag batchfiler fra kjernesystemets eksport")
    build.add_argument("--in", dest="export", required=True, type=Path, metavar="EKSPORT",
                       help="CSV med overskrifter, eller én ID per linje")
    build.add_argument("--out-dir", required=True, type=Path, metavar="MAPPE",
                       help="ny eller tom mappe for filene")
    build.add_argument("--columns", metavar="TILORDNING",
                       help="kolonner: id=…,start=…,end=…,status=… (overskrift eller nummer fra 1)")
    build.add_argument("--encoding", default="utf-8-sig", help="tegnkoding (standard utf-8; ofte cp1252)")
    build.add_argument("--delimiter", help="skilletegn i CSV (standard: finnes automatisk)")
    build.add_argument("--no-header", action="store_true", help="CSV uten overskriftslinje")
    build.add_argument("--date-format", metavar="FORMAT",
                       help="datoformat (strptime, f.eks. %%d.%%m.%%Y); standard: vanlige formater")
    build.add_argument("--ended-status", action="append", default=[], metavar="VERDI",
                       help="statusverdi som betyr avsluttet (kan gjentas)")
    build.add_argument("--active-status", action="append", default=[], metavar="VERDI",
                       help="statusverdi som betyr aktiv (kan gjentas)")
    build.add_argument("--allow-synthetic", action="store_true",
                       help="godta syntetiske test-ID-er (Tenor); bare for testdata")
    build.add_argument("--max-bytes", type=int, default=DeferredDefault(_max_customers_bytes),
                       metavar="N",
                       help="største filstørrelse i byte (standard %(default)s: 10 MB med konvolutten)")
    build.add_argument("--bank", metavar="ORGNR", help="bankens organisasjonsnummer (til kunngjøringen)")
    build.add_argument("--bank-name", help="bankens navn (standard: fra profilen)")
    build.add_argument("--contact", metavar="ADRESSE", help="kontaktperson i kunngjøringen")
    build.add_argument("--profile", type=Path, help="profilfil (standard kfr-conformance.toml)")
    build.add_argument("--start-date", type=_date, metavar="ÅÅÅÅ-MM-DD",
                       help="første lastedag (standard: neste virkedag)")
    build.add_argument("--per-day", type=int, metavar="N",
                       help="høyst så mange ID-er per dag (standard: det KFR leser på et døgn)")
    build.set_defaults(func=cmd_build)

    check = sub.add_parser("check", help="kontroller batchfiler laget av andre")
    check.add_argument("paths", nargs="+", type=Path, metavar="FIL", help="batchfiler eller mapper")
    check.add_argument("--allow-synthetic", action="store_true", help="godta syntetiske test-ID-er")
    check.add_argument("--report", type=Path, metavar="CSV", help="skriv alle funn til denne CSV-filen")
    check.set_defaults(func=cmd_check)

    upload = sub.add_parser("upload", help="last opp batchfiler til testmiljøet eller sandkassen")
    upload.add_argument("paths", nargs="+", type=Path, metavar="MAPPE|FIL",
                        help="mappen fra «batch build», eller batchfiler")
    _bank_options(upload)
    upload.add_argument("--state", type=Path, metavar="FIL",
                        help="statusfil (standard opplasting-<orgnr>.json ved filene)")
    upload.add_argument("--ingest-rate", type=float, default=DeferredDefault(_kfr_read_rate), metavar="N",
                        help="ID-er KFR leser per sekund (standard 250)")
    upload.add_argument("--max-queued", type=int, default=0, metavar="N",
                        help="ID-er som kan stå i KFRs kø når neste fil sendes (standard 0: forrige fil er lest)")
    upload.add_argument("--resend-unknown", action="store_true",
                        help="send på nytt filer med ukjent utfall (dobler køen for dem)")
    upload.add_argument("--allow-synthetic", action="store_true", help="godta syntetiske test-ID-er")
    upload.set_defaults(func=cmd_upload)

    confirm = sub.add_parser("confirm", help="bekreft at opplastede ID-er er synlige i KFR")
    confirm.add_argument("paths", nargs="+", type=Path, metavar="MAPPE|FIL",
                         help="mappen eller filene som ble lastet opp")
    _bank_options(confirm)
    confirm.add_argument("--state", type=Path, metavar="FIL",
                         help="statusfil (standard bekreftelse-<orgnr>.json ved filene)")
    confirm.add_argument("--sample", type=int, metavar="N", help="bare et tilfeldig utvalg på N ID-er")
    confirm.add_argument("--rate", type=float, default=DEFAULT_LOOKUP_RATE, metavar="N",
                         help=f"oppslag per sekund (standard {DEFAULT_LOOKUP_RATE:g})")
    confirm.add_argument("--seed", type=int, help="frø for utvalget (standard: tilfeldig, lagres)")
    confirm.add_argument("--restart", action="store_true", help="begynn bekreftelsen på nytt")
    confirm.add_argument("--missing-out", type=Path, metavar="CSV",
                         help="ID-er som ikke er synlige (standard ikke-synlige-<orgnr>.csv ved filene)")
    confirm.set_defaults(func=cmd_confirm)


def _max_customers_bytes() -> int:
    from conformance.firstload.rules import MAX_CUSTOMERS_BYTES

    return MAX_CUSTOMERS_BYTES


def _kfr_read_rate() -> float:
    from conformance.firstload.rules import KFR_READ_RATE

    return KFR_READ_RATE


def _bank_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer")
    parser.add_argument("--profile", type=Path, help="profilfil (standard kfr-conformance.toml)")
    parser.add_argument("--kfr-env", choices=("sandbox", "test"), help="miljø (standard sandbox)")
    parser.add_argument("--kfr-base-url", metavar="URL", help="KFRs base-URL (f.eks. en kjørende sandkasse)")
    parser.add_argument("--maskinporten-url", metavar="URL", help="Maskinportens issuer")
    parser.add_argument("--client-id", help="Maskinporten-klient-ID")
    parser.add_argument("--cert", type=Path, help="virksomhetssertifikat (.p12/.pfx eller PEM)")
    parser.add_argument("--key", type=Path, help="privat nøkkel (PEM), når den ikke er i --cert")
    parser.add_argument("--cert-password-env", metavar="VAR", help="miljøvariabel med passordet")
    parser.add_argument("--ca-bundle", type=Path, metavar="PEM", help="ekstra CA-er (TLS-inspiserende proxy)")
    parser.add_argument("--sandbox-data-dir", type=Path, metavar="MAPPE", help="sandkassens datamappe")


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"«{text}» er ikke en dato (ÅÅÅÅ-MM-DD)") from exc


def _say(text: str = "") -> None:
    print(text, flush=True)


def _kinds_line(by_kind: Any) -> str:
    from conformance.firstload.rules import KIND_LABELS, format_count
    from conformance.ids import IdKind

    return ", ".join(f"{KIND_LABELS[kind]} {format_count(by_kind.get(kind, 0))}" for kind in IdKind)


# ---------------------------------------------------------------- build


def cmd_build(args: argparse.Namespace) -> int:
    from conformance.firstload.build import BuildOptions, build_first_load, write_summary_json
    from conformance.firstload.export import ColumnMapping
    from conformance.ids import require_orgnr

    options = BuildOptions(
        allow_synthetic=args.allow_synthetic,
        max_bytes=args.max_bytes,
        mapping=ColumnMapping.parse(args.columns),
        encoding=args.encoding,
        delimiter=_delimiter(args.delimiter),
        has_header=not args.no_header,
        date_format=args.date_format,
        ended_statuses=frozenset(args.ended_status),
        active_statuses=frozenset(args.active_status),
    )
    orgnr = require_orgnr(args.bank) if args.bank else None
    if args.per_day is not None and args.per_day < 1:
        raise UsageError("--per-day må være minst 1.")
    summary = build_first_load(args.export, args.out_dir, options)
    _print_build(summary)
    extra: dict[str, Any] = {}
    if summary.files:
        extra = _plan_and_announce(summary, args, orgnr)
    write_summary_json(summary, extra)
    _say(f"Sammendrag: {summary.out_dir / 'sammendrag.json'}")
    return 1 if summary.rejected or not summary.files else 0


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    value = {"\\t": "\t", "tab": "\t"}.get(value, value)
    if len(value) != 1:
        raise UsageError("--delimiter må være ett tegn (f.eks. ; eller tab).")
    return value


def _print_build(s: BuildSummary) -> None:
    from conformance.firstload.rules import KFR_READ_RATE, format_count, format_duration

    _say(f"Eksport: {s.export} ({'CSV' if s.export_format == 'csv' else 'én ID per linje'}), "
         f"{format_count(s.rows)} datalinjer lest på {s.seconds:.1f} s")
    _say(f"Kundeforhold i filene: {format_count(s.unique)} ({_kinds_line(s.by_kind)})")
    if s.undated:
        _say(f"  uten startdato (KFR bruker dagens dato): {format_count(s.undated)}")
    _say(f"Avsluttede kundeforhold utelatt: {format_count(s.ended)}")
    _say(f"Duplikater fjernet: {format_count(s.duplicate_rows)} linjer "
         "(tidligste startdato beholdt per ID)")
    _say(f"Avviste linjer: {format_count(s.rejected)}"
         + (f" – alle står i {s.rejected_csv}" if s.rejected else ""))
    for reason, count in s.rejected_by_reason.most_common():
        _say(f"  {format_count(count):>10}  {reason}")
    for line, reason in s.rejected_examples[:PROBLEMS_SHOWN]:
        _say(f"  linje {line}: {reason}")
    if s.rejected > len(s.rejected_examples[:PROBLEMS_SHOWN]):
        _say(f"  … og {format_count(s.rejected - len(s.rejected_examples[:PROBLEMS_SHOWN]))} til")
    if not s.files:
        _say("Ingen gyldige, løpende kundeforhold: ingen filer er laget.")
        return
    _say(f"Filer: {len(s.files)} i {s.out_dir} (hver høyst {format_count(s.max_bytes)} byte, "
         "innenfor 10 MB med multipart-konvolutten)")
    for f in s.files:
        _say(f"  {f.name}  {format_count(f.ids):>9} ID-er  {format_count(f.bytes):>10} byte  sha256 {f.sha256[:16]}…")
    _say(f"Innlesingstid hos KFR ved ca. {KFR_READ_RATE:g} ID-er/s: {format_duration(s.ingest_seconds())}")


def _plan_and_announce(summary: BuildSummary, args: argparse.Namespace, orgnr: str | None) -> dict[str, Any]:
    from conformance.firstload.announce import (
        announcement_email,
        next_working_day,
        plan_days,
        write_announcement,
    )
    from conformance.firstload.rules import (
        ANNOUNCE_ABOVE_PER_DAY,
        KFR_READ_RATE,
        KIND_LABELS,
        format_count,
        oslo_today,
    )
    from conformance.ids import IdKind

    start = args.start_date or next_working_day(oslo_today())
    per_day = args.per_day or int(KFR_READ_RATE * 86_400)
    plan = plan_days(summary.files, start, per_day)
    _say("Plan per dag:")
    for day in plan:
        _say(f"  {day.day.isoformat()}: {format_count(day.ids)} ID-er ({len(day.files)} filer)")
    if per_day < max(f.ids for f in summary.files):
        _say("  Merk: en fil deles ikke mellom dager; bruk mindre --max-bytes for jevnere dager.")
    extra: dict[str, Any] = {"plan": [d.to_json() for d in plan], "announcement": None}
    if summary.unique <= ANNOUNCE_ABOVE_PER_DAY:
        return extra
    if orgnr is None:
        _say(f"Over {format_count(ANNOUNCE_ABOVE_PER_DAY)} kundeforhold: Bits skal varsles på DSOP@bits.no. "
             "Oppgi --bank ORGNR (og --contact) for å få kunngjøringen laget.")
        return extra
    from conformance.profile import load_settings

    settings = load_settings(orgnr, {"bank_name": args.bank_name, "contact": args.contact},
                             profile=args.profile)
    message = announcement_email(
        bank_name=str(settings.get("bank_name") or f"Bank {orgnr}"),
        orgnr=orgnr,
        contact=settings.get("contact"),
        plan=plan,
        by_kind={KIND_LABELS[k]: summary.by_kind.get(k, 0) for k in IdKind},
        files=summary.files,
        ended_left_out=summary.ended,
    )
    path = write_announcement(summary.out_dir, message)
    extra["announcement"] = path.name
    _say(f"Kunngjøring til DSOP@bits.no (utkast, ikke sendt): {path}")
    return extra


# ---------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    from conformance.firstload.batchfile import expand_batch_paths
    from conformance.firstload.check import check_files

    paths = expand_batch_paths(args.paths)
    started = time.perf_counter()
    with _problem_csv(args.report) as sink:
        report = check_files(paths, allow_synthetic=args.allow_synthetic, on_problem=sink)
    seconds = time.perf_counter() - started
    _print_check(report, seconds)
    if args.report:
        _say(f"Alle funn: {args.report}")
    return 0 if report.ok else 1


@contextmanager
def _problem_csv(path: Path | None) -> Iterator[Callable[[Problem], None] | None]:
    import csv
    import io

    from conformance.atomic import atomic_file

    if path is None:
        yield None
        return
    with atomic_file(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        writer = csv.writer(text, delimiter=";")
        writer.writerow(["fil", "element", "verdi", "årsak", "alvor"])

        def sink(p: Problem) -> None:
            writer.writerow([p.file, p.element or "", p.value, p.reason, "advarsel" if p.warning else "feil"])

        yield sink
        text.flush()
        text.detach()


def _print_check(report: CheckReport, seconds: float) -> None:
    from conformance.firstload.rules import format_count

    for f in report.files:
        verdict = "OK" if f.errors == 0 else f"{format_count(f.errors)} feil"
        _say(f"{f.name}: {format_count(f.ids)} ID-er, {format_count(f.bytes)} byte, "
             f"sha256 {f.sha256[:16]}… – {verdict}")
    errors = [p for p in report.problems if not p.warning]
    warnings = [p for p in report.problems if p.warning]
    for p in (errors + warnings)[:PROBLEMS_SHOWN]:
        kind = "advarsel" if p.warning else "feil"
        _say(f"  {kind}: {p.where()}: {p.reason}")
    shown = min(len(report.problems), PROBLEMS_SHOWN)
    if report.errors + report.warnings > shown:
        _say(f"  … og {format_count(report.errors + report.warnings - shown)} funn til (--report CSV gir alle)")
    _say(f"Totalt: {format_count(report.ids)} gyldige ID-er i {len(report.files)} filer "
         f"({_kinds_line(report.by_kind)})")
    if report.reasons:
        _say("Funn: " + ", ".join(f"{reason} {format_count(n)}" for reason, n in report.reasons.most_common()))
    rate = report.ids / seconds if seconds > 0 else 0
    _say(f"Kontrollert på {seconds:.2f} s ({format_count(round(rate))} ID-er/s).")
    if report.ok:
        _say("Filene følger KFRs format og reglene for førstegangslasten."
             + (" (Med advarsler.)" if report.warnings else ""))
    else:
        _say(f"Filene har {format_count(report.errors)} feil og kan ikke sendes slik de er.")


# ---------------------------------------------------------------- upload and confirm


def _checked_files(paths: Sequence[Path], allow_synthetic: bool, *, nothing_done: str) -> list[Any]:
    from conformance.firstload.batchfile import expand_batch_paths
    from conformance.firstload.check import check_files
    from conformance.firstload.upload import UploadFile

    files = expand_batch_paths(paths)
    report = check_files(files, allow_synthetic=allow_synthetic)
    if not report.ok:
        _print_check(report, 0.0)
        raise UsageError(
            f"Filene er ikke i orden; {nothing_done}.",
            hint="Rett filene (eller bygg dem på nytt med «batch build») og prøv igjen.",
        )
    return [UploadFile(Path(f.path), f.sha256, f.ids, f.bytes) for f in report.files]


@contextmanager
def _bank_client(args: argparse.Namespace, orgnr: str, *, timeout_s: float) -> Iterator[tuple[Any, Any, Any]]:
    """(environment, KfrClient, BatchOutcome) for the bank; production is refused before
    any request, and the embedded sandbox (when started here) stops afterwards."""
    from conformance.auth import Credentials, MaskinportenAuth, MaskinportenClient
    from conformance.firstload.upload import BatchOutcome, BatchOutcomeTransport
    from conformance.kfr import KfrClient, make_http_client, refuse_production
    from conformance.profile import load_settings, open_environment
    from conformance.runner import WRITE_SCOPE

    options = {
        "kfr_env": args.kfr_env, "kfr_base_url": args.kfr_base_url,
        "maskinporten_url": args.maskinporten_url, "client_id": args.client_id,
        "cert": args.cert, "key": args.key, "cert_password_env": args.cert_password_env,
        "ca_bundle": args.ca_bundle, "sandbox_data_dir": args.sandbox_data_dir,
        "ingest_rate": getattr(args, "ingest_rate", None),
    }
    settings = load_settings(orgnr, options, profile=args.profile)
    environment = open_environment(settings)
    try:
        for url in (environment.kfr_base_url, environment.maskinporten_issuer):
            refuse_production(url)
        credentials = Credentials.load(environment.cert_path, password=environment.cert_password,
                                       key_path=environment.key_path)
        outcome = BatchOutcome()
        http = make_http_client(ca_bundle=environment.ca_bundle, timeout_s=timeout_s,
                                wrap=lambda transport: BatchOutcomeTransport(transport, outcome))
        with http:
            maskinporten = MaskinportenClient(
                issuer=environment.maskinporten_issuer, client_id=environment.client_id,
                credentials=credentials, http=http,
            )
            client = KfrClient(environment.kfr_base_url, orgnr, http=http,
                               auth=MaskinportenAuth(maskinporten, [WRITE_SCOPE]))
            where = ("KFRs testmiljø" if environment.env_name == "test"
                     else "sandkassen (ikke Bits' testmiljø)")
            _say(f"Mål: {where}, {environment.kfr_base_url}, som bank {orgnr}")
            yield environment, client, outcome
    finally:
        environment.close()


def _target(environment: Any, orgnr: str) -> Any:
    from conformance.firstload.upload import Target

    return Target(orgnr, environment.env_name, environment.kfr_base_url)


def _default_beside(files: Sequence[Any], name: str) -> Path:
    return Path(files[0].path).parent / name


def cmd_upload(args: argparse.Namespace) -> int:
    from conformance.firstload.rules import format_count, format_duration
    from conformance.firstload.state import StateLock
    from conformance.firstload.upload import Uploader, UploadState
    from conformance.ids import require_orgnr

    orgnr = require_orgnr(args.bank)
    files = _checked_files(args.paths, args.allow_synthetic, nothing_done="ingenting er sendt")
    state_path = args.state or _default_beside(files, f"opplasting-{orgnr}.json")
    total = sum(f.ids for f in files)
    _say(f"{len(files)} filer med {format_count(total)} ID-er er kontrollert; statusfil {state_path}")
    with _bank_client(args, orgnr, timeout_s=120.0) as (environment, client, outcome), StateLock(state_path):
        state = UploadState.open(state_path, _target(environment, orgnr))
        uploader = Uploader(client, outcome, state, rate=args.ingest_rate, max_queued=args.max_queued,
                            resend_unknown=args.resend_unknown, progress=_say)
        result = uploader.run(files)
    _say(f"Ferdig: {result.sent} filer sendt nå, {result.skipped} godtatt tidligere; "
         f"{format_count(result.accepted_ids)} ID-er godtatt i alt.")
    _say("201 betyr at filene er gyldige, ikke at de er lest inn. KFR er anslagsvis ferdig om "
         f"{format_duration(result.queued_ids / args.ingest_rate)}.")
    paths = " ".join(str(p) for p in args.paths)
    _say(f"Bekreft deretter med: kfr-conformance batch confirm {paths} --bank {orgnr} --sample 1000")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from conformance.firstload.confirm import Confirmer
    from conformance.firstload.rules import format_count
    from conformance.firstload.state import StateLock
    from conformance.ids import require_orgnr

    orgnr = require_orgnr(args.bank)
    files = _checked_files(args.paths, allow_synthetic=True, nothing_done="ingenting er slått opp")
    state_path = args.state or _default_beside(files, f"bekreftelse-{orgnr}.json")
    missing_out = args.missing_out or _default_beside(files, f"ikke-synlige-{orgnr}.csv")
    with _bank_client(args, orgnr, timeout_s=30.0) as (environment, client, _), StateLock(state_path):
        confirmer = Confirmer(client, state_path, _target(environment, orgnr), rate=args.rate,
                              sample=args.sample, seed=args.seed, restart=args.restart, progress=_say)
        result = confirmer.run(files)
    _write_missing(missing_out, result.missing)
    _say(f"Slått opp: {format_count(result.checked)} av {format_count(result.planned)}; "
         f"synlige i KFR: {format_count(result.visible)}; ikke synlige: {format_count(len(result.missing))}.")
    if result.missing:
        for customer, file_name in result.missing[:PROBLEMS_SHOWN]:
            _say(f"  ikke synlig: {customer[:6]}***** ({file_name})")
        _say(f"Alle som ikke er synlige: {missing_out}. KFR leser ca. 250 ID-er/s; "
             "kjør samme kommando igjen senere – da slås bare disse opp på nytt.")
        return 1
    _say("Alle opplastede ID-er som ble slått opp, er synlige i KFR for banken.")
    return 0


def _write_missing(path: Path, missing: Sequence[tuple[str, str]]) -> None:
    from conformance.atomic import atomic_write_bytes

    lines = ["id;fil", *(f"{customer};{name}" for customer, name in missing)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
