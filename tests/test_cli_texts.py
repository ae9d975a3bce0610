"""What people read from the command line: Norwegian usage and errors from every command,
help text on every option, a quiet end when the reader of a pipe leaves, valid example
organisation numbers in the README and the example profile, and the project's tests kept
away from a bank's own ``kfr-conformance.toml``."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sheet_layouts import BUNDLED_SHEET
from stdnum.no import orgnr as stdnum_orgnr

from conformance.cli import NorwegianArgumentParser, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
# Fragments of argparse's English messages and layout; none may reach a reader.
ENGLISH = (
    "usage:", "error:", "options:", "positional arguments", "optional arguments",
    "show this help", "the following arguments", "invalid choice", "choose from",
    "unrecognized arguments", "expected one argument", "ambiguous option", "invalid int",
    "could match", "program's version",
)


def _english_in(text: str) -> list[str]:
    lowered = text.lower()
    return [fragment for fragment in ENGLISH if fragment in lowered]


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], argparse.ArgumentParser]
]:
    """Every parser in the command tree with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


COMMANDS = [path for path, _ in walk(build_parser())]


# --- help on everything ---------------------------------------------------------------------


def test_every_option_argument_and_subcommand_has_help_text() -> None:
    missing = []
    for path, parser in walk(build_parser()):
        where = " ".join(("kfr-conformance", *path))
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{where}: {'/'.join(action.option_strings) or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [
                    f"{where} {name}: underkommando uten hjelp"
                    for name in action.choices
                    if not (helped.get(name) or "").strip()
                ]
    assert missing == []
    assert len(COMMANDS) >= 12  # the walk reached the nested commands (archive add, sandbox serve …)


def test_every_parser_in_the_tree_is_the_norwegian_one() -> None:
    assert all(isinstance(parser, NorwegianArgumentParser) for _, parser in walk(build_parser()))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "kfr-conformance")
def test_help_of_every_command_is_norwegian(path: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith("bruk: kfr-conformance")
    assert "-h, --help" in out and "vis denne hjelpeteksten og avslutt" in out
    assert "\nvalg:\n" in out
    assert _english_in(out) == []
    # Exactly one section of options: a parent parser's options joined ours.
    assert out.count("\nvalg:\n") == 1


# --- errors ---------------------------------------------------------------------------------

USAGE_ERRORS = {
    "missing argument": (["verify"], "kfr-conformance verify: feil: mangler påkrevd: PATH"),
    "missing subcommand": (["archive"], "kfr-conformance archive: feil: mangler påkrevd: KOMMANDO"),
    "invalid choice": (
        ["verify", "x.zip", "--lang", "sv"],
        "kfr-conformance verify: feil: --lang: ugyldig valg 'sv' (velg blant 'nb', 'en')",
    ),
    "unknown command": (["verifiser"], "kfr-conformance: feil: KOMMANDO: ugyldig valg 'verifiser'"),
    "not an integer": (
        ["sandbox", "serve", "--port", "åtti"],
        "kfr-conformance sandbox serve: feil: --port: ugyldig verdi 'åtti' (forventet et heltall)",
    ),
    "value missing": (["verify", "x.zip", "--trust"], "--trust: forventer én verdi"),
    "unknown option": (["verify", "x.zip", "--trusted"], "feil: ukjente argumenter: --trusted"),
    "ambiguous option": (["email", "dir", "--smtp", "h"], "feil: tvetydig valg --smtp: kan bety"),
    "our own type check": (
        ["archive", "list", "--since", "i går"],
        "--since: 'i går' er ikke en dato på formen ÅÅÅÅ-MM-DD",
    ),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=str)
def test_usage_errors_are_norwegian_with_exit_code_2(case: str, capsys) -> None:
    argv, expected = USAGE_ERRORS[case]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("bruk: kfr-conformance")
    assert expected in err
    assert "Se «kfr-conformance" in err and "--help»" in err
    assert _english_in(err) == []
    assert "Traceback" not in err


def test_a_missing_file_is_a_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    code = main(["sheet", str(tmp_path / "finnes-ikke.xlsx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("kfr-conformance: ") and "finnes-ikke.xlsx" in err
    assert "Traceback" not in err


# --- | head ---------------------------------------------------------------------------------


def _command() -> list[str]:
    found = shutil.which("kfr-conformance", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "conformance.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KFR_CONFORMANCE_HOME": str(tmp_path / "home")}


@pytest.fixture(scope="module")
def big_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sheet with its rows repeated under new ids: ``sheet --json`` prints far
    more than a pipe holds (64 KiB), so ``| head -1`` really closes the pipe on the writer."""
    wb = load_workbook(BUNDLED_SHEET)
    ws = wb["Testtilfeller"]
    rows = [
        [cell.value for cell in row]
        for row in ws.iter_rows(min_row=5, max_row=ws.max_row)
        if isinstance(row[0].value, str) and row[0].value.startswith("KFR-")
    ]
    for copy in range(1, 40):
        for values in rows:
            ws.append([f"{values[0]}-{copy}", *values[1:]])
    path = tmp_path_factory.mktemp("big") / "stort-ark.xlsx"
    wb.save(path)
    return path


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["sheet", "{sheet}", "--json"], ["sheet", "{sheet}"]],
    ids=["--help", "sheet --json", "sheet"],
)
def test_piping_into_head_ends_quietly(argv: list[str], big_sheet: Path, tmp_path: Path) -> None:
    args = [a.replace("{sheet}", str(big_sheet)) for a in argv]
    command = " ".join(f"'{a}'" for a in [*_command(), *args])
    done = subprocess.run(
        ["bash", "-c", f"{command} | head -1; echo \"venstre side: ${{PIPESTATUS[0]}}\""],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path), check=False,
    )
    first, *rest = done.stdout.splitlines()
    assert first.strip() and rest[-1] in ("venstre side: 0", "venstre side: 141")
    assert done.stderr == "", done.stderr


def test_a_reader_that_left_before_any_output_costs_no_traceback(
    big_sheet: Path, tmp_path: Path
) -> None:
    """The reading end is closed before the command writes a byte: every write of the
    command meets a broken pipe, deterministically, and it still finishes with its own code."""
    proc = subprocess.Popen(
        [*_command(), "sheet", str(big_sheet), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert err == ""


# --- examples people copy ---------------------------------------------------------------------


def _readme_orgnrs(text: str) -> set[str]:
    """Organisation numbers the README shows as a bank: --bank, [banks.N], reports/N/, orgnr."""
    patterns = (
        r"--bank[= ](\d{9})\b", r"\[banks\.(\d{9})\]", r"reports/(\d{9})/", r"\bbank `(\d{9})`",
    )
    return {number for pattern in patterns for number in re.findall(pattern, text)}


def test_readme_organisation_numbers_are_valid() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    numbers = _readme_orgnrs(text)
    assert numbers, "the README shows no organisation number at all"
    assert {n: stdnum_orgnr.is_valid(n) for n in numbers} == dict.fromkeys(numbers, True)
    # Any other 9-digit number standing alone in the README is checked as well.
    loose = set(re.findall(r"(?<![\w/.:-])(\d{9})(?![\w-])", text))
    assert {n: stdnum_orgnr.is_valid(n) for n in loose} == dict.fromkeys(loose, True)


def test_readme_profile_example_is_valid_toml_with_valid_banks() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        banks = tomllib.loads(block)["banks"]
        assert banks and all(stdnum_orgnr.is_valid(n) for n in banks), banks


def test_example_profile_banks_are_valid() -> None:
    data = tomllib.loads((ROOT / "kfr-conformance.example.toml").read_text(encoding="utf-8"))
    assert data["banks"] and all(stdnum_orgnr.is_valid(n) for n in data["banks"])


def test_the_old_example_number_is_indeed_invalid() -> None:
    # The check above would catch the number the examples used to show.
    assert not stdnum_orgnr.is_valid("987654321")
    assert _readme_orgnrs("[banks.987654321]\npytest --bank=987654321") == {"987654321"}


# --- a bank's own profile never reaches the project's tests ---------------------------------


def _fake_checkout(tmp_path: Path) -> Path:
    """A checkout with the project's test configuration and a broken root profile."""
    repo = tmp_path / "checkout"
    (repo / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shutil.copy(ROOT / "tests" / "conftest.py", repo / "tests" / "conftest.py")
    (repo / "kfr-conformance.toml").write_text(
        "[banks.311000004\nenv = 'test'  # a bank's profile, half edited\n", encoding="utf-8"
    )
    return repo


def _run_from(
    repo: Path, tmp_path: Path, *extra: str, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    clean.pop("CONFORMANCE_TESTS_EMPTY_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--bank=311000004", "--co",
         "--no-pack", f"--reports-dir={tmp_path / 'reports'}", "-q", *extra],
        cwd=repo, capture_output=True, text=True, timeout=180, check=False,
        env={**clean, "KFR_CONFORMANCE_HOME": str(tmp_path / "home"), **env},
    )


def test_this_session_marks_the_runs_it_starts_with_an_empty_profile() -> None:
    marker = os.environ.get("CONFORMANCE_TESTS_EMPTY_PROFILE")
    assert marker and Path(marker).name == "kfr-conformance.toml"
    assert tomllib.loads(Path(marker).read_text(encoding="utf-8")) == {}


@pytest.mark.slow
def test_a_broken_root_profile_does_not_reach_runs_started_by_the_tests(tmp_path: Path) -> None:
    repo = _fake_checkout(tmp_path)
    # As a bank would run it: the root profile is read (and here it is broken).
    as_bank = _run_from(repo, tmp_path)
    assert as_bank.returncode != 0
    assert "kfr-conformance.toml kan ikke leses" in as_bank.stdout + as_bank.stderr
    # Started by the project's tests: the marked run ignores the repository's profile.
    empty = tmp_path / "empty" / "kfr-conformance.toml"
    empty.parent.mkdir()
    empty.write_text("")
    as_test = _run_from(repo, tmp_path, CONFORMANCE_TESTS_EMPTY_PROFILE=str(empty))
    assert as_test.returncode == 0, as_test.stdout[-2000:] + as_test.stderr[-2000:]
    assert "22 tests collected" in as_test.stdout
    # An explicit --profile is the user's choice even in a marked run: it is still read.
    done = _run_from(
        repo, tmp_path, f"--profile={repo / 'kfr-conformance.toml'}",
        CONFORMANCE_TESTS_EMPTY_PROFILE=str(empty),
    )
    assert done.returncode != 0 and "kan ikke leses" in done.stdout + done.stderr


# --- what the commands print after a real run -----------------------------------------------

RAW_CODES = re.compile(r"\b(passed|failed|error|not_run|not_automated|pending)\b")


@pytest.mark.slow
def test_text_output_of_every_command_names_outcomes_in_norwegian(
    pytester: pytest.Pytester, sandbox, tmp_path: Path, capsys
) -> None:
    """A real sandbox run with rows waiting for confirmation, then every command a bank,
    Bits or an auditor runs on it: what they print has Norwegian outcome words only."""
    reports = tmp_path / "reports"
    pytester.runpytest_inprocess(
        "--bank=311000004", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}",
        f"--sandbox-data-dir={sandbox.data_dir}", f"--reports-dir={reports}",
        f"--sheet={BUNDLED_SHEET}", "-p", "no:cacheprovider", "-k", "KFR-02 or KFR-09 or KFR-21",
    )
    run_dir = next((reports / "311000004").iterdir())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sandbox.ca_pem)
    trust = ["--trust", str(ca), "--allow-sandbox"]
    archive = ["--archive", str(tmp_path / "arkiv")]
    capsys.readouterr()
    for argv in (
        ["email", str(run_dir)],
        ["verify", str(run_dir), *trust],
        ["archive", "add", str(run_dir), *archive, *trust],
        ["archive", "list", *archive],
        ["archive", "verify-all", *archive, *trust],
        ["sheet", str(BUNDLED_SHEET)],
    ):
        code = main(argv)
        out = capsys.readouterr()
        printed = out.out + out.err
        assert printed.strip(), argv
        assert RAW_CODES.findall(printed) == [], (argv, printed)
        assert "Traceback" not in printed and code in (0, 1), (argv, printed)
    # The run did leave rows that were not run and rows waiting: the words were there to say.
    verify_out = main(["verify", str(run_dir), *trust]), capsys.readouterr().out
    assert "Ikke kjørt" in verify_out[1] or "Manuell – venter på bekreftelse" in verify_out[1]
