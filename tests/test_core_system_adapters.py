"""How the runner reaches the core system: settings, the command adapter, the HTTP hook.

Bad settings stop `pytest --bank` before any request with a Norwegian message and exit
code 4, never a traceback. A command template is filled in argv, never through a shell. The
hook gets each action as JSON; a real hook server in front of the reference core system
performs the rows it is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from core_system_ref import CoreSystem, CoreSystemConfig
from core_system_support import CoreSystemBank, evidence, outcomes, record_of, run_dir_of

from conformance.coresystem import CommandAdapter, CoreAction, HookAdapter, core_system_settings
from conformance.errors import ConformanceError
from conformance.models import PERFORMED_BY_CORE
from conformance.sandbox import RunningSandbox

TODAY = dt.date(2026, 11, 30)
FNR, ORGNR = "05898012345", "311000004"   # only formatted here, never sent anywhere


# ---------------------------------------------------------------- settings


def test_one_command_gets_each_actions_standard_arguments() -> None:
    settings = core_system_settings(["bank-cli --env test --kfr {kfr_base_url}"], None)
    assert settings is not None and settings.kind == "command"
    assert settings.argv_template("open")[-4:] == ("open", "{customer_id}", "--from", "{date}")
    assert settings.argv_template("close")[-2:] == ("close", "{customer_id}")
    assert settings.argv_template("batch")[-2:] == ("batch", "{entries}")


def test_the_profile_gives_a_template_per_action_and_options_win() -> None:
    profile = {"open": "cli open {customer_id} --from {date}", "close": "cli close {customer_id}",
               "batch": "cli load {file}", "timeout": 40, "robustness": True}
    settings = core_system_settings(None, None, profile=profile)
    assert settings is not None
    assert settings.argv_template("batch") == ("cli", "load", "{file}")
    assert (settings.timeout_s, settings.robustness) == (40.0, True)
    hook = core_system_settings(None, "http://127.0.0.1:9/hook", timeout_s=5, profile=profile)
    assert hook is not None and (hook.kind, hook.timeout_s, hook.robustness) == ("hook", 5, True)
    assert core_system_settings(None, None) is None


@pytest.mark.parametrize(("commands", "hook", "profile", "words"), [
    (["open=cli open"], None, None, "Kommandoen for «open» må bruke {customer_id}"),
    (["cli {kunde}"], None, None, "Ukjent plassholder {kunde}"),
    (["cli 'unclosed"], None, None, "kan ikke leses"),
    (["guided"], "http://127.0.0.1:9/hook", None, "Velg én måte"),
    (["open=cli open {customer_id}"], None, None, "mangler kommando for close, batch"),
    (None, "https://api.bits.no/hook", None, "produksjon"),
    (None, "ftp://kjernesystem/hook", None, "ikke en http(s)-URL"),
    (None, None, {"opne": "cli {customer_id}"}, "Ukjente nøkler i [core_system]: opne"),
    (None, None, {"timeout": 30}, "sier ikke hvordan kjernesystemet nås"),
])
def test_inconsistent_settings_are_refused_in_norwegian(commands, hook, profile, words) -> None:
    with pytest.raises(ConformanceError) as caught:
        core_system_settings(commands, hook, profile=profile)
    assert words.lower() in caught.value.diagnostics().lower()


def _run(bank: CoreSystemBank, reports: Path, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env["KFR_CONFORMANCE_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "pytest", *bank.args(reports, *extra)], cwd=bank.folder,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("extra", "words"), [
    (["--core-system", "open=cli open"], "Kommandoen for «open» må bruke {customer_id}"),
    (["--robustness"], "--robustness krever et kjernesystem"),
    (["--core-system", "cli", "-n", "2"], "dropp -n"),
])
def test_a_bad_core_system_setting_stops_the_run_before_anything_is_recorded(
    sandbox: RunningSandbox, tmp_path: Path, extra: list[str], words: str,
) -> None:
    bank = CoreSystemBank.register(sandbox, tmp_path / "bank")
    done = _run(bank, tmp_path / "r", tmp_path / "home", *extra)
    assert done.returncode == 4, done.stdout + done.stderr
    assert words in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- the command adapter

RECORDER = ("import json, pathlib, sys; out = pathlib.Path(sys.argv[1]); args = sys.argv[2:]; "
            "text = pathlib.Path(args[-1]).read_text() if args and args[-1].endswith('.txt') else None; "
            "out.write_text(json.dumps(dict(args=args, file=text)))")


def test_a_template_is_filled_in_argv_never_through_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    settings = core_system_settings([
        f"batch={sys.executable} -c \"{RECORDER}\" {out} load --kfr={{kfr_base_url}} {{entries}} {{file}}",
        f"open={sys.executable} -c \"{RECORDER}\" {out} open '{{customer_id}}; touch {tmp_path}/owned' {{date}}",
        "close=true {customer_id}",
    ], None)
    adapter = CommandAdapter(settings)
    context = {"kfr_base_url": "http://127.0.0.1:1/kar-ws/api/v1", "bank": ORGNR, "case_id": "KFR-10"}
    action = CoreAction.batch([(FNR, dt.date(2019, 11, 8)), (ORGNR, None)], TODAY)
    assert adapter.ask(action, context).ok
    seen = json.loads(out.read_text())
    assert seen["args"][:4] == ["load", "--kfr=http://127.0.0.1:1/kar-ws/api/v1", f"{FNR}#2019-11-08", ORGNR]
    assert seen["file"] == f"{FNR}#2019-11-08,{ORGNR}"
    # A value never becomes shell syntax: the whole template argument stays one argument.
    assert adapter.ask(CoreAction.open(FNR, TODAY, TODAY), context).ok
    assert json.loads(out.read_text())["args"] == ["open", f"{FNR}; touch {tmp_path}/owned", "2026-11-30"]
    assert not (tmp_path / "owned").exists()


def test_a_failing_command_says_why_with_secrets_redacted(tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzY29wZSI6ImJpdHMifQ.c2lnbmF0dXJl"
    settings = core_system_settings([
        f"{sys.executable} -c \"import sys; print('token {jwt} avvist', file=sys.stderr); sys.exit(3)\"",
    ], None)
    result = CommandAdapter(settings).ask(CoreAction.close(FNR, TODAY), {})
    assert not result.ok
    assert result.detail.startswith("kjernesystemkommandoen avsluttet med kode 3: token [REDACTED] avvist")
    missing = core_system_settings(["/finnes/ikke/bank-cli"], None)
    assert CommandAdapter(missing).ask(CoreAction.close(FNR, TODAY), {}).detail == \
        "kjernesystemkommandoen «/finnes/ikke/bank-cli» finnes ikke"


# ---------------------------------------------------------------- the HTTP hook


class _Hook(BaseHTTPRequestHandler):
    """The bank's test hook: performs each action with the reference core system."""

    received: list[dict[str, Any]]
    config: dict[str, Any]

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(payload)
        system = CoreSystem(CoreSystemConfig(kfr_url=payload["kfr_base_url"], **self.config))
        try:
            if payload["action"] == "open":
                result = system.open(payload["customer_id"], dt.date.fromisoformat(payload["date"]))
            elif payload["action"] == "close":
                result = system.close(payload["customer_id"])
            else:
                result = system.batch([(e["customer_id"], dt.date.fromisoformat(e["date"]) if e["date"] else None)
                                       for e in payload["entries"]])
        finally:
            system.close_http()
        self.send_response(200 if result.ok else 502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def hook(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]], CoreSystemBank]]:
    bank = CoreSystemBank.register(sandbox, tmp_path / "bank")
    config = json.loads(bank.config().read_text())
    handler = type("Hook", (_Hook,), {"received": [], "config": {**config, "state_dir": Path(config["state_dir"])}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/kfr-hook", handler.received, bank
    server.shutdown()
    server.server_close()


def test_the_hook_gets_each_action_as_json_and_its_rows_pass(
    pytester: pytest.Pytester, hook: tuple[str, list[dict[str, Any]], CoreSystemBank], tmp_path: Path,
) -> None:
    url, received, bank = hook
    reports = tmp_path / "r"
    result = pytester.runpytest_inprocess(*bank.args(reports, "--core-system-hook", url, "--core-system-timeout=3",
                                                     "-k", "KFR-02 or KFR-07 or KFR-10"))
    result.assert_outcomes(passed=3)
    run_dir = run_dir_of(reports, bank.orgnr)
    assert {c: o for c, o in outcomes(run_dir).items() if o != "not_run"} == {
        "KFR-02": "passed", "KFR-07": "passed", "KFR-10": "passed"}
    assert {c.case_id for c in record_of(run_dir).cases if c.performed_by == PERFORMED_BY_CORE} == {
        "KFR-02", "KFR-07", "KFR-10"}
    assert [(p["case_id"], p["action"]) for p in received] == [
        ("KFR-02", "open"), ("KFR-07", "open"), ("KFR-07", "close"), ("KFR-10", "batch")]
    batch = received[-1]
    assert batch["bank"] == bank.orgnr and batch["kfr_base_url"].endswith("/kar-ws/api/v1")
    assert [e["date"] for e in batch["entries"]] == ["2019-11-08", "2011-11-05", "2019-10-15"]
    assert batch["customers"] == ",".join(f"{e['customer_id']}#{e['date']}" for e in batch["entries"])
    main = next(e for e in evidence(run_dir, "KFR-10") if e["role"] == "main")
    assert main["source"] == "gateway" and main["response"]["status"] == 201


def test_a_hook_that_refuses_is_named_in_the_rows_message(sandbox: RunningSandbox, tmp_path: Path) -> None:
    settings = core_system_settings(None, "http://127.0.0.1:9/ingen-hook")
    result = HookAdapter(settings).ask(CoreAction.close(FNR, TODAY), {"case_id": "KFR-07"})
    assert not result.ok and result.detail.startswith("kjernesystemets hook http://127.0.0.1:9/ingen-hook svarte ikke")
