"""Guided mode in a real terminal: `pytest --core-system guided` says what to do in the core
system and counts down until the recording gateway sees the request.

The run is a real pytest process on a pseudo-terminal. Nothing is typed into it: the test
plays the person at the core system's screen, who reads the instruction for KFR-02 and
carries it out with the reference core system — and does nothing for KFR-03, whose
countdown runs out.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core_system_support import REF, CoreSystemBank, record_of, run_dir_of

from conformance.models import PERFORMED_BY_CORE
from conformance.sandbox import RunningSandbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INSTRUCTION = re.compile(r">>> (KFR-\d+): Opprett kundeforhold for (\d{11}) \([^)]*\) fra (\d{4}-\d{2}-\d{2}) nå")
GATEWAY = re.compile(r"KFR-base-URL for kjernesystemet \(opptaksgatewayen\): (http://127\.0\.0\.1:\d+/kar-ws/api/v1)")
COUNTDOWN = re.compile(r"Venter på kjernesystemet:\s+(\d+) s igjen")
TIMEOUT_S = 4


def test_guided_mode_shows_the_instruction_a_countdown_and_the_result_in_a_terminal(
    sandbox: RunningSandbox, tmp_path: Path,
) -> None:
    bank = CoreSystemBank.register(sandbox, tmp_path / "bank")
    reports = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KFR_"))}
    env.update(KFR_CONFORMANCE_HOME=str(tmp_path / "home"), TERM="xterm", COLUMNS="120")
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *bank.args(reports, "--core-system", "guided",
                                                   f"--core-system-timeout={TIMEOUT_S}", "-k", "KFR-02 or KFR-03")],
        stdin=slave, stdout=slave, stderr=slave, cwd=bank.folder, env=env, start_new_session=True,
    )
    os.close(slave)
    screen = ""
    acted: list[str] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the run is over
                    break
                if not chunk:
                    break
                screen += chunk.decode("utf-8", "replace")
            text = ANSI.sub("", screen)
            gateway = GATEWAY.search(text)
            for case_id, customer, _date in INSTRUCTION.findall(text):
                if case_id == "KFR-02" and customer not in acted and gateway:
                    acted.append(customer)   # the person does what the terminal says, in the core system
                    done = subprocess.run(
                        [sys.executable, str(REF), "--config", str(bank.config()), "--kfr-url", gateway.group(1),
                         "open", customer], capture_output=True, text=True, timeout=60)
                    assert done.returncode == 0, done.stderr
            if proc.poll() is not None and not ready:
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = ANSI.sub("", screen)

    instructions = {case_id: customer for case_id, customer, _ in INSTRUCTION.findall(text)}
    assert set(instructions) == {"KFR-02", "KFR-03"}, text[-3000:]
    assert acted == [instructions["KFR-02"]]
    assert f"Mottatt: registrering av {instructions['KFR-02']} – KFR svarte HTTP 201." in text
    # KFR-03: nobody acted, so the countdown ran visibly down to the end.
    after = text.split(f">>> KFR-03: Opprett kundeforhold for {instructions['KFR-03']} (D-nummer)")[1]
    shown = [int(n) for n in COUNTDOWN.findall(after)]
    assert shown[0] == TIMEOUT_S and min(shown) <= 1 and shown == sorted(shown, reverse=True), shown
    assert f"Ingen registrering av {instructions['KFR-03']} kom fram til KFR innen {TIMEOUT_S} s." in text
    assert proc.returncode == 1

    record = record_of(run_dir_of(reports, bank.orgnr))
    cases = {c.case_id: c for c in record.cases}
    assert str(cases["KFR-02"].outcome) == "passed" and cases["KFR-02"].performed_by == PERFORMED_BY_CORE
    assert str(cases["KFR-03"].outcome) == "failed"
    assert "[expected-request-seen]" in cases["KFR-03"].message
