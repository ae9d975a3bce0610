"""``kfr-conformance archive add|list|verify-all|html|repair|export-correlations``: the
archive for Bits and auditors.

Thin: parse, open the archive, call ``conformance.archive``, print, set the exit code.
Exit codes: 0 all well; 1 something is wrong (verify-all found a problem, repair could not
make the archive consistent); 2 unusable input (an input could not be archived at all, a
bad option), as everywhere in kfr-conformance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conformance.cli import DeferredChoices
from conformance.commands.trust import add_trust_options, policy_from_args
from conformance.errors import UsageError
from conformance.home import default_archive_dir

# The archive itself is imported inside the handlers: building the parser (every command,
# ``--help``) must not load SQLite, the verifier and the site builder.
if TYPE_CHECKING:
    from conformance.archive import audit as _audit
    from conformance.archive.index import PackEntry
    from conformance.archive.replay import ReplayMatch
    from conformance.archive.store import AddOutcome, Archive


def register(subparsers: argparse._SubParsersAction) -> None:
    archive = subparsers.add_parser(
        "archive",
        help="arkiv over innsendte resultatpakker: legg til, list, verifiser alle, lag nettsted",
        description="Arkiv over resultatpakker for Bits og revisorer.",
    )
    sub = archive.add_subparsers(
        dest="archive_command", metavar="KOMMANDO", required=True, help="hva som skal gjøres med arkivet"
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--archive",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"arkivmappen (standard: {default_archive_dir()})",
    )
    trust = argparse.ArgumentParser(add_help=False)
    add_trust_options(trust)

    add = sub.add_parser(
        "add",
        parents=[common, trust],
        help="verifiser og arkiver pakker (.zip, .eml, mapper)",
        description="Verifiserer hver pakke og kopierer den inn i arkivet. En pakke som ikke "
        "verifiserer blir også arkivert, merket som ugyldig med begrunnelse.",
    )
    add.add_argument(
        "packs",
        nargs="+",
        type=Path,
        metavar="PAKKE",
        help="resultatpakke (.zip), C-3-e-post (.eml) eller mappe (søkes rekursivt)",
    )
    add.add_argument("--json", action="store_true", help="skriv resultatet som JSON")
    add.set_defaults(func=_cmd_add)

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--bank", metavar="ORGNR", help="bare denne bankens pakker")
    filters.add_argument(
        "--since", metavar="DATO", type=_date, help="bare kjøringer fra og med DATO (ÅÅÅÅ-MM-DD)"
    )
    status = filters.add_argument(
        "--status",
        help="bare gyldige (valid), gyldig signert med gjenbrukt bevis (replayed) eller "
        "ugyldige (invalid) pakker, etter siste verifisering",
    )
    status.choices = DeferredChoices(_standings)
    filters.add_argument(
        "--replayed",
        action="store_true",
        help="bare pakker med bevis som også finnes i en annen pakke (gyldige eller ikke)",
    )

    listing = sub.add_parser(
        "list", parents=[common, filters], help="vis pakkene i arkivet og hvilke som deler bevis"
    )
    listing.add_argument("--json", action="store_true", help="skriv listen som JSON")
    listing.set_defaults(func=_cmd_list)

    verify_all = sub.add_parser(
        "verify-all",
        parents=[common, trust],
        help="verifiser alle arkiverte pakker på nytt mot bytene og indeksen",
        description="Verifiserer hver pakke på nytt under policyen den ble lagt til med "
        "(rotsertifikater, sandkasse, testark …). Tillitsvalg på kommandolinjen overstyrer "
        "den delen av policyen. Dommene lagres i indeksen som pakkenes nyeste verifisering.",
    )
    verify_all.add_argument("--json", action="store_true", help="skriv rapporten som JSON")
    verify_all.add_argument(
        "--ignore-stored-policy",
        action="store_true",
        help="bruk bare tillitsvalgene på kommandolinjen, ikke policyen hver pakke ble lagt til med",
    )
    verify_all.add_argument(
        "--no-record",
        action="store_true",
        help="ikke lagre dommene i indeksen (arkivet blir ikke endret)",
    )
    verify_all.add_argument(
        "--progress",
        action="store_true",
        help="vis fremdrift på stderr også når den ikke er en terminal",
    )
    verify_all.set_defaults(func=_cmd_verify_all)

    html = sub.add_parser(
        "html", parents=[common], help="lag et statisk nettsted over arkivet (fungerer uten nett)"
    )
    html.add_argument(
        "out_dir",
        type=Path,
        metavar="UT_MAPPE",
        help="mappen nettstedet skrives til (et tidligere nettsted der erstattes helt)",
    )
    html.set_defaults(func=_cmd_html)

    repair = sub.add_parser(
        "repair",
        parents=[common, trust],
        help="rydd etter avbrutte tillegg: filer uten rad, rader uten fil, midlertidige filer",
    )
    repair.add_argument("--json", action="store_true", help="skriv resultatet som JSON")
    repair.set_defaults(func=_cmd_repair)

    export = sub.add_parser(
        "export-correlations",
        parents=[common, filters],
        help="alle CorrelationID-er i arkivet som CSV, til sammenligning med KFRs egne logger",
        description="Skriver hver CorrelationID i arkivet med pakke, bank, kjøring, tidspunkt, "
        "operasjon, status og testtilfelle. En ID som KFRs serverlogger ikke kjenner, ble "
        "aldri sendt til KFR: det er den kontrollen Bits har som en bank ikke kan signere seg "
        "forbi.",
    )
    export.add_argument(
        "out", metavar="UT_FIL", help="CSV-filen som skal skrives («-» for standard ut)"
    )
    export.set_defaults(func=_cmd_export_correlations)


# --- options -------------------------------------------------------------------------------


def _standings() -> tuple[str, ...]:
    from conformance.archive.replay import STANDINGS

    return STANDINGS


def _date(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} er ikke en dato på formen ÅÅÅÅ-MM-DD"
        ) from None


def _archive_dir(args: argparse.Namespace) -> Path:
    return args.archive if args.archive is not None else default_archive_dir()


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


# --- add -----------------------------------------------------------------------------------

def _action_labels() -> dict[str, str]:
    from conformance.archive.store import ADDED, DUPLICATE, FAILED, RESTORED

    return {
        ADDED: "lagt til",
        RESTORED: "lagt tilbake",
        DUPLICATE: "finnes fra før",
        FAILED: "IKKE ARKIVERT",
    }


def _cmd_add(args: argparse.Namespace) -> int:
    from conformance.archive import replay
    from conformance.archive.store import ADDED, DUPLICATE, FAILED, Archive

    labels = _action_labels()
    policy = policy_from_args(args)

    def show(outcome: AddOutcome) -> None:
        if not args.json:  # one line per pack as it happens, so a long import shows progress
            print(
                f"{outcome.source}: {labels[outcome.action]} – {outcome.message}",
                flush=True,
            )
            _print_links(outcome.links)

    with Archive.open(_archive_dir(args), create=True) as archive:
        outcomes = archive.add(args.packs, policy, on_outcome=show)
    if args.json:
        _print_json([o.to_dict() for o in outcomes])
    if not outcomes:
        raise UsageError("Fant ingen pakker (.zip eller .eml) å legge til.")
    added = [o for o in outcomes if o.action == ADDED]
    if not args.json:
        invalid = sum(1 for o in added if o.entry and not o.entry.is_valid)
        replayed = sum(1 for o in added if replay.flagged(o.links))
        duplicates = sum(1 for o in outcomes if o.action == DUPLICATE)
        failed = sum(1 for o in outcomes if o.action == FAILED)
        reused = f", {replayed} med gjenbrukt bevis" if replayed else ""
        print(
            f"{len(added)} lagt til ({invalid} ugyldige{reused}), {duplicates} fantes fra før, "
            f"{failed} kunne ikke arkiveres."
        )
    return 2 if any(o.action == FAILED for o in outcomes) else 0


def _print_links(links: Sequence[ReplayMatch], indent: str = "    ") -> None:
    for match in links:
        if match.flagged:
            print(f"{indent}GJENBRUKT BEVIS: {match.describe_nb()}")
        else:
            print(f"{indent}Merk: {match.describe_nb()}")


# --- list ----------------------------------------------------------------------------------


def _short_time(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "–"


def _result(entry: PackEntry) -> str:
    counts = entry.counts
    return f"{counts.get('passed', 0)}/{counts.get('total', 0)}" if counts else "–"


def _verdict(entry: PackEntry, links: Sequence[ReplayMatch] = ()) -> str:
    from conformance.archive import replay

    standing = replay.standing(entry, links)
    label = {
        replay.VALID: "gyldig",
        replay.REPLAYED: "GYLDIG SIGNATUR – GJENBRUKT BEVIS",
        replay.INVALID: "UGYLDIG",
    }[standing]
    if standing == replay.INVALID and replay.flagged(links):
        label += " – GJENBRUKT BEVIS"
    return label + (" (mangler)" if entry.state == "missing" else "")


def select(
    archive: Archive, args: argparse.Namespace
) -> tuple[list[PackEntry], dict[int, list[ReplayMatch]]]:
    """The packs the filter options pick, with every pack's links."""
    from conformance.archive import replay
    from conformance.ids import require_orgnr

    bank = require_orgnr(args.bank) if args.bank else None
    entries = archive.entries(bank=bank, since=args.since)
    links = replay.links(archive.index)
    if args.status:
        entries = [
            e for e in entries if replay.standing(e, links.get(e.id or 0, [])) == args.status
        ]
    if args.replayed:
        entries = [e for e in entries if replay.flagged(links.get(e.id or 0, []))]
    return entries, links


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(
    entries: Sequence[PackEntry], links: dict[int, list[ReplayMatch]] | None = None
) -> str:
    links = links or {}
    headings = ("Orgnr", "Bank", "Kjørt (UTC)", "Miljø", "Ark", "OK/alle", "Dom", "Fil")
    rows = [
        (
            e.orgnr or "–",
            _clip(e.bank_name or "–", 28),
            _short_time(e.run_started_at),
            e.environment or "–",
            e.sheet_version or "–",
            _result(e),
            _verdict(e, links.get(e.id or 0, [])),
            e.path,
        )
        for e in entries
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headings)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def entry_json(entry: PackEntry, links: Sequence[ReplayMatch]) -> dict[str, Any]:
    """A pack for ``--json``: the index row (without its rows, which the site and
    ``add --json`` show), its standing and what it shares."""
    from conformance.archive import replay

    row = entry.to_dict()
    row.pop("cases", None)
    return {
        **row,
        "standing": replay.standing(entry, links),
        "replayed": bool(replay.flagged(links)),
        "links": [m.to_dict() for m in links],
    }


def _cmd_list(args: argparse.Namespace) -> int:
    from conformance.archive import replay
    from conformance.archive.store import Archive

    with Archive.open(_archive_dir(args)) as archive:
        entries, links = select(archive, args)
    if args.json:
        _print_json([entry_json(e, links.get(e.id or 0, [])) for e in entries])
        return 0
    if not entries:
        print("Ingen pakker i arkivet passer til filteret.")
        return 0
    print(render_table(entries, links))
    flagged = [e for e in entries if links.get(e.id or 0)]
    if flagged:
        print("\nDelt bevis:")
    for entry in flagged:
        print(f"  {entry.path}:")
        _print_links(links[entry.id or 0], indent="    ")
    standings = [replay.standing(e, links.get(e.id or 0, [])) for e in entries]
    print(
        f"\n{len(entries)} pakker: {standings.count(replay.VALID)} gyldige, "
        f"{standings.count(replay.REPLAYED)} gyldig signert med gjenbrukt bevis, "
        f"{standings.count(replay.INVALID)} ugyldige."
    )
    return 0


# --- verify-all ----------------------------------------------------------------------------


class ProgressBar:
    """``[#####.....]  12/100`` on one stderr line, redrawn at most ten times a second."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out, self.width, self._last = out, width, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.width * done // max(total, 1)
        self.out.write(
            f"\rVerifiserer [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        )
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def policy_choice(args: argparse.Namespace) -> _audit.PolicyChoice:
    """Today's options, and which of them were given (those override a stored policy)."""
    from conformance.archive import audit as _audit
    from conformance.archive.policy import explicit_fields

    given = policy_from_args(args)
    blank = argparse.ArgumentParser(add_help=False)
    add_trust_options(blank)
    defaults = policy_from_args(blank.parse_args([]))
    return _audit.PolicyChoice(
        given, explicit_fields(given, defaults), use_stored=not args.ignore_stored_policy
    )


def _cmd_verify_all(args: argparse.Namespace) -> int:
    from conformance.archive import audit as _audit
    from conformance.archive.store import Archive

    choice = policy_choice(args)
    show_progress = args.progress or sys.stderr.isatty()
    with Archive.open(_archive_dir(args)) as archive:
        report = _audit.verify_all(
            archive,
            choice,
            record=not args.no_record,
            progress=ProgressBar(sys.stderr) if show_progress else None,
        )
    if args.json:
        _print_json(report.to_dict())
    else:
        _print_audit(report)
    return 0 if report.ok else 1


def _print_audit(report: _audit.AuditReport) -> None:
    from conformance.archive import audit as _audit

    for item in report.packs:
        if item.status == _audit.OK:
            continue
        print(f"{item.entry.path}: {_audit.STATUS_LABELS_NB[item.status]}")
        for detail in item.details:
            print(f"    {detail}")
    state = report.consistency
    for rel in state.orphan_files:
        print(f"{rel}: FIL UTEN RAD I INDEKSEN (kjør «archive repair»)")
    for entry in state.missing_files:
        print(f"{entry.path}: RAD UTEN FIL (kjør «archive repair»)")
    for rel in state.stray_temps:
        note = (
            " – et tillegg pågår kanskje nå" if state.writer_active else " (kjør «archive repair»)"
        )
        print(f"{rel}: MIDLERTIDIG FIL ETTER AVBRUTT TILLEGG{note}")
    counts: dict[str, int] = {}
    for item in report.packs:
        counts[item.status] = counts.get(item.status, 0) + 1
    summary = ", ".join(
        f"{_audit.STATUS_LABELS_NB[s].lower()}: {n}" for s, n in sorted(counts.items())
    )
    sources: dict[str, int] = {}
    for item in report.packs:
        if item.verdict is not None:
            sources[item.policy_source] = sources.get(item.policy_source, 0) + 1
    if sources:
        shown = ", ".join(
            f"{_audit.POLICY_SOURCE_LABELS_NB[s]}: {n}" for s, n in sorted(sources.items())
        )
        print(f"Policy: {shown}.")
    if report.recorded:
        print("Dommene er lagret i indeksen.")
    elif report.not_recorded_reason:
        print(f"Dommene er {report.not_recorded_reason}.")
    verdict = "Alt i orden." if report.ok else "FEIL FUNNET."
    print(f"{len(report.packs)} pakker verifisert ({summary or 'ingen'}). {verdict}")


# --- html ----------------------------------------------------------------------------------


def _cmd_html(args: argparse.Namespace) -> int:
    from conformance.archive.site import build_site
    from conformance.archive.store import Archive

    with Archive.open(_archive_dir(args)) as archive:
        result = build_site(archive, args.out_dir)
    print(
        f"Nettstedet er skrevet til {result.out_dir / 'index.html'}: {result.packs} pakker, "
        f"{result.banks} banker, {result.reports} rapporter (bare fra gyldige pakker, isolert)."
    )
    return 0


# --- export-correlations -------------------------------------------------------------------


def _cmd_export_correlations(args: argparse.Namespace) -> int:
    from conformance.archive.export import export_correlations
    from conformance.archive.store import Archive

    with Archive.open(_archive_dir(args)) as archive:
        entries, links = select(archive, args)
        if args.out == "-":
            rows = export_correlations(archive, entries, links, sys.stdout)
            sys.stdout.flush()
            return 0
        rows = export_correlations(archive, entries, links, Path(args.out))
    print(f"{rows} CorrelationID-er fra {len(entries)} pakker er skrevet til {args.out}.")
    return 0


# --- repair --------------------------------------------------------------------------------


def _cmd_repair(args: argparse.Namespace) -> int:
    from conformance.archive.store import Archive

    policy = policy_from_args(args)
    with Archive.open(_archive_dir(args)) as archive:
        outcome = archive.repair(policy)
        after = archive.scan()
    if args.json:
        _print_json({**outcome.to_dict(), "consistency": after.to_dict()})
    else:
        for line in outcome.actions:
            print(line)
        if not outcome.actions:
            print("Ingenting å reparere.")
        print("Arkivet er konsistent." if after.ok else "Arkivet er fortsatt ikke konsistent.")
    return 0 if after.ok else 1
