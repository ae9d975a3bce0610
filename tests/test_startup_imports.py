"""Start-up stays cheap: building the command line imports no command's implementation.

Every ``kfr-conformance`` command builds the whole parser tree, so a command group that
imports its implementation at module level makes every command pay for it (``--help`` once
loaded the sandbox's server, openpyxl and the archive). These tests run the real entry
point in a fresh interpreter and look at ``sys.modules`` afterwards: behaviour, not time.
The values the parser needs from the engine (choices, defaults) are deferred; the second
half checks they are still exactly the engine's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pack_support import build_signed_pack, make_results_dir, shared_pki

from conformance.cli import DeferredChoices, DeferredDefault, build_parser, main
from conformance.pack.build import load_run_record
from conformance.pack.manifest import pack_file_name

# Never needed to build the parser: each is a command's implementation or what it stands on.
HEAVY_FOR_ANY_COMMAND = (
    "uvicorn",
    "starlette",
    "openpyxl",
    "jinja2",
    "httpx",
    "cryptography",
    "conformance.sandbox",
    "conformance.archive",
    "conformance.firstload",
    "conformance.preflight",
    "conformance.sheet",
    "conformance.pack.verify",
)
# What verifying a pack never needs. (It does read the pack's sheet with openpyxl and load
# the suite's steps to re-judge every row: that is verifying, and happens after start-up.)
NOT_FOR_VERIFY = (
    "uvicorn",
    "starlette",
    "jinja2",
    "conformance.sandbox",
    "conformance.archive",
    "conformance.firstload",
    "conformance.preflight",
    "conformance.pack.sign",
)


def _loaded_after(code: str, *, cwd: Path | None = None) -> set[str]:
    """The top-level packages and modules in ``sys.modules`` after ``code`` ran in a fresh
    interpreter (the code's own output goes to a pipe and is dropped)."""
    probe = (
        "import io, json, sys\n"
        "real_stdout = sys.stdout\n"
        "sys.stdout = io.StringIO()\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except SystemExit:\n"
        "    pass\n"
        "sys.stdout = real_stdout\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _offenders(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in names if any(m == name or m.startswith(name + ".") for m in loaded)
    )


def test_importing_the_cli_and_building_the_whole_parser_loads_no_command_implementation() -> None:
    loaded = _loaded_after("import conformance.cli\nconformance.cli.build_parser()")
    assert "conformance.commands.sandbox" in loaded  # every group was registered …
    assert "conformance.commands.archive" in loaded
    assert _offenders(loaded, HEAVY_FOR_ANY_COMMAND) == []  # … without its implementation


@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"], ["--version"]])
def test_help_and_version_load_no_command_implementation(argv: list[str]) -> None:
    loaded = _loaded_after(f"from conformance.cli import main\nmain({argv!r})")
    assert _offenders(loaded, HEAVY_FOR_ANY_COMMAND) == []


def test_verifying_a_pack_loads_the_verifier_and_nothing_of_the_other_commands(
    tmp_path: Path,
) -> None:
    folder = make_results_dir(tmp_path / "reports")
    build_signed_pack(folder)
    record = load_run_record(folder)
    pack = folder / pack_file_name(record.bank["orgnr"], record.started_at)
    ca = shared_pki().root.write_pem(tmp_path / "ca.pem")
    code = (
        "from conformance.cli import main\n"
        f"exit_code = main(['verify', {str(pack)!r}, '--trust', {str(ca)!r}])\n"
        "assert exit_code == 0, exit_code\n"
    )
    loaded = _loaded_after(code)
    assert "conformance.pack.verify" in loaded  # it really verified …
    assert _offenders(loaded, NOT_FOR_VERIFY) == []  # … and loaded no other command


# --- the deferred values are the engine's ---------------------------------------------------


def _subparser(*path: str):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.choices and name in a.choices)
        parser = action.choices[name]
    return parser


def _option(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_batch_defaults_are_the_first_load_rules_values_once_parsed() -> None:
    from conformance.firstload.rules import KFR_READ_RATE, MAX_CUSTOMERS_BYTES

    build = build_parser().parse_args(["batch", "build", "--in", "x.csv", "--out-dir", "ut"])
    assert build.max_bytes == MAX_CUSTOMERS_BYTES and type(build.max_bytes) is int
    given = build_parser().parse_args(
        ["batch", "build", "--in", "x.csv", "--out-dir", "ut", "--max-bytes", "5000"]
    )
    assert given.max_bytes == 5000
    upload = build_parser().parse_args(["batch", "upload", "d3", "--bank", "311000004"])
    assert upload.ingest_rate == KFR_READ_RATE and type(upload.ingest_rate) is float
    assert not any(isinstance(v, DeferredDefault) for v in vars(upload).values())


def test_batch_build_help_shows_the_real_size_limit(capsys) -> None:
    from conformance.firstload.rules import MAX_CUSTOMERS_BYTES

    with pytest.raises(SystemExit):
        main(["batch", "build", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(standard {MAX_CUSTOMERS_BYTES}: 10 MB med konvolutten)" in help_text


def test_archive_status_choices_are_the_archive_standings(capsys) -> None:
    from conformance.archive.replay import STANDINGS

    status = _option(_subparser("archive", "list"), "--status")
    assert isinstance(status.choices, DeferredChoices)
    assert tuple(status.choices) == STANDINGS
    with pytest.raises(SystemExit) as exit_info:
        main(["archive", "list", "--status", "kanskje"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "ugyldig valg 'kanskje'" in err and "'replayed'" in err


def test_sandbox_revoke_reasons_are_the_crl_reasons() -> None:
    from conformance.sandbox.pki import REVOCATION_REASONS

    reason = _option(_subparser("sandbox", "revoke"), "--reason")
    assert list(reason.choices) == sorted(set(REVOCATION_REASONS) - {"remove_from_crl"})
    parsed = build_parser().parse_args(["sandbox", "revoke", "--bank", "311000004",
                                        "--reason", "superseded"])  # fmt: skip
    assert parsed.reason == "superseded"


def test_the_sandbox_token_help_names_the_write_scope_the_sandbox_grants() -> None:
    from conformance.sandbox.credentials import WRITE_SCOPE

    scope = _option(_subparser("sandbox", "token"), "--scope")
    assert f"standard {WRITE_SCOPE}" in scope.help


# --- what a bank's run loads ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PROBE = '''
import gc, json, os, sys
import pytest

@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    names = sorted(name for name, plugin in config.pluginmanager.list_name_plugin() if plugin)
    loaders = {name: type(getattr(sys.modules.get(name), "__loader__", None)).__name__
               for name in ("conformance.runner", "test_ids")}
    with open(os.environ["PLUGIN_PROBE_OUT"], "w") as out:
        json.dump({"plugins": names, "hypothesis_imported": "hypothesis" in sys.modules,
                   "loaders": loaders, "frozen": gc.get_freeze_count(),
                   "collecting": gc.isenabled()}, out)
'''


def _session_plugins(args: list[str], tmp_path: Path) -> dict:
    """Plugins registered at the end of a real pytest session started from the repository
    root (the way the README starts both the main job and the project's tests)."""
    (tmp_path / "plugin_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env.update(PYTHONPATH=str(tmp_path), PLUGIN_PROBE_OUT=str(out),
               KFR_CONFORMANCE_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "plugin_probe", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_a_bank_run_leaves_the_test_only_plugins_out(tmp_path: Path) -> None:
    seen = _session_plugins(
        ["--bank=311000004", f"--reports-dir={tmp_path / 'reports'}", "--co", "-q"], tmp_path
    )
    assert "kfr_conformance" in seen["plugins"]  # it was a bank's run …
    assert not {"pytester", "hypothesispytest", "anyio"} & set(seen["plugins"])
    assert seen["hypothesis_imported"] is False  # … that never paid for Hypothesis
    # … nor for pytest's assertion rewriting of the engine it imported while configuring
    assert seen["loaders"]["conformance.runner"] not in ("AssertionRewritingHook", "NoneType")
    assert seen["frozen"] > 10_000  # the set-up's objects are out of the collector's way
    assert seen["collecting"] is True  # off while setting up, on again for the rows


def test_the_project_tests_keep_pytester_and_hypothesis(tmp_path: Path) -> None:
    seen = _session_plugins(["--co", "-q", "tests/test_ids.py"], tmp_path)
    assert {"pytester", "hypothesispytest"} <= set(seen["plugins"])
    assert seen["loaders"]["test_ids"] == "AssertionRewritingHook"  # asserts still explained
    assert seen["frozen"] == 0
    assert seen["collecting"] is True
