"""JUnit XML and Allure from real runs against the sandbox: rows named by id and title, a
failed row is *failed* (an environment fault stays *broken*), failed rows point at where
their error is explained, and Allure's environment panel names bank, environment, sheet and
tool."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__
from conformance.integrations import (
    _properties_escape,
    allure_categories,
    case_name,
    write_allure_environment,
)
from conformance.models import RunRecord
from conformance.references import FAQ_URL, references_for_text
from conformance.sandbox import Faults, RunningSandbox
from conformance.sheet import read_sheet

ROOT = Path(__file__).resolve().parent.parent
SHEET = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"
BANK = "311000004"
# KFR-07 ends a relationship (the sandbox's switch makes it answer 200, not 204), KFR-19
# sends a batch with a wrong boundary (its refusal is what the row expects), KFR-21 is manual.
ROWS = ("KFR-07", "KFR-19", "KFR-21")


def _run(pytester: pytest.Pytester, sb: RunningSandbox, tmp_path: Path, *args: str) -> Any:
    return pytester.runpytest_inprocess(
        f"--bank={BANK}", f"--kfr-base-url={sb.kfr_base_url}",
        f"--maskinporten-url={sb.maskinporten_issuer}", f"--sandbox-data-dir={sb.data_dir}",
        f"--reports-dir={tmp_path / 'reports'}", f"--sheet={SHEET}", "--no-pack",
        "-p", "no:cacheprovider", "-k", " or ".join(ROWS), *args,
    )


@pytest.fixture
def titles() -> dict[str, str]:
    return {case.case_id: case.title for case in read_sheet(SHEET)[1]}


@pytest.fixture
def failing_run(pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path):
    sandbox.set_faults(Faults(misbehave=frozenset({"end_returns_200"})))
    junit, allure = tmp_path / "junit.xml", tmp_path / "allure"
    _run(pytester, sandbox, tmp_path, f"--junitxml={junit}", f"--alluredir={allure}")
    record = RunRecord.from_json(next((tmp_path / "reports").glob(f"{BANK}/*/run.json")).read_bytes())
    return junit, allure, record


# --- JUnit XML ---------------------------------------------------------------------------


def test_junit_names_rows_by_id_and_title_and_explains_failures(failing_run, titles) -> None:
    junit, _, _ = failing_run
    cases = {tc.get("name"): tc for tc in ET.parse(junit).getroot().iter("testcase")}

    assert set(cases) == {f"{row}: {titles[row]}" for row in ROWS}
    failed = cases[f"KFR-07: {titles['KFR-07']}"]
    assert failed.find("failure") is not None
    references = [
        p.get("value") for p in failed.iter("property") if p.get("name") == "kfr_referanse"
    ]
    assert references  # the expected answer (204) differs: the row says where to read up
    assert cases[f"KFR-19: {titles['KFR-19']}"].find("failure") is None
    assert cases[f"KFR-21: {titles['KFR-21']}"].find("skipped") is not None


def test_junit_without_integrations_would_name_rows_by_id_only(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """What the names were before: shows the test above checks something the hook does."""
    junit = tmp_path / "junit.xml"
    _run(pytester, sandbox, tmp_path, f"--junitxml={junit}", "-p", "no:conformance.integrations")
    names = {tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")}
    assert names == set(ROWS)


# --- Allure ------------------------------------------------------------------------------


def _allure_results(allure: Path) -> dict[str, dict[str, Any]]:
    results = {}
    for path in allure.glob("*-result.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        results[data["name"].split(":")[0]] = data
    return results


def test_allure_names_rows_and_a_failed_row_is_failed_not_broken(failing_run, titles) -> None:
    _, allure, _ = failing_run
    results = _allure_results(allure)

    assert {row: results[row]["name"] for row in ROWS} == {
        row: f"{row}: {titles[row]}" for row in ROWS
    }
    assert results["KFR-07"]["status"] == "failed"
    assert results["KFR-19"]["status"] == "passed"
    assert results["KFR-21"]["status"] == "skipped"


def test_allure_links_a_failed_row_to_where_it_is_explained() -> None:
    # KFR-07's failure (200 instead of 204) has no code of its own; a failed batch with a
    # wrong boundary is the FAQ's own topic, so a row like it gets the FAQ's links.
    refs = references_for_text("Batch med feil definert boundary", "HTTP 403")
    assert [r.url for r in refs if r.url] == [
        f"{FAQ_URL}#boundary-i-batch", f"{FAQ_URL}#eksempel-batch",
    ]


def test_allure_links_come_from_the_references(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # A wrong scope in the token (KFR-01 expects bits:kundeforhold.write): the row fails
    # and its explanation is the FAQ's section on Maskinporten.
    sandbox.set_faults(Faults(misbehave=frozenset({"token_wrong_scope"})))
    allure = tmp_path / "allure"
    pytester.runpytest_inprocess(
        f"--bank={BANK}", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}",
        f"--sandbox-data-dir={sandbox.data_dir}", f"--reports-dir={tmp_path / 'reports'}",
        f"--sheet={SHEET}", "--no-pack", "-p", "no:cacheprovider", "-k", "KFR-01",
        f"--alluredir={allure}",
    )
    result = _allure_results(allure)["KFR-01"]
    assert result["status"] == "failed"
    assert {link["url"] for link in result["links"]} >= {f"{FAQ_URL}#maskinporten"}
    assert all(link["name"] for link in result["links"])


def test_an_environment_fault_stays_broken(
    pytester: pytest.Pytester, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sandbox.set_faults(Faults(error_rate_500=1.0, seed=3))
    allure = tmp_path / "allure"
    pytester.runpytest_inprocess(
        f"--bank={BANK}", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}",
        f"--sandbox-data-dir={sandbox.data_dir}", f"--reports-dir={tmp_path / 'reports'}",
        f"--sheet={SHEET}", "--no-pack", "-p", "no:cacheprovider", "-k", "KFR-07",
        f"--alluredir={allure}",
    )
    record = RunRecord.from_json(next((tmp_path / "reports").glob(f"{BANK}/*/run.json")).read_bytes())
    assert [str(c.outcome) for c in record.cases if c.case_id == "KFR-07"] == ["error"]
    assert _allure_results(allure)["KFR-07"]["status"] == "broken"


_JAVA_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_JAVA_CONTROL = {"n": "\n", "r": "\r", "t": "\t", "f": "\f"}


def _java_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return _JAVA_CONTROL.get(code, code)

    return _JAVA_ESCAPE.sub(one, text)


def _read_properties(path: Path) -> dict[str, str]:
    """Java .properties as Allure reads them: ISO-8859-1, backslash escapes, key ends at
    the first unescaped '='."""
    values = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        key, value = re.split(r"(?<!\\)=", line, maxsplit=1)
        values[_java_unescape(key)] = _java_unescape(value)
    return values


def test_allure_environment_panel_names_bank_environment_sheet_and_tool(failing_run) -> None:
    _, allure, record = failing_run
    values = _read_properties(allure / "environment.properties")

    assert values["Bank"] == f"{record.bank['name']} ({BANK})"
    assert values["Miljø"].startswith("sandbox (SANDBOX")
    assert values["Testark SHA-256"] == record.sheet["sha256"]
    assert values["Testark"] == SHEET.name and values["Arkversjon"] == record.sheet["version"]
    assert values["Verktøy"] == f"kfr-conformance {__version__}"
    assert values["Kjørings-ID"] == record.run_id
    assert values["KFR base-URL"] == record.environment["kfr_base_url"]
    categories = json.loads((allure / "categories.json").read_text(encoding="utf-8"))
    assert categories == allure_categories()
    assert {c["matchedStatuses"][0] for c in categories} == {"failed", "broken"}


def test_properties_are_escaped_so_any_reader_gets_the_text_back(tmp_path: Path) -> None:
    values = {"Bank": "Sparebanken Øst: «Test» = ja\\nei", "Miljø nå": "linje 1\nlinje 2"}
    path = write_allure_environment(tmp_path / "allure", values)
    assert path.read_bytes().isascii()
    assert _read_properties(path) == values
    assert _properties_escape("a b", key=True) == "a\\ b"


def test_case_name_is_one_line() -> None:
    assert case_name("KFR-01:  Token fra\nMaskinporten ") == "KFR-01: Token fra Maskinporten"
