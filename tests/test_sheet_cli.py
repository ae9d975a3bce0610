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
