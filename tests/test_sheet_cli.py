"""``kfr-conformance sheet PATH``: what was read, as a table or JSON; errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sheet_layouts import BUNDLED_SHEET, LAYOUTS, ROOT, build_layout

from conformance.cli import main

STEPS_PY = """
from conformance.steps import Actual, StepRegistry

REGISTRY = StepRegistry()


@REGISTRY.step("token", operation="token", status=200, case_ids=["KFR-01"])
def token(ctx):
    return Actual(status=200)


@REGISTRY.step("end_missing", operation="end", status=404, error_code="KFR-008")
def end_missing(ctx):
    return Actual(status=404)


REGISTRY.manual_step("manual_a8", keywords=[("kjernesystem",)])
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    directory = tmp_path / "suite"
    directory.mkdir()
    (directory / "KFR-Integrasjonstester.xlsx").write_bytes(BUNDLED_SHEET.read_bytes())
    (directory / "steps.py").write_text(STEPS_PY, encoding="utf-8")
    return directory


def test_table_shows_each_case_with_expectation_binding_and_manual(suite: Path, capsys) -> None:
    assert main(["sheet", str(BUNDLED_SHEET), "--suite", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "Versjon:   1.0" in out
    assert (
        f"SHA-256:   {__import__('hashlib').sha256(BUNDLED_SHEET.read_bytes()).hexdigest()}" in out
    )
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("KFR-")}
    assert len(lines) == 22
    assert "token (id)" in lines["KFR-01"] and "200" in lines["KFR-01"]
    assert "end_missing (text)" in lines["KFR-09"] and "KFR-008" in lines["KFR-09"]
    assert "ikke automatisert" in lines["KFR-02"]
    assert lines["KFR-22"].rstrip().endswith("ja") and "manual_a8 (text)" in lines["KFR-22"]
    assert lines["KFR-21"].rstrip().endswith("ja") and "ikke automatisert" in lines["KFR-21"]
    assert "22 testtilfeller: 2 automatisert, 2 manuelle, 18 ikke automatisert." in out


def test_json_output_and_bindings_file(suite: Path, tmp_path: Path, capsys) -> None:
    bindings = tmp_path / "b.toml"
    bindings.write_text('[bindings]\n"KFR-01" = "-"\n"KFR-02" = "token"\n', encoding="utf-8")
    code = main(
        ["sheet", str(BUNDLED_SHEET), "--json", "--suite", str(suite), "--bindings", str(bindings)]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sheet"]["version"] == "1.0" and data["sheet"]["header_row"] == 4
    cases = {c["case_id"]: c for c in data["cases"]}
    assert (cases["KFR-01"]["binding"], cases["KFR-01"]["binding_source"]) == (None, "file")
    assert (cases["KFR-02"]["binding"], cases["KFR-02"]["binding_source"]) == ("token", "file")
    assert (cases["KFR-09"]["expected_status"], cases["KFR-09"]["expected_error_code"]) == (
        404,
        "KFR-008",
    )
    assert cases["KFR-21"]["manual"] is True


def test_other_layout_with_unknown_row(suite: Path, tmp_path: Path, capsys) -> None:
    path = build_layout(tmp_path / "annet.xlsx", LAYOUTS["unknown_row"])
    assert main(["sheet", str(path), "--json", "--suite", str(suite)]) == 0
    data = json.loads(capsys.readouterr().out)
    unknown = [c for c in data["cases"] if c["title"] == "Endre kundens kontaktinformasjon"]
    assert [(c["binding"], c["expected_status"]) for c in unknown] == [(None, 200)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sheet", "finnes-ikke.xlsx"], "Finner ikke arket"),
        (["sheet", str(BUNDLED_SHEET), "--bindings", "nei.toml"], "Finner ikke bindingsfilen"),
    ],
)
def test_errors_are_one_plain_line_and_exit_2(
    suite: Path, capsys, args: list[str], needle: str
) -> None:
    assert main([*args, "--suite", str(suite)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_default_suite_is_the_projects_testcases(tmp_path: Path) -> None:
    if not (ROOT / "testcases" / "steps.py").exists():
        pytest.skip("testcases/steps.py is not there yet")
    # A real process from another folder: the default suite falls back to this checkout's.
    completed = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "sheet", str(BUNDLED_SHEET)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "22 testtilfeller: 20 automatisert, 2 manuelle, 0 ikke automatisert." in completed.stdout


# --------------------------------------------------------------------------- --suggest


def _suggest_sheet(path: Path) -> Path:
    """Rows the KFR suite cannot bind on its own: a close call, an unknown operation, an
    id with quotes and a line break, and one that binds (so it is not in the file)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Test case", "Scenario", "Steps", "Expected outcome"])
    ws.append(
        [
            "TC-06",
            "Bank checks its own registration",
            "When the bank queries the register for the customer",
            "The response lists our organisation number",
        ]
    )
    ws.append(["TC-23", "Change the customer's address", "PATCH the address", "Address updated"])
    ws.append(['TC "7"\nb', "Registrer kundeforhold", "POST kundeforhold", "HTTP 201 Created"])
    ws.append(["TC-09", "Avslutt kundeforhold som ikke finnes", "DELETE", "404 med KFR-008"])
    wb.save(path)
    return path


def test_suggest_writes_a_bindings_file_with_ranked_candidates(tmp_path: Path, capsys) -> None:
    import tomllib

    from conformance.binding import bind_cases, load_bindings_file
    from conformance.sheet import read_sheet
    from conformance.suite import default_suite_dir, load_suite

    sheet = _suggest_sheet(tmp_path / "ark.xlsx")
    out = tmp_path / "forslag.toml"
    assert main(["sheet", str(sheet), "--suggest", "--out", str(out)]) == 0
    assert f"Skrev forslag for 3 rader til {out}." in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    # Ranked candidates as comments, with points and reasons.
    assert "#   1. lookup_own_bank" in text and "poeng: operasjon oppslag (tittel)" in text
    assert "#   2. add_" in text
    # The close call is pre-filled and active (its lead rests on the title's operation);
    # the unknown operation is offered as "not automated", commented out; the ambiguous
    # add is pre-filled but commented out.
    assert '\n"TC-06" = "lookup_own_bank"  # sikkert forslag' in text
    assert '\n# "TC-23" = "-"' in text
    assert '\n# "TC \\"7\\" b" = "add_' in text  # the reader folds the line break
    assert "TC-09" not in text  # bound by text already: nothing to confirm
    # The file is what --bindings reads; the active line binds the row.
    assert tomllib.loads(text)["bindings"] == {"TC-06": "lookup_own_bank"}
    registry = load_suite(default_suite_dir()).registry
    _, cases = read_sheet(sheet)
    bound = {c.case_id: c for c in bind_cases(cases, registry, load_bindings_file(out))}
    assert (bound["TC-06"].binding, bound["TC-06"].binding_source) == ("lookup_own_bank", "file")
    # Confirming the commented line for the odd id works as written.
    confirmed = text.replace('# "TC \\"7\\" b" = "add_', '"TC \\"7\\" b" = "add_')
    out.write_text(confirmed, encoding="utf-8")
    bound = {c.case_id: c for c in bind_cases(cases, registry, load_bindings_file(out))}
    assert bound['TC "7" b'].binding_source == "file"


def test_suggest_never_overwrites_a_file_and_out_needs_suggest(tmp_path: Path, capsys) -> None:
    sheet = _suggest_sheet(tmp_path / "ark.xlsx")
    out = tmp_path / "forslag.toml"
    out.write_text("# bankens bekreftelser\n", encoding="utf-8")
    assert main(["sheet", str(sheet), "--suggest", "--out", str(out)]) == 2
    assert "finnes allerede" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "# bankens bekreftelser\n"
    assert main(["sheet", str(sheet), "--out", str(tmp_path / "x.toml")]) == 2
    assert "--out brukes bare sammen med --suggest" in capsys.readouterr().err


def test_suggest_to_stdout_lists_every_unbound_row(tmp_path: Path, capsys) -> None:
    sheet = _suggest_sheet(tmp_path / "ark.xlsx")
    assert main(["sheet", str(sheet), "--suggest"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Bindingsforslag for «ark.xlsx»")
    assert [line.split(",")[0] for line in text.splitlines() if line.startswith("# Rad ")] == [
        "# Rad 2",
        "# Rad 3",
        "# Rad 4",
    ]


def test_suggestions_stay_valid_toml_whatever_the_ids_and_titles_hold() -> None:
    import tomllib

    from conformance.binding_suggest import suggest, suggestions_toml
    from conformance.models import CaseSpec
    from conformance.sheet import parse_expectation
    from conformance.suite import default_suite_dir, load_suite

    registry = load_suite(default_suite_dir()).registry
    odd = 'a"b\\c\td\x7fe'
    case = CaseSpec(
        case_id=odd,
        title='Oppslag på egen bank\n[bindings]\n"x" = "token"',
        expected=parse_expectation("Vår bank står i svaret\x07"),
        description="Slå opp kunden og se at egen bank er i listen",
    )
    text = suggestions_toml(
        suggest([case], registry),
        registry,
        sheet_name="a\nb.xlsx",
        sheet_sha256="0",
        suite_name="s",
    )
    data = tomllib.loads(text)
    # The title cannot inject a binding; the id round-trips exactly when confirmed.
    assert data["bindings"] in ({}, {odd: "lookup_own_bank"})
    confirmed = tomllib.loads(text.replace('\n# "a', '\n"a'))["bindings"]
    assert list(confirmed) == [odd]
