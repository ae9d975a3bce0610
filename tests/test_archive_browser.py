"""The archive site in a real browser (headless Chromium): a script in a bank's report
never runs on any archive page, and the index fits 1 400 px without horizontal scroll.

A bank signs its own report, so a re-signed pack may carry any HTML. The report here
announces itself if it runs — a console line (Chromium logs those from every frame) and
an attribute on the page that embeds it — and opening it directly proves the marker
works.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import subprocess
from pathlib import Path

import pytest
from archive_support import Bank, cached_pack_set, make_pack
from headless_chromium import FLAGS
from headless_chromium import chromium as find_chromium
from pack_support import read_zip

from conformance.archive.site import build_site
from conformance.archive.store import Archive
from conformance.ids import synthetic_orgnr

MARKER = "KFR-SKRIPT-KJORTE"
HOSTILE_REPORT = f"""<!doctype html><html lang=nb><head><title>Rapport</title>
<style>p {{ color: #0b3a5b; }}</style></head><body><p>Alle tester OK</p>
<script>console.log("{MARKER} inline"); document.title = "{MARKER}";
try {{ parent.document.body.setAttribute("data-kjort", "ja"); }} catch (e) {{}}
try {{ top.document.body.setAttribute("data-kjort", "ja"); }} catch (e) {{}}</script>
<img src="data:," onerror="console.log('{MARKER} onerror')">
<svg><script>console.log("{MARKER} svg")</script></svg>
<iframe srcdoc="<script>console.log('{MARKER} nested')</script>"></iframe>
</body></html>"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """An archive with a re-signed pack whose report carries a script, the standard packs
    (valid, invalid, sandbox, a hostile bank name) and a bank with a long name."""
    work = tmp_path_factory.mktemp("browser")
    packs = cached_pack_set(tmp_path_factory)
    scripted = Bank(synthetic_orgnr(random.Random(9301)), "Skriptbanken ASA", 14)
    long_name = Bank(
        synthetic_orgnr(random.Random(9302)),
        "Sparebanken Sør-Øst-Vest for Nord-Trøndelag og Kysten AS",
        15,
    )
    hostile = make_pack(
        work / "runs",
        packs.ca,
        scripted,
        started_at=dt.datetime(2026, 10, 5, 9, 0, tzinfo=dt.UTC),
        seed=51,
        prepare=lambda folder: (folder / "report.html").write_text(
            HOSTILE_REPORT, encoding="utf-8"
        ),
    )
    other = make_pack(
        work / "runs",
        packs.ca,
        long_name,
        started_at=dt.datetime(2026, 10, 6, 9, 0, tzinfo=dt.UTC),
        seed=52,
    )
    with Archive.open(work / "arkiv", create=True) as archive:
        outcomes = archive.add([hostile, other, *packs.packs.values()], packs.policy())
        assert outcomes[0].entry.is_valid  # signed by the bank: the verifier accepts it
        build_site(archive, work / "nettsted")
    (work / "rapport-direkte.html").write_bytes(read_zip(hostile.read_bytes())["report.html"])
    return work


def _open(page: Path, profile: Path, *extra: str) -> tuple[str, str]:
    """(DOM, Chromium's log with every frame's console lines)."""
    result = subprocess.run(
        [
            find_chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
            *extra,
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout, result.stderr


def test_the_marker_works_when_the_report_is_opened_on_its_own(site):
    dom, log = _open(site / "rapport-direkte.html", site / "profil")
    assert f"{MARKER} inline" in log and f"<title>{MARKER}</title>" in dom


def test_no_script_from_a_report_runs_on_any_archive_page(site):
    pages = sorted((site / "nettsted").rglob("*.html"))
    assert len(pages) > 10
    embedded = 0
    for page in pages:
        dom, log = _open(page, site / "profil")
        assert dom.strip(), page
        assert MARKER not in log, page
        assert not re.search(r"<body[^>]*data-kjort", dom), page
        assert f"<title>{MARKER}" not in dom, page
        if "srcdoc" in page.read_text(encoding="utf-8") and "Skriptbanken" in dom:
            embedded += 1
            # The report did load in its frame, and the sandbox refused its script.
            assert "Blocked script execution in 'about:srcdoc'" in log
        if page.name == "index.html" and page.parent.name == "nettsted":
            assert 'class="filter"' in dom  # our own script, allowed by its hash, ran
    assert embedded == 1


def test_the_index_fits_1400_pixels_without_horizontal_scroll(site):
    index = site / "nettsted" / "index.html"
    # A copy beside it, measuring itself: the site's CSP would (rightly) refuse a script
    # added to the page, so the copy leaves the policy out.
    html = index.read_text(encoding="utf-8")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probe = (
        "<script>addEventListener('load', function () { var d = document.documentElement;"
        " document.body.setAttribute('data-bredde', d.scrollWidth + 'x' + d.clientWidth); });"
        "</script></body>"
    )
    measured = index.with_name("maal-bredde.html")
    measured.write_text(html.replace("</body>", probe), encoding="utf-8")
    try:
        dom, _ = _open(measured, site / "profil", "--window-size=1400,900")
    finally:
        measured.unlink()
    scroll, client = map(int, re.search(r'data-bredde="(\d+)x(\d+)"', dom).groups())
    assert client > 1300  # the viewport really was 1 400 px wide
    assert scroll <= client, f"{scroll} px content in a {client} px window"
    assert "Sparebanken Sør-Øst-Vest" in dom and dom.count('data-status="') >= 9
