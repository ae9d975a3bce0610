"""``archive html OUT_DIR``: a static site an auditor opens from a file share, offline.

Layout::

    index.html                 every pack with its verdict, a timeline (inline SVG), the banks
    bank/<orgnr>.html          one bank's history
    pakke/<key>/index.html     verification details of one pack (<key> = SHA-256, 16 hex)
    pakke/<key>/report.html    the pack's own report, read through the safe zip reader, 0444

Each page carries its own CSS and a small script that only adds sorting and filtering: the
tables are complete without it. Templates render with autoescape on and nothing is marked
safe, so text from a pack (bank names, reasons, subjects) is always escaped. The site is
built in a temp folder next to OUT_DIR and swapped in, so a reader never sees half a site.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from cryptography import x509
from cryptography.x509.oid import NameOID

from conformance.archive.index import MISSING, PackEntry, utc_now
from conformance.archive.store import Archive
from conformance.archive.verdict import UNKNOWN_BANK_DIR, sha256_hex
from conformance.errors import InvalidPack
from conformance.models import Outcome

SITE_MARKER = ".kfr-arkivnettsted"
REPORT_NAME = "report.html"
READ_ONLY = 0o444

# The verifier writes subjects with this name for OID 2.5.4.97 (see pack/certinfo.py).
_RFC4514_NAMES = {"organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER}

FILE_OK = "ok"
FILE_MISSING = "missing"
FILE_CHANGED = "changed"


@dataclass
class PackView:
    """One pack as the site shows it."""

    entry: PackEntry
    key: str
    file_state: str
    has_report: bool = False

    @property
    def bank_key(self) -> str:
        return (
            self.entry.orgnr
            if self.entry.orgnr and self.entry.orgnr.isdigit()
            else UNKNOWN_BANK_DIR
        )

    @property
    def when(self) -> str:
        return self.entry.run_started_at or self.entry.added_at

    @property
    def status(self) -> str:
        """valid / invalid for the filter; a file gone or changed overrides the verdict."""
        if self.file_state != FILE_OK:
            return "invalid"
        return self.entry.verdict

    @property
    def status_label(self) -> str:
        if self.file_state == FILE_MISSING:
            return "Mangler i arkivet"
        if self.file_state == FILE_CHANGED:
            return "Endret etter arkivering"
        return "Gyldig" if self.entry.is_valid else "Ugyldig"

    @property
    def first_reason(self) -> str:
        if self.file_state == FILE_MISSING:
            return "Filen finnes ikke lenger i arkivet."
        if self.file_state == FILE_CHANGED:
            return "Filens SHA-256 stemmer ikke med indeksen."
        failed = self.entry.failed_checks
        return failed[0].get("reason", "") if failed else ""

    @property
    def counts_nb(self) -> list[tuple[str, int]]:
        """The run's counts with Norwegian outcome names, in the order of the report."""
        out = []
        for outcome in Outcome:
            if self.entry.counts.get(str(outcome)):
                out.append((outcome.label_nb, self.entry.counts[str(outcome)]))
        return out

    @property
    def signer_name(self) -> str:
        """The signer's common name; the full subject is on the details page."""
        subject = self.entry.signer_subject
        if not subject:
            return "–"
        try:
            name = x509.Name.from_rfc4514_string(subject, _RFC4514_NAMES)
            common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        except ValueError:
            return subject
        return str(common[0].value) if common else subject

    @property
    def result(self) -> str:
        counts = self.entry.counts
        if not counts:
            return "–"
        return f"{counts.get('passed', 0)} av {counts.get('total', 0)} OK"


@dataclass(frozen=True)
class SiteResult:
    out_dir: Path
    packs: int
    banks: int
    reports: int


def _format_time(value: str | None) -> str:
    if not value:
        return "–"
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M") + " UTC"


def _format_date(value: str | None) -> str:
    return _format_time(value)[:10] if value else "–"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conformance", "templates/archive"),
        autoescape=True,  # bank names, reasons and subjects come from untrusted packs
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tid"] = _format_time
    env.filters["tid_kort"] = lambda value: _format_time(value).removesuffix(" UTC")
    env.filters["dato"] = _format_date
    return env


def _parse(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def timeline(views: list[PackView], *, link_prefix: str, width: int = 900) -> dict[str, Any]:
    """Geometry of the timeline chart: one lane per bank, one dot per pack at its run time."""
    dated = [(v, _parse(v.when)) for v in views]
    dated = [(v, m) for v, m in dated if m is not None]
    lanes: dict[str, str] = {}
    for view, _ in sorted(dated, key=lambda vm: vm[0].bank_key):
        lanes.setdefault(view.bank_key, view.entry.bank_name or "")
    lane_h, top, left, right = 26, 20, 230, 20
    height = top + lane_h * max(len(lanes), 1) + 40
    chart = {
        "width": width,
        "height": height,
        "lanes": [],
        "dots": [],
        "ticks": [],
        "left": left,
        "right": width - right,
        "axis_y": top + lane_h * max(len(lanes), 1) + 6,
    }
    if not dated:
        return chart
    start = min(m for _, m in dated)
    end = max(m for _, m in dated)
    span = max((end - start).total_seconds(), 86400.0)
    start -= dt.timedelta(seconds=span * 0.03)
    span *= 1.06

    def x_of(moment: dt.datetime) -> float:
        return round(left + (moment - start).total_seconds() / span * (width - left - right), 1)

    order = {key: i for i, key in enumerate(lanes)}
    for key, name in lanes.items():
        y = top + order[key] * lane_h + lane_h / 2
        label = f"{key} {name}".strip()
        chart["lanes"].append({"y": y, "label": label[:34]})
    for view, moment in dated:
        chart["dots"].append(
            {
                "x": x_of(moment),
                "y": top + order[view.bank_key] * lane_h + lane_h / 2,
                "status": view.status,
                "href": f"{link_prefix}pakke/{view.key}/index.html",
                "title": f"{view.entry.orgnr or 'ukjent'} {view.entry.bank_name or ''} – "
                f"{_format_time(view.when)} – {view.status_label}",
            }
        )
    for i in range(5):
        moment = start + dt.timedelta(seconds=span * (0.05 + 0.9 * i / 4))
        chart["ticks"].append({"x": x_of(moment), "label": moment.strftime("%Y-%m-%d")})
    return chart


def _read_report(data: bytes) -> bytes | None:
    """The pack's report.html through the pack engineer's hostile-zip reader, or None."""
    from conformance.pack.safezip import SafeZip

    try:
        with SafeZip(data) as pack:
            return pack.read(REPORT_NAME) if REPORT_NAME in pack else None
    except InvalidPack:
        return None


def _write_read_only(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, READ_ONLY)


def _view(archive: Archive, entry: PackEntry, build_dir: Path) -> PackView:
    view = PackView(entry, entry.sha256[:16], FILE_OK)
    path = archive.file_of(entry)
    try:
        data = path.read_bytes()
    except OSError:
        view.file_state = FILE_MISSING
        return view
    if entry.state == MISSING:
        view.file_state = FILE_MISSING  # recorded as gone; a file back under the name is unchecked
        return view
    if sha256_hex(data) != entry.sha256:
        view.file_state = FILE_CHANGED  # never show a report from bytes nobody verified
        return view
    report = _read_report(data)
    if report is not None:
        _write_read_only(build_dir / "pakke" / view.key / REPORT_NAME, report)
        view.has_report = True
    return view


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise _site_error(f"{out_dir} finnes og er ikke en mappe.")
        if any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).exists():
            raise _site_error(
                f"{out_dir} finnes og er ikke et nettsted laget av «archive html»; "
                "velg en tom eller ny mappe."
            )


def _site_error(message: str) -> Exception:
    from conformance.archive.index import ArchiveError

    return ArchiveError(message)


def build_site(archive: Archive, out_dir: Path) -> SiteResult:
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        result = _render(archive, build_dir, out_dir)
        _swap_in(build_dir, out_dir)
    except BaseException:
        _remove_tree(build_dir)
        raise
    return result


def _render(archive: Archive, build_dir: Path, out_dir: Path) -> SiteResult:
    env = _environment()
    views = [_view(archive, e, build_dir) for e in archive.entries()]
    views.sort(key=lambda v: v.when, reverse=True)
    banks: dict[str, list[PackView]] = defaultdict(list)
    for view in views:
        banks[view.bank_key].append(view)
    bank_rows = [
        {
            "key": key,
            "name": next((v.entry.bank_name for v in items if v.entry.bank_name), ""),
            "packs": len(items),
            "valid": sum(1 for v in items if v.status == "valid"),
            "latest": items[0],
        }
        for key, items in sorted(banks.items())
    ]
    common = {"generated_at": utc_now(), "archive_name": archive.root.name}

    def write(rel: str, template: str, **context: Any) -> None:
        html = env.get_template(template).render(**common, **context)
        target = build_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")

    write(
        "index.html",
        "index.html.j2",
        root="",
        views=views,
        banks=bank_rows,
        chart=timeline(views, link_prefix=""),
        valid=sum(1 for v in views if v.status == "valid"),
    )
    for row in bank_rows:
        items = banks[row["key"]]
        write(
            f"bank/{row['key']}.html",
            "bank.html.j2",
            root="../",
            bank=row,
            views=items,
            chart=timeline(items, link_prefix="../"),
        )
    for view in views:
        write(f"pakke/{view.key}/index.html", "pack.html.j2", root="../../", view=view)
    (build_dir / SITE_MARKER).write_text(
        "Laget av kfr-conformance archive html. Mappen erstattes når nettstedet lages på nytt.\n",
        encoding="utf-8",
    )
    return SiteResult(out_dir, len(views), len(bank_rows), sum(v.has_report for v in views))


def _remove_tree(path: Path) -> None:
    """Remove a site folder, read-only reports included (their folders are writable)."""
    if path.exists():
        shutil.rmtree(path)


def _swap_in(build_dir: Path, out_dir: Path) -> None:
    os.chmod(build_dir, 0o755)  # mkdtemp makes it 0700; the site is for others to read
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.gammel")
        _remove_tree(old)
        os.replace(out_dir, old)
        os.replace(build_dir, out_dir)
        _remove_tree(old)
    else:
        os.replace(build_dir, out_dir)
