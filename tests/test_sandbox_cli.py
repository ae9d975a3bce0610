"""``kfr-conformance sandbox ...``: in-process through cli.main, and ``serve`` as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from conformance.cli import main
from conformance.ids import synthetic_fodselsnummer, synthetic_orgnr
from conformance.sandbox import RunningSandbox, TestCA

REPO = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sandbox", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ca_prints_the_ca_of_the_data_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "ca", "--data-dir", str(tmp_path))
    assert code == 0 and out.encode() == TestCA(tmp_path).cert_pem
    assert out.startswith("-----BEGIN CERTIFICATE-----")


def test_ca_defaults_to_the_conformance_home(
    capsys: pytest.CaptureFixture[str], set_home: Path
) -> None:
    code, out, _ = run(capsys, "ca")
    assert code == 0 and (set_home / "sandbox" / "ca-cert.pem").read_text() == out


def test_issue_cert_prints_paths_and_registers_the_client(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sandbox_factory: Callable[..., RunningSandbox],
    bank_api: Callable[..., Any],
) -> None:
    orgnr = synthetic_orgnr()
    code, out, _ = run(
        capsys,
        "issue-cert",
        "--bank",
        orgnr,
        "--name",
        "Kommandobanken AS",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0
    printed = json.loads(out)
    assert set(printed) == {"orgnr", "client_id", "p12", "cert_pem", "key_pem", "ca_pem"}
    assert printed["orgnr"] == orgnr and all(
        Path(printed[k]).is_file() for k in ("p12", "cert_pem", "key_pem", "ca_pem")
    )
    sb = sandbox_factory(data_dir=tmp_path / "data")
    creds = sb.register_bank(orgnr, None, tmp_path / "out")
    assert creds.client_id == printed["client_id"] and creds.name == "Kommandobanken AS"
    assert bank_api(creds, sb=sb).add(synthetic_fodselsnummer()).status_code == 201


def test_issue_cert_with_a_password_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_PW", "s3cret-pw")
    code, out, _ = run(
        capsys,
        "issue-cert",
        "--bank",
        synthetic_orgnr(),
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--password-env",
        "SANDBOX_PW",
    )
    assert code == 0 and "s3cret-pw" not in out
    code, _, err = run(
        capsys,
        "issue-cert",
        "--bank",
        synthetic_orgnr(),
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--password-env",
        "NOT_SET_ANYWHERE",
    )
    assert code == 2 and "NOT_SET_ANYWHERE" in err


@pytest.mark.parametrize("orgnr", ["123456789", "12345", "abc"])
def test_bad_orgnr_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, orgnr: str
) -> None:
    code, out, err = run(
        capsys, "issue-cert", "--bank", orgnr, "--data-dir", str(tmp_path), "--out", str(tmp_path)
    )
    assert code == 2 and out == ""
    assert "organisasjonsnummer" in err and "Traceback" not in err


def test_token_without_url_starts_a_sandbox_for_the_call(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sandbox_factory: Callable[..., RunningSandbox],
    bank_api: Callable[..., Any],
) -> None:
    orgnr = synthetic_orgnr()
    code, out, _ = run(capsys, "token", "--bank", orgnr, "--data-dir", str(tmp_path))
    assert code == 0
    token = out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (
        claims["consumer"]["ID"] == f"0192:{orgnr}" and claims["scope"] == "bits:kundeforhold.write"
    )
    # Usable against a later sandbox on the same data folder (another port), e.g. with curl.
    sb = sandbox_factory(data_dir=tmp_path)
    api = bank_api(sb.register_bank(orgnr, None, tmp_path / "banks" / orgnr), sb=sb)
    api.token = token
    assert api.add(synthetic_fodselsnummer()).status_code == 201


def test_token_from_a_running_sandbox(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sandbox_factory: Callable[..., RunningSandbox],
) -> None:
    sb = sandbox_factory(data_dir=tmp_path)
    orgnr = synthetic_orgnr()
    for url in (sb.base_url, sb.kfr_base_url, sb.maskinporten_issuer):
        code, out, err = run(
            capsys,
            "token",
            "--bank",
            orgnr,
            "--data-dir",
            str(tmp_path),
            "--url",
            url,
            "--scope",
            "bits:kundeforhold.write bits:sandkasse.annet",
        )
        assert code == 0, err
        claims = jwt.decode(out.strip(), options={"verify_signature": False})
        assert claims["iss"] == sb.maskinporten_issuer
        assert claims["scope"].split() == ["bits:kundeforhold.write", "bits:sandkasse.annet"]


def test_token_errors_are_messages(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sandbox_factory: Callable[..., RunningSandbox],
) -> None:
    sb = sandbox_factory(data_dir=tmp_path)
    code, _, err = run(
        capsys,
        "token",
        "--bank",
        synthetic_orgnr(),
        "--data-dir",
        str(tmp_path),
        "--url",
        sb.base_url,
        "--scope",
        "bits:kundeforhold",
    )
    assert code == 2 and "invalid_scope" in err and "Traceback" not in err
    code, _, err = run(
        capsys,
        "token",
        "--bank",
        synthetic_orgnr(),
        "--data-dir",
        str(tmp_path),
        "--url",
        "http://127.0.0.1:9",
    )
    assert code == 2 and "sandkasse" in err


def test_serve_refuses_a_non_loopback_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert code == 2 and "--allow-non-loopback" in err


def test_sandbox_without_a_command_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2 and "serve" in err and "issue-cert" in err


@contextlib.contextmanager
def _serving(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``sandbox serve`` as a real process; yields it and the lines it printed, by label."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "KFR_CONFORMANCE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance.cli",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--ingest-rate",
            "0",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            line.startswith("Sandkasse –") for line in lines
        ):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line.strip())
        yield proc, {k: v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_runs_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    with _serving(tmp_path) as (proc, printed):
        kfr_url, issuer = printed["KFR-base-URL"], printed["Maskinporten-issuer"]
        assert kfr_url.startswith("http://127.0.0.1:") and kfr_url.endswith("/kar-ws/api/v1")
        assert printed["Modus"] == "KFR direkte"
        meta = httpx.get(issuer + ".well-known/oauth-authorization-server", timeout=5).json()
        assert meta["issuer"] == issuer
        assert httpx.get(kfr_url + "/customers/customerRelationships", timeout=5).status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "stoppet" in out
    assert "GET /kar-ws/api/v1/customers/customerRelationships 401 CorrelationID=-" in err


def test_serve_realistic_puts_the_gateway_in_front_of_kfr(tmp_path: Path) -> None:
    with _serving(tmp_path, "--realistic") as (proc, printed):
        assert printed["Modus"].startswith("realistisk")
        kfr_url = printed["KFR-base-URL"]
        response = httpx.post(
            kfr_url + "/customers/financialInstitutions/910000004/relationshipType/DSOPBANK",
            headers={"CorrelationID": "2b6fc544-e708-4887-8425-378733eea631"},
            timeout=5,
        )
        assert response.status_code == 401
        assert response.json() == {
            "statusCode": 401,
            "message": "Unauthorized. Access token is missing or invalid",
        }
        base = kfr_url.split("/kar-ws/")[0]
        assert httpx.get(base + "/_sandbox/status", timeout=5).json()["realistic"] is True
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "(gateway: unauthorized)" in err
