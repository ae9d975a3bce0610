"""``kfr-conformance gateway`` as a bank runs it: a real process, a real core system, Ctrl-C."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from core_system_ref import CoreSystem, CoreSystemConfig

from conformance.ids import synthetic_fodselsnummer

BANK = "311000004"


class Process:
    """A ``kfr-conformance`` process whose stdout is read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "conformance.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        stderr = self.popen.stderr.read() if self.popen.poll() is not None and self.popen.stderr else ""
        raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}; stderr {stderr}")

    def stop(self) -> tuple[int, str, str]:
        self.popen.send_signal(signal.SIGINT)
        code = self.popen.wait(timeout=30)
        time.sleep(0.1)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        assert self.popen.stderr is not None
        return code, "\n".join(self.seen + rest), self.popen.stderr.read()


def test_a_bank_runs_the_gateway_over_https_against_the_sandbox_and_sees_findings_live(tmp_path: Path) -> None:
    record = tmp_path / "opptak"
    gateway = Process("gateway", "--bank", BANK, "--upstream", "sandbox", "--tls", "--record", str(record))
    try:
        base = gateway.wait_for(r"KFR-base-URL for kjernesystemet: (\S+)").group(1)
        issuer = gateway.wait_for(r"Maskinporten-issuer: +(\S+)").group(1)
        client_id = gateway.wait_for(r"Maskinporten-klient: (\S+)").group(1)
        folder = Path(gateway.wait_for(r"testsertifikat og nøkkel.*: +(\S+)").group(1))
        ca = Path(gateway.wait_for(r"stole på CA-en i (\S+)").group(1))
        gateway.wait_for("Stopp med Ctrl-C")
        assert base.startswith("https://127.0.0.1:")

        system = CoreSystem(CoreSystemConfig(
            kfr_url=base, issuer=issuer, client_id=client_id, cert=folder / f"{BANK}-cert.pem",
            key=folder / f"{BANK}-key.pem", bank=BANK, ca=ca, variant="reuse-correlation-id",
        ))
        first, second = synthetic_fodselsnummer(), synthetic_fodselsnummer()
        assert system.open(first).status == 201
        assert system.open(second).status == 201
        system.close_http()
        finding = gateway.wait_for(r"^FUNN \[correlation-id-unique\] .* POST add (\d{11}): (.*)$")
        assert finding.group(1) == second and "på nytt" in finding.group(2)
    finally:
        code, out, err = gateway.stop()
    assert code == 0, err
    assert "Gatewayen er stoppet. 2 utvekslinger" in out
    assert "Funn per regel: correlation-id-unique 1" in out
    assert "Traceback" not in err
    lines = [json.loads(line) for line in (record / "gateway.jsonl").read_text().splitlines()]
    assert [e["response"]["status"] for e in lines] == [201, 201]
    assert json.loads((record / "robustness.json").read_text())["injections"] == []


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "https://api.bits.no/kar-ws/api/v1"], "produksjonsmiljø"),
        (["--upstream", "api.bits.no/kar-ws/api/v1"], "produksjonsmiljø"),
        (["--upstream", "test", "--maskinporten-url", "https://maskinporten.no/"], "Maskinportens produksjonsmiljø"),
        (["--upstream", "preprod"], "Ukjent --upstream"),
        (["--upstream", "test", "--listen", "127.0.0.1:http"], "er ikke HOST:PORT"),
        (["--upstream", "test", "--listen", "0.0.0.0:0"], "bare på loopback"),
        (["--upstream", "test", "--max-rate", "-1"], "positivt tall"),
        (["--upstream", "test", "--ca-bundle", "/nonexistent/ca.pem"], "kan ikke leses"),
    ],
)
def test_bad_input_is_refused_with_a_norwegian_message_before_listening(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "gateway", "--bank", BANK, "--record", str(tmp_path / "r"), *args],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "KFR-base-URL" not in done.stdout


def test_a_port_in_use_is_a_plain_message(tmp_path: Path) -> None:
    sock, port = _busy_port()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "conformance.cli", "gateway", "--bank", BANK, "--upstream", "test",
             "--listen", f"127.0.0.1:{port}", "--record", str(tmp_path / "r")],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        sock.close()
    assert done.returncode == 2
    assert f"kan ikke lytte på 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_upstream_sandbox_ignores_a_profiles_real_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bank's profile points at Bits' test environment with its real certificate; the
    sandbox upstream must issue and use sandbox credentials instead."""
    from conformance.gateway.upstream import resolve_upstream
    from conformance.profile import load_settings

    (tmp_path / "kfr-conformance.toml").write_text(
        f'[banks.{BANK}]\nenv = "test"\nclient_id = "real-client"\ncert = "certs/real.p12"\n'
        'cert_password_env = "NOT_SET_ANYWHERE"\nname = "Eksempelbanken ASA"\n'
    )
    settings = load_settings(BANK, {"sandbox_data_dir": str(tmp_path / "sandbox")}, cwd=tmp_path)
    upstream = resolve_upstream("sandbox", settings)
    try:
        assert upstream.env_name == "sandbox" and upstream.client_id != "real-client"
        assert upstream.kfr_base_url.startswith("http://127.0.0.1:")
        assert any(str(tmp_path / "sandbox" / "banks" / BANK) in note for note in upstream.notes)
    finally:
        upstream.close()
    test = resolve_upstream("test", settings)
    assert test.client_id == "real-client" and test.kfr_base_url == "https://preprod.api.bits.no/kar-ws/api/v1"
