"""report.html: contents, escaping, redaction, Norwegian only, references for failed rows,
self-containment, and a real browser render and print (compact: passed rows collapsed)."""

from __future__ import annotations

import html
import json
import os
import re
import struct
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import jwt
import pytest
from headless_chromium import chromium as find_chromium
from headless_chromium import headless
from pypdf import PdfReader
from report_support import make_run, write_evidence  # tests/ is on sys.path (rootdir-less)

import conformance
from conformance.models import CaseResult, Expectation, Outcome, RunRecord
from conformance.references import FAQ_URL
from conformance.report import OUTCOME_SLUGS, REPORT_FILE, render_report, write_report

TEMPLATES = Path(conformance.__file__).parent / "templates"


class _Rows(HTMLParser):
    """Collects the text of each table row that carries a ``data-<key>`` attribute, cell by
    cell, so tests read the page the way a person reads the table."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = f"data-{key}"
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._row = dict(attrs).get(self.key)
            if self._row is not None:
                self.rows[self._row] = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self.rows[self._row].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(page: str, key: str) -> dict[str, list[str]]:
    parser = _Rows(key)
    parser.feed(page)
    return parser.rows


@pytest.fixture
def run(tmp_path: Path) -> tuple[RunRecord, Path]:
    results = tmp_path / "results"
    return make_run(results), results


def _case(record: RunRecord, case_id: str) -> CaseResult:
    return next(c for c in record.cases if c.case_id == case_id)


def _with_exchange(record: RunRecord, results: Path, case_id: str, **response: object) -> None:
    """Give ``case_id`` one exchange whose response has the given fields."""
    exchange = {
        "case_id": case_id,
        "seq": 1,
        "operation": "lookup",
        "correlation_id": None,
        "started_at": "2026-11-23T09:00:00.000000Z",
        "elapsed_ms": 4.0,
        "request": {
            "method": "GET",
            "url": "http://127.0.0.1:5000/kar-ws/api/v1/x",
            "headers": response.pop("request_headers", {}),
            "body": response.pop("request_body", None),
        },
        "response": {"status": 200, "headers": {}, "body": None, **response},
        "error": None,
    }
    _case(record, case_id).evidence_file = write_evidence(results, case_id, [exchange])


# --- contents ---------------------------------------------------------------------------


def test_every_case_is_listed_with_its_norwegian_status(run):
    record, results = run
    page = render_report(record, results)
    table = rows(page, "case")

    assert list(table) == [c.case_id for c in record.cases]  # all of them, in sheet order
    assert {c.outcome for c in record.cases} == set(Outcome)  # the fixture covers every outcome
    for case in record.cases:
        case_id, title, expected, _actual, status = table[case.case_id]
        assert case_id == case.case_id
        assert title == case.title
        assert expected == case.expected.describe()
        assert status.endswith(case.outcome.label_nb)


def test_summary_counts_and_chart_match_the_record(run):
    record, results = run
    page = render_report(record, results)
    counts = record.counts()
    summary = rows(page, "outcome")

    for outcome in Outcome:
        label, number, _share = summary[OUTCOME_SLUGS[outcome]]
        assert label.endswith(outcome.label_nb)
        assert int(number) == counts[str(outcome)]
    assert int(summary["total"][1]) == counts["total"] == len(record.cases)
    # The chart carries the same numbers as text, readable without colour.
    for outcome in Outcome:
        slug = OUTCOME_SLUGS[outcome]
        group = re.search(rf'<g data-outcome="{slug}">(.*?)</g>', page, re.S).group(1)
        assert f">{counts[str(outcome)]} (" in group
        assert html.escape(outcome.label_nb) in group
    assert f"{counts['passed']} av {counts['total']} testtilfeller er bestått" in page


def test_header_names_bank_environment_sheet_run_and_tester(run):
    record, results = run
    page = html.unescape(render_report(record, results))

    for text in (
        record.bank["name"],
        record.bank["orgnr"],
        record.environment["kfr_base_url"],
        record.environment["maskinporten_issuer"],
        record.sheet["file_name"],
        record.sheet["version"],
        record.sheet["sha256"],
        record.run_id,
        record.attestation["tester"],
        record.attestation["role"],
        f"kfr-conformance {record.runner['version']}",
    ):
        assert text in page
    # Start at 09:00 UTC in November is 10:00 in Oslo (CET, UTC+1).
    assert "2026-11-23 09:00:00 UTC" in page
    assert "2026-11-23 10:00:00 CET" in page
    assert '<html lang="nb">' in page


@pytest.mark.parametrize(
    ("environment", "banner"), [("sandbox", True), ("staging", True), ("test", False)]
)
def test_sandbox_banner_unless_the_environment_is_test(tmp_path, environment, banner):
    record = make_run(tmp_path, environment=environment)
    page = render_report(record, tmp_path)

    assert ("SANDBOX – ikke gyldig som onboardingbevis" in page) is banner
    assert ("SANDBOX" in page) is banner  # not in the title or facts of a real test run either
    assert page.count("<title>SANDBOX") == (1 if banner else 0)


def test_evidence_shows_each_exchange_with_pretty_json(run):
    record, results = run
    page = html.unescape(render_report(record, results))
    lookup = _case(record, "KFR-04")
    section = page[page.index('<details id="sak-4-KFR-04"') : page.index('<details id="sak-5-')]

    assert "POST http://127.0.0.1:5000/maskinporten/token" in section
    assert (
        f"GET http://127.0.0.1:5000/kar-ws/api/v1/customers/financialInstitutions/{record.bank['orgnr']}/"
        in section
    )
    assert "200 OK" in section and "201 Created" in section
    for cid in lookup.correlation_ids:
        assert cid in section
    assert '{\n  "banks": [\n    {\n      "organizationID": ' in section  # pretty-printed
    assert "Eget organisasjonsnummer finnes i svaret" in section  # the extra check
    assert "ms" in section and "Token fra Maskinporten" in section


def test_failed_and_error_cases_open_with_message_and_failed_check(run):
    record, results = run
    page = render_report(record, results)

    for case in record.cases:
        opened = f'data-case="{case.case_id}" open>' in page
        assert opened is (case.outcome in (Outcome.FAILED, Outcome.ERROR))
    assert html.escape("Forventet HTTP 404 med KFR-008, men fikk HTTP 204.") in page
    assert "✗ Ikke OK</span> Banken finnes for perioden før avslutning" in page
    assert "ReadTimeout: svar uteble etter 10 s" in page and "Ingen respons ble mottatt." in page


def test_manual_rows_show_who_confirmed_them_and_when(run):
    record, results = run
    page = " ".join(html.unescape(re.sub(r"<[^>]+>", "", render_report(record, results))).split())

    assert "Ja, bekreftet av Kari Testesen 2026-11-24 08:30:00 UTC" in page
    assert "(2026-11-24 09:30:00 CET, norsk tid)" in page
    assert "Ja, ikke bekreftet" in page  # the pending manual row
    assert "Verifisert i rutinebeskrivelse v3." in page


def test_big_body_is_shown_as_size_hash_and_head(run):
    record, results = run
    page = html.unescape(render_report(record, results))
    batch = json.loads((results / _case(record, "KFR-07").evidence_file).read_text())
    summary = batch["exchanges"][1]["request"]["body"]

    assert f"{summary['size']:,}".replace(",", "\u202f") + " byte" in page
    assert summary["sha256"] in page
    assert summary["head"].splitlines()[0] in page
    assert summary["size"] > 64 * 1024


# --- untrusted text and secrets ---------------------------------------------------------


def test_untrusted_text_is_escaped(run):
    record, results = run
    hostile = '<script>alert("kfr")</script><img src=x onerror=alert(1)>'
    _with_exchange(record, results, "KFR-02", body=hostile, headers={"X-Trace": "<b>fet</b>"})
    _case(record, "KFR-03").title = "Tittel med <i>kursiv</i>"
    _case(record, "KFR-03").message = "</details><h1>falsk</h1>"
    page = render_report(record, results)

    assert "<script>alert" not in page and "<img" not in page and "<i>kursiv" not in page
    assert "&lt;script&gt;alert(&#34;kfr&#34;)&lt;/script&gt;" in page
    assert "&lt;b&gt;fet&lt;/b&gt;" in page
    assert "&lt;/details&gt;&lt;h1&gt;falsk" in page
    assert page.count("<script") == 1  # only the page's own progressive-enhancement script


@pytest.mark.parametrize("recorder", ["present", "absent"])
def test_secrets_in_evidence_do_not_reach_the_page(run, monkeypatch, recorder):
    record, results = run
    if recorder == "absent":  # conformance.evidence not importable: the local pass alone
        monkeypatch.setitem(sys.modules, "conformance.evidence", None)
        monkeypatch.delattr(conformance, "evidence", raising=False)
    token = jwt.encode({"scope": "bits:kundeforhold.write", "iss": "x"}, "k" * 32)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    _with_exchange(
        record,
        results,
        "KFR-02",
        request_headers={"Authorization": f"Bearer {token}", "X-Echo": f"Bearer {token}"},
        request_body=f"grant_type=x&assertion={token}",
        body=f'{{"access_token": "{token}", "debug": "{token}", "key": {pem!r}}}'.replace(
            "'", '"'
        ).replace("\n", "\\n"),
    )
    _case(record, "KFR-02").message = f"token var {token}"
    page = render_report(record, results)

    assert token not in page and token.split(".")[1] not in page
    assert "Bearer ey" not in page and "assertion=ey" not in page
    assert "-----BEGIN" not in page and "MIIEvQIBADANBg" not in page
    assert "[REDACTED]" in page


def test_the_recorders_redact_text_is_used_when_present(run, monkeypatch):
    record, results = run
    _with_exchange(record, results, "KFR-02", body="kundens passord er hemmelig123")
    fake = types.ModuleType("conformance.evidence")
    fake.redact_text = lambda text: text.replace("hemmelig123", "[REDACTED]")
    monkeypatch.setitem(sys.modules, "conformance.evidence", fake)
    monkeypatch.setattr(conformance, "evidence", fake, raising=False)

    assert "hemmelig123" not in render_report(record, results)


def test_a_failing_recorder_redaction_still_gets_the_local_pass(run, monkeypatch):
    record, results = run
    token = jwt.encode({"sub": "x"}, "k" * 32)
    _with_exchange(record, results, "KFR-02", body=f"token={token}")

    def broken(text: str) -> str:
        raise RuntimeError("half-written module")

    fake = types.ModuleType("conformance.evidence")
    fake.redact_text = broken
    monkeypatch.setitem(sys.modules, "conformance.evidence", fake)
    monkeypatch.setattr(conformance, "evidence", fake, raising=False)

    assert token not in render_report(record, results)


def test_free_text_of_people_and_the_environment_is_redacted(run):
    record, results = run
    token = jwt.encode({"scope": "bits:kundeforhold.write"}, "k" * 32)
    record.attestation["tester"] = f"Kari {token}"
    record.attestation["role"] = f"Bearer {token}"
    record.bank["name"] = f"Bank {token}"
    confirmed = next(c for c in record.cases if c.confirmed_by)
    confirmed.confirmed_by = f"Ola {token}"
    confirmed.comment = f"assertion={token}"
    failed = next(c for c in record.cases if c.outcome is Outcome.FAILED)
    failed.actual = f'{{"error_description": "invalid token {token}"}}'
    failed.title = f"Tittel {token}"
    failed.checks = [{"description": f"sjekk {token}", "ok": False, "detail": token}]
    page = render_report(record, results)

    assert token not in page and token.split(".")[1] not in page
    assert page.count("[REDACTED]") >= 8
    assert "Kari [REDACTED]" in page and "Ola [REDACTED]" in page


# --- Norwegian only ---------------------------------------------------------------------

RAW_CODES = re.compile(r"\b(passed|failed|error|not_run|not_automated|pending)\b")


class _Text(HTMLParser):
    """The text a reader sees of our own making: without the page's style and script and
    without recorded bodies (``<pre>``: the environment's words, shown as they were)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script", "pre")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script", "pre")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def test_no_outcome_code_reaches_the_reader(run):
    record, results = run
    page = render_report(record, results)
    parser = _Text()
    parser.feed(page)
    visible = " ".join(parser.parts)
    for case in record.cases:  # the sheet's own words may be English ("with error code")
        visible = visible.replace(html.escape(case.expected.text, quote=False), "")
        visible = visible.replace(case.expected.text, "")

    assert {c.outcome for c in record.cases} == set(Outcome)
    assert RAW_CODES.findall(visible) == []
    # Not even in class names or data attributes, which are copied and read aloud.
    attributes = " ".join(re.findall(r'(?:class|data-outcome)="([^"]*)"', page))
    assert RAW_CODES.findall(attributes) == []
    for outcome in Outcome:
        assert outcome.label_nb in html.unescape(visible)


# --- where a failure is explained --------------------------------------------------------


def _details_of(page: str, case_id: str) -> str:
    """The HTML of one case's details section (up to the next case's or the page's end)."""
    start = re.search(rf'<details id="sak-[^"]*" class="case [^"]*" data-case="{case_id}"', page)
    assert start, case_id
    after = page.find('<details id="sak-', start.end())
    return page[start.start() : after if after != -1 else page.index("</main>")]


def test_failed_rows_link_to_where_their_error_is_explained(run):
    record, results = run
    failed = next(
        c for c in record.cases if c.outcome is Outcome.FAILED and not c.expected.error_code
    )
    failed.title = "Batch med feil definert boundary"
    failed.binding = "batch_bad_boundary"
    failed.expected = Expectation("HTTP 403 Forbidden", status=403)
    failed.actual_status, failed.actual_error_code = 400, "KFR-004"
    page = render_report(record, results)
    section = _details_of(page, failed.case_id)

    assert f'<a href="{FAQ_URL}#boundary-i-batch" rel="noreferrer">' in section
    assert f'<a href="{FAQ_URL}#eksempel-batch" rel="noreferrer">' in section
    assert "KFR-004: ugyldig forespørsel" in section
    assert "KFR API 1.1.2" in section and "«Boundary i batch»" in section
    # The row that failed on KFR-008 is explained under KFR-008, although KFR never sent it.
    missing = next(c for c in record.cases if c.expected.error_code == "KFR-008")
    assert "KFR-008: kundeforholdet finnes ikke" in _details_of(page, missing.case_id)
    # Passed rows need no explanation.
    for case in record.cases:
        if case.outcome is Outcome.PASSED:
            assert "Se også" not in _details_of(page, case.case_id), case.case_id


# --- robustness -------------------------------------------------------------------------


def test_bad_evidence_files_are_noted_not_fatal(run):
    record, results = run
    outside = results.parent / "outside.json"
    outside.write_text('{"exchanges": [{"request": {"url": "UTENFOR-MARKER"}}]}')
    _case(record, "KFR-01").evidence_file = "../outside.json"
    (results / "evidence" / "KFR-02.json").write_text("{ not json")
    _case(record, "KFR-03").evidence_file = "evidence/finnes-ikke.json"
    write_evidence(results, "KFR-04", ["ikke et objekt", {"seq": 1, "request": {}}])
    page = html.unescape(render_report(record, results))

    assert "UTENFOR-MARKER" not in page
    assert "«../outside.json» ligger utenfor resultatmappen" in page
    assert "«evidence/KFR-02.json» kan ikke leses" in page
    assert "«evidence/finnes-ikke.json» mangler" in page
    assert "1 utveksling(er) i feil format er utelatt" in page


def test_a_sparse_run_record_renders(tmp_path):
    record = RunRecord(
        run_id="r1",
        bank={},
        environment={},
        sheet={},
        runner={},
        attestation={},
        started_at="",
        finished_at="not a time",
    )
    page = render_report(record, tmp_path)

    assert "Kjøringen har ingen testtilfeller." in page
    assert "SANDBOX – ikke gyldig som onboardingbevis" in page  # unknown env is not `test`
    assert "not a time" in page


def test_links_point_at_unique_case_sections(tmp_path):
    cases = [
        CaseResult(
            case_id=cid, title="t", expected=Expectation("x", status=200), outcome=Outcome.PASSED
        )
        for cid in ("A/1", "A_1", "A 1", "Ø-2")
    ]
    record = make_run(tmp_path)
    record.cases = cases
    page = render_report(record, tmp_path)

    ids = re.findall(r'<details id="([^"]+)"', page)
    links = re.findall(r'<a href="#([^"]+)"', page)
    assert len(ids) == len(set(ids)) == 4
    assert links == ids


def test_page_is_self_contained_and_accessible(run):
    record, results = run
    page = render_report(record, results)

    assert not re.search(r"<link\b|\bsrc=|@import|url\(", page)
    # In-page links, and the published pages that explain a failure (links, not assets).
    outside = re.findall(r'href="(?!#)([^"]*)"', page)
    assert all(
        url.startswith(("https://dokumentasjon.dsop.no/", "https://docs.digdir.no/"))
        for url in outside
    )
    assert '<th scope="col">ID</th>' in page and "<caption>" in page
    assert 'role="img"' in page and '<title id="chart-title">' in page
    assert "@media print" in page and "::details-content" in page


def test_templates_never_mark_text_safe():
    for template in TEMPLATES.glob("*report*"):
        source = template.read_text()
        assert "|safe" not in source.replace(" ", "")
        assert not re.search(r"\{%-?\s*autoescape", source) and "Markup" not in source


def test_write_report_writes_atomically_to_the_default_or_given_path(run, tmp_path):
    record, results = run
    (results / REPORT_FILE).write_text("old")

    written = write_report(record, results)
    assert written == results / REPORT_FILE
    assert written.read_text(encoding="utf-8") == render_report(record, results)

    other = write_report(record, results, tmp_path / "ut" / "rapport.html")
    assert other.read_bytes() == written.read_bytes()
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]


# --- a real browser ---------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run, tmp_path):
    chromium = find_chromium()
    record, results = run
    report = write_report(record, results)
    shot = tmp_path / "shot.png"

    headless(
        chromium, tmp_path / "profile", report, f"--screenshot={shot}", "--window-size=1280,2000"
    )

    assert shot.exists(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 2000)
    assert len(data) > 40_000  # a blank page compresses to ~12 KB; this one has text and colour


def _visible_pdf_text(pdf: Path) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in PdfReader(pdf).pages).split())


def _print(chromium: str, profile: Path, page: Path) -> Path:
    pdf = page.with_suffix(".pdf")
    headless(chromium, profile, page, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert pdf.exists(), "chromium printed nothing"
    return pdf


# Forces every case open in print, as the report printed before passed rows collapsed.
_EVERYTHING_OPEN = (
    "<style>@media print { details.case > .case-body { display: block !important; }"
    " details::details-content { content-visibility: visible; display: block; } }</style>"
)


@pytest.mark.slow
def test_printing_collapses_passed_rows_and_shows_the_rest(run, tmp_path):
    chromium = find_chromium()
    record, results = run
    report = write_report(record, results)
    expanded = tmp_path / "alt-apent.html"
    expanded.write_text(
        report.read_text().replace("<details ", "<details open ").replace(
            "</head>", _EVERYTHING_OPEN + "</head>"
        )
    )

    compact_pdf = _print(chromium, tmp_path / "profile", report)
    expanded_pdf = _print(chromium, tmp_path / "profile", expanded)
    printed = _visible_pdf_text(compact_pdf)

    pages = len(PdfReader(compact_pdf).pages)
    assert pages * 2 <= len(PdfReader(expanded_pdf).pages)
    assert PdfReader(compact_pdf).pages[0].mediabox.height == pytest.approx(842, abs=2)  # A4
    for case in record.cases:
        assert case.case_id in printed and case.title.split()[0] in printed
        details = [cid[:8] for cid in case.correlation_ids]  # only in the case's details
        if case.outcome is Outcome.PASSED:
            assert not [d for d in details if d in printed], case.case_id
        else:
            assert all(d in printed for d in details), case.case_id
            if case.message:
                assert " ".join(case.message.split())[:30] in printed, case.case_id


@pytest.mark.slow
def test_the_bundled_sheet_prints_in_a_few_pages(tmp_path):
    """A real run of the bundled sheet (every row passed or waiting for confirmation):
    42 A4 pages when every case printed its evidence, now a handful."""
    chromium = find_chromium()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--bank=311000004",
         f"--reports-dir={tmp_path / 'reports'}", "--no-pack", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**env, "KFR_CONFORMANCE_HOME": str(tmp_path / "home")},
    )
    reports = list((tmp_path / "reports").glob("311000004/*/report.html"))
    assert len(reports) == 1, done.stdout[-3000:] + done.stderr[-2000:]

    pdf = _print(chromium, tmp_path / "profile", reports[0])
    assert len(PdfReader(pdf).pages) <= 8
