"""``archive html``: a static, offline, escaped site over the archive."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import stat
import struct
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from archive_support import BANKS, HOSTILE_NAME, cached_pack_set, overwrite
from cryptography.hazmat.primitives.serialization import Encoding
from headless_chromium import chromium as find_chromium
from headless_chromium import headless
from pack_support import read_zip

from conformance.archive.index import ArchiveError
from conformance.archive.site import SITE_MARKER, build_site
from conformance.archive.store import Archive
from conformance.pack.verify import verify_pack_bytes


@pytest.fixture(scope="session")
def packs(tmp_path_factory):
    return cached_pack_set(tmp_path_factory)


@pytest.fixture
def archive(tmp_path, packs):
    with Archive.open(tmp_path / "arkiv", create=True) as opened:
        opened.add(list(packs.packs.values()), packs.policy())
        yield opened


class Page(HTMLParser):
    """Links, resources, pack rows and SVG dots of one page."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.dots: list[str] = []
        self.frames: list[dict[str, str]] = []
        self.csp: list[str] = []
        self.inline: dict[str, list[str]] = {"style": [], "script": []}
        self._inline: str | None = None
        self._in_packs = False
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])
        if tag == "iframe":
            self.frames.append(attributes)
        if tag == "meta" and attributes.get("http-equiv", "").lower() == "content-security-policy":
            self.csp.append(attributes["content"])
        if tag in self.inline and "src" not in attributes:
            self.inline[tag].append("")
            self._inline = tag
        if tag in {"img", "link", "embed", "object", "source"} or (
            tag in {"script", "iframe"} and "src" in attributes
        ):
            self.resources.append(attributes.get("src") or attributes.get("href", ""))
        if tag == "table":
            self._in_packs = attributes.get("id") == "pakker"
        if tag == "tr" and self._in_packs and "data-status" in attributes:
            self.rows.append(attributes)
        if tag == "circle":
            self.dots.append(attributes.get("class", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_packs = False
        if tag == self._inline:
            self._inline = None

    def handle_data(self, data):
        if self._inline:
            self.inline[self._inline][-1] += data


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_index_lists_every_pack_with_its_verdict_and_links_that_resolve(archive, tmp_path):
    site = tmp_path / "nettsted"
    result = build_site(archive, site)
    assert (result.packs, result.banks, result.reports) == (6, 3, 4)  # valid packs only

    index = Page(site / "index.html")
    assert len(index.rows) == 6  # in the HTML itself: the table needs no script
    assert sorted(r["data-status"] for r in index.rows) == ["invalid"] * 2 + ["valid"] * 4
    assert sorted(index.dots) == ["invalid"] * 2 + ["valid"] * 4  # one dot per pack
    for entry in archive.entries():
        assert f"pakke/{entry.sha256[:16]}/index.html" in index.links
    for page in _pages(site):
        for link in Page(page).links:
            target = (page.parent / link).resolve()
            assert target.is_file(), f"{page.relative_to(site)} → {link}"


def test_the_site_needs_nothing_from_outside(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    for page in _pages(site):
        parsed = Page(page)
        assert parsed.resources == [], page  # CSS and script are inline
        assert not [link for link in parsed.links if "://" in link or link.startswith("//")]


def test_text_from_packs_is_escaped_everywhere(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    hostile = BANKS[2]
    assert hostile.name == HOSTILE_NAME
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert '<script>alert("x")' not in text, page
        assert text.count("<script>") == 1  # our own inline script, nothing else
    bank_page = (site / "bank" / f"{hostile.orgnr}.html").read_text(encoding="utf-8")
    assert "Skurk &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co AS" in bank_page


def test_every_page_carries_a_strict_csp_that_allows_only_its_own_inline_blocks(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    for page in _pages(site):
        parsed = Page(page)
        assert len(parsed.csp) == 1, page
        policy = dict([*part.strip().split(" ", 1), ""][:2] for part in parsed.csp[0].split(";"))
        assert policy["default-src"] == "'none'"
        assert policy["img-src"] == "'self' data:"
        assert "unsafe" not in parsed.csp[0] and "*" not in parsed.csp[0]
        # Our own style and script blocks are exactly the ones the policy allows.
        assert [_csp_hash(t) for t in parsed.inline["script"]] == [policy["script-src"]]
        assert _csp_hash(parsed.inline["style"][0]) in policy["style-src"].split()
        text = page.read_text(encoding="utf-8")
        assert text.index("Content-Security-Policy") < text.index("<style>"), page


def test_no_pack_html_is_a_page_of_the_site(archive, packs, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    generated = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert not [p for p in generated if "report" in p]
    entry = archive.index.by_path(f"{BANKS[0].orgnr}/{packs.packs['fjord-1'].name}")
    original = read_zip(packs.packs["fjord-1"].read_bytes())["report.html"]

    # A download: the report zipped, byte for byte, read-only.
    download = site / "pakke" / entry.sha256[:16] / "rapport.zip"
    assert stat.S_IMODE(download.stat().st_mode) == 0o444
    with zipfile.ZipFile(io.BytesIO(download.read_bytes())) as zipped:
        assert zipped.namelist() == ["report.html"]
        assert zipped.read("report.html") == original

    # And shown in a sandboxed frame without scripts, its HTML only as an attribute value.
    details = Page(site / "pakke" / entry.sha256[:16] / "index.html")
    assert "rapport.zip" in details.links
    [frame] = details.frames
    assert frame["sandbox"] == "" and "src" not in frame
    # (Line ends read as the browser reads them: CR LF and CR become LF.)
    shown = original.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    assert frame["srcdoc"] == shown
    text = (site / "pakke" / entry.sha256[:16] / "index.html").read_text(encoding="utf-8")
    for label in ("Signaturen over manifest.json er gyldig", "Gyldig til", "Testarkets SHA-256"):
        assert label in text


def test_the_pack_page_is_rendered_from_the_manifest_and_evidence(archive, packs, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    entry = archive.index.by_path(f"{BANKS[0].orgnr}/{packs.packs['fjord-1'].name}")
    text = (site / "pakke" / entry.sha256[:16] / "index.html").read_text(encoding="utf-8")
    assert entry.run_id and entry.run_id in text
    assert "Testet av</dt><dd>Kari Tester" in text
    for case in entry.cases:
        assert f'<td class="id">{case["id"]}</td>' in text
    uses = archive.index.correlations(entry.id)
    report = verify_pack_bytes(packs.packs["fjord-1"].read_bytes(), packs.policy())
    assert len(uses) == len(report.correlations) > 0
    for use in uses:  # every recorded CorrelationID, with its operation and status
        assert (
            f'{use.correlation_id}</span> <span class="muted">{use.operation} → {use.status}'
            in text
        )
    manual = [c for c in entry.cases if c["manual"]]
    assert manual  # the packs have a confirmed manual row
    for case in entry.cases:
        assert html.escape(case["actual"], quote=True) in text
        if case["manual"] and case["confirmed_by"]:
            assert f"Manuell, bekreftet av {html.escape(case['confirmed_by'])}" in text
    # The policy it was judged under, trust root by fingerprint.
    root = packs.ca.certificate.public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(root).hexdigest()
    assert f"SHA-256 {fingerprint[:16]}…" in text
    assert "Sandkassepakker godtatt</dt><dd>nei" in text


def test_invalid_packs_get_no_link_to_their_html_at_all(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    invalid = archive.entries(status="invalid")
    assert len(invalid) == 2
    for entry in invalid:
        folder = site / "pakke" / entry.sha256[:16]
        assert sorted(p.name for p in folder.iterdir()) == ["index.html"]
        page = Page(folder / "index.html")
        assert page.frames == [] and not [link for link in page.links if "rapport" in link]
        assert "srcdoc" not in (folder / "index.html").read_text(encoding="utf-8")


def test_per_bank_pages_hold_that_bank_only(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    for bank in BANKS:
        page = Page(site / "bank" / f"{bank.orgnr}.html")
        expected = archive.entries(bank=bank.orgnr)
        assert len(page.dots) == len(expected)
        keys = {e.sha256[:16] for e in expected}
        linked = {link.split("/")[2] for link in page.links if link.startswith("../pakke/")}
        assert linked == keys


def test_a_changed_or_missing_pack_is_flagged_and_its_report_not_shown(archive, tmp_path):
    valid = archive.entries(status="valid")
    changed, missing = valid[0], valid[1]
    path = archive.file_of(changed)
    overwrite(path, path.read_bytes() + b"x")
    archive.file_of(missing).unlink()
    site = tmp_path / "nettsted"
    result = build_site(archive, site)
    assert result.reports == 2
    for entry, label in ((changed, "Endret etter arkivering"), (missing, "Mangler i arkivet")):
        folder = site / "pakke" / entry.sha256[:16]
        assert not (folder / "rapport.zip").exists()
        assert "srcdoc" not in (folder / "index.html").read_text(encoding="utf-8")
        assert label in (folder / "index.html").read_text(encoding="utf-8")
    statuses = [r["data-status"] for r in Page(site / "index.html").rows]
    assert statuses.count("invalid") == 4


def test_rebuilding_replaces_the_site_but_never_a_foreign_folder(archive, tmp_path):
    site = tmp_path / "nettsted"
    build_site(archive, site)
    build_site(archive, site)  # read-only reports from the first build are no obstacle
    assert (site / SITE_MARKER).exists() and len(Page(site / "index.html").rows) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    foreign = tmp_path / "dokumenter"
    foreign.mkdir()
    (foreign / "viktig.txt").write_text("ikke slett meg")
    with pytest.raises(ArchiveError, match="ikke et nettsted"):
        build_site(archive, foreign)
    assert (foreign / "viktig.txt").read_text() == "ikke slett meg"


def test_an_empty_archive_gives_an_empty_but_valid_site(tmp_path):
    with Archive.open(tmp_path / "tomt", create=True) as empty:
        build_site(empty, tmp_path / "nettsted")
    text = (tmp_path / "nettsted" / "index.html").read_text(encoding="utf-8")
    assert "Arkivet er tomt." in text


# --- in a real browser -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_renders_in_headless_chromium_and_lists_every_pack(archive, tmp_path):
    chromium = find_chromium()
    site = tmp_path / "nettsted"
    build_site(archive, site)
    index = site / "index.html"

    shot = tmp_path / "arkiv.png"
    headless(
        chromium, tmp_path / "profil", index, f"--screenshot={shot}", "--window-size=1280,1300"
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 1300)
    assert len(data) > 60_000  # a blank page is ~10 KB; this one has tables, chart, colour

    dom = headless(chromium, tmp_path / "profil", index, "--dump-dom")
    for entry in archive.entries():
        assert f"pakke/{entry.sha256[:16]}/index.html" in dom
    assert 'class="filter"' in dom  # the inline script ran and added the filter bar
    assert "6 av 6 pakker vises" in dom
    assert '<script>alert("x")' not in dom
