"""``archive html OUT_DIR``: a static site an auditor opens from a file share, offline.

Layout::

    index.html                 every pack with its standing, a timeline (inline SVG), the banks
    bank/<orgnr>.html          one bank's history
    pakke/<key>/index.html     the archive's own page of one pack (<key> = SHA-256, 16 hex):
                               rows, outcomes, CorrelationIDs, checks, signer, policy, links
                               to packs sharing its evidence, the bank's report isolated
    pakke/<key>/rapport.zip    the bank's report.html, zipped: a download, never a page

A bank signs its own report, so a report may carry a script; served from the site's
origin it would run there and could read every page. So the site never serves a pack's
HTML as a page of its own. Every page carries a Content-Security-Policy ``<meta>`` that
allows no source at all except its own inline CSS and script, by SHA-256 hash, and
``data:``/same-origin images. A verified pack's report is shown inside an
``<iframe sandbox srcdoc=…>`` without ``allow-scripts`` (an opaque origin that inherits the
page's policy; the report's own ``<style>`` blocks are allowed by their hashes, so it keeps
its look), and offered zipped for download. An invalid, changed or missing pack gets no
report at all.

Each page's script only adds sorting and filtering: the tables are complete without it.
Templates render with autoescape on and nothing from a pack is marked safe, so text from
a pack (bank names, reasons, subjects, the report in ``srcdoc``) is always escaped. The
site is built in a temp folder next to OUT_DIR and swapped in, so a reader never sees half
a site.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from cryptography import x509
from cryptography.x509.oid import NameOID

from conformance.archive import replay
from conformance.archive.evidence import CorrelationUse
from conformance.archive.index import MISSING, PackEntry, Verification, utc_now
from conformance.archive.policy import describe as describe_policy
from conformance.archive.replay import ReplayMatch
from conformance.archive.store import Archive
from conformance.archive.verdict import UNKNOWN_BANK_DIR, sha256_hex
from conformance.errors import InvalidPack
from conformance.models import Outcome

SITE_MARKER = ".kfr-arkivnettsted"
REPORT_NAME = "report.html"
REPORT_DOWNLOAD = "rapport.zip"
READ_ONLY = 0o444
MAX_EMBEDDED_REPORT = 8 << 20  # larger reports are offered as a download only
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)

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
    report_html: str | None = None  # the report, for the sandboxed iframe
    report_style_hashes: tuple[str, ...] = ()
    links: list[ReplayMatch] = field(default_factory=list)
    correlations: list[CorrelationUse] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)

    @property
    def standing(self) -> str:
        return replay.standing(self.entry, self.links)

    @property
    def replayed(self) -> bool:
        return bool(replay.flagged(self.links))

    @property
    def flagged_links(self) -> list[ReplayMatch]:
        return replay.flagged(self.links)

    @property
    def moment(self) -> dt.datetime:
        """The run's start (or, for a pack that could not be read, when it was added),
        parsed, so packs with different UTC offsets sort by the real time."""
        return _parse(self.when) or _EPOCH

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
        """valid / replayed / invalid for the filter and colours; a file gone or changed
        overrides the verdict."""
        if self.file_state != FILE_OK:
            return replay.INVALID
        return self.standing

    @property
    def status_label(self) -> str:
        if self.file_state == FILE_MISSING:
            return "Mangler i arkivet"
        if self.file_state == FILE_CHANGED:
            return "Endret etter arkivering"
        return replay.standing_label(self.entry, self.links)

    @property
    def first_reason(self) -> str:
        if self.file_state == FILE_MISSING:
            return "Filen finnes ikke lenger i arkivet."
        if self.file_state == FILE_CHANGED:
            return "Filens SHA-256 stemmer ikke med indeksen."
        failed = self.entry.current.failed_checks
        if failed:
            return str(failed[0].get("reason", ""))
        flagged = self.flagged_links
        return f"Beviset finnes også i {flagged[0].other_path}." if flagged else ""

    @property
    def shows_report(self) -> bool:
        """Only a pack whose bytes are the verified ones, and that verified."""
        return self.has_report and self.file_state == FILE_OK and self.entry.current.is_valid

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The manifest's rows with Norwegian outcomes and their recorded CorrelationIDs."""
        by_case: dict[str, list[CorrelationUse]] = defaultdict(list)
        for use in self.correlations:
            by_case[use.case_id].append(use)
        out = []
        for case in self.entry.cases:
            out.append(
                {
                    **case,
                    "outcome_label": outcome_label(case.get("outcome")),
                    "uses": by_case.get(str(case.get("id")), []),
                }
            )
        return out

    @property
    def policy_lines(self) -> list[tuple[str, str]]:
        return describe_policy(self.entry.policy)

    @property
    def latest_policy_lines(self) -> list[tuple[str, str]]:
        return describe_policy(self.entry.current.policy)

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


def outcome_label(value: Any) -> str:
    try:
        return Outcome(str(value)).label_nb
    except ValueError:
        return "Ukjent utfall"


def latest_per_bank(views: list[PackView]) -> dict[str, PackView]:
    """Each bank's newest pack: the latest run start (real time, offsets honoured), then
    the one added last. Its verdict is its newest verification (``entry.current``)."""
    latest: dict[str, PackView] = {}
    for view in views:
        key = (view.moment, view.entry.added_at, view.entry.id or 0)
        held = latest.get(view.bank_key)
        if held is None or key > (held.moment, held.entry.added_at, held.entry.id or 0):
            latest[view.bank_key] = view
    return latest


def csp_hash(text: str) -> str:
    """A CSP source expression for an inline block with exactly this text."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(normalised.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(*, styles: tuple[str, ...], scripts: tuple[str, ...]) -> str:
    """Nothing from anywhere except our own inline blocks (by hash) and local images."""
    style = " ".join(styles) or "'none'"
    script = " ".join(scripts) or "'none'"
    return (
        f"default-src 'none'; style-src {style}; script-src {script}; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'"
    )


_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)


def report_style_hashes(html: str) -> tuple[str, ...]:
    """Hashes of the report's own ``<style>`` blocks: CSS cannot run code, and the
    sandboxed frame can load nothing, so allowing them only keeps the report's look. A
    block this simple scan reads differently from a browser gets a hash that matches
    nothing, and the report is shown unstyled: never less safe."""
    blocks = _STYLE_BLOCK.findall(html[:MAX_EMBEDDED_REPORT])
    return tuple(dict.fromkeys(csp_hash(block) for block in blocks[:20]))


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


def _zipped_report(report: bytes) -> bytes:
    """The report inside a zip: browsers download a zip, they never render it as a page."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(REPORT_NAME, (1980, 1, 1, 0, 0, 0)), report)
    return out.getvalue()


def _view(
    archive: Archive, entry: PackEntry, build_dir: Path, links: list[ReplayMatch]
) -> PackView:
    view = PackView(entry, entry.sha256[:16], FILE_OK, links=links)
    if entry.id is not None:
        view.correlations = archive.index.correlations(entry.id)
        view.verifications = archive.index.verifications(entry.id)
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
    if not entry.current.is_valid:
        return view  # an invalid pack's HTML is not offered in any form
    report = _read_report(data)
    if report is not None:
        _write_read_only(build_dir / "pakke" / view.key / REPORT_DOWNLOAD, _zipped_report(report))
        view.has_report = True
        if len(report) <= MAX_EMBEDDED_REPORT:
            view.report_html = report.decode("utf-8", "replace")
            view.report_style_hashes = report_style_hashes(view.report_html)
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
    all_links = replay.links(archive.index)
    views = [_view(archive, e, build_dir, all_links.get(e.id or 0, [])) for e in archive.entries()]
    views.sort(key=lambda v: (v.moment, v.entry.added_at, v.entry.id or 0), reverse=True)
    banks: dict[str, list[PackView]] = defaultdict(list)
    for view in views:
        banks[view.bank_key].append(view)
    latest = latest_per_bank(views)
    bank_rows = [
        {
            "key": key,
            "name": next((v.entry.bank_name for v in items if v.entry.bank_name), ""),
            "packs": len(items),
            "valid": sum(1 for v in items if v.status == replay.VALID),
            "latest": latest[key],
        }
        for key, items in sorted(banks.items())
    ]
    # Our own inline CSS and script, allowed by hash: ``_base.html.j2`` includes exactly
    # these texts into every page.
    css = env.get_template("_site.css.j2").render()
    script = env.get_template("_site.js.j2").render()
    common = {"generated_at": utc_now(), "archive_name": archive.root.name}

    def write(rel: str, template: str, extra_styles: tuple[str, ...] = (), **context: Any) -> None:
        csp = content_security_policy(
            styles=(csp_hash(css), *extra_styles), scripts=(csp_hash(script),)
        )
        html = env.get_template(template).render(**common, csp=csp, **context)
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
        valid=sum(1 for v in views if v.status == replay.VALID),
        replayed=sum(1 for v in views if v.replayed),
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
    keys = {v.entry.id: v.key for v in views}
    for view in views:
        write(
            f"pakke/{view.key}/index.html",
            "pack.html.j2",
            extra_styles=view.report_style_hashes if view.shows_report else (),
            root="../../",
            view=view,
            keys=keys,
        )
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
