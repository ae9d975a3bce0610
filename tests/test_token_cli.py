"""``kfr-conformance token`` against the real sandbox: its formats (and that the curl line
works), ``--decode`` without the signature, and the cache: reused until near expiry, never
a token in clear on disk, a damaged entry simply refetched."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpcore  # noqa: F401 - one copy of httpcore for httpx's exception map (see test_preflight)
import jwt
import pytest

from conformance.cli import main
from conformance.sandbox import BankCredentials, Faults, RunningSandbox
from conformance.sandbox.credentials import BANK_ALT_SCOPE

WRITE = "bits:kundeforhold.write"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def cache_dir(set_home: Path) -> Path:
    return set_home / "token-cache"


def on(sb: RunningSandbox, creds: BankCredentials, *extra: str) -> list[str]:
    return ["--bank", creds.orgnr, "--kfr-base-url", sb.kfr_base_url,
            "--maskinporten-url", sb.maskinporten_issuer, "--sandbox-data-dir", str(sb.data_dir),
            "--cert", str(creds.p12), "--client-id", creds.client_id, *extra]


def token_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    assert main(["token", *args]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    out, _ = token_cli(capsys, *args, "--format", "json")
    return json.loads(out)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# ---------------------------------------------------------------- formats


def test_raw_and_header_formats(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                bank: BankCredentials) -> None:
    out, err = token_cli(capsys, *on(sandbox, bank))
    token = out.strip()
    assert "\n" not in token
    got = claims(token)
    assert got["scope"] == WRITE and got["consumer"]["ID"] == f"0192:{bank.orgnr}"
    assert "utløper om" in err
    header, _ = token_cli(capsys, *on(sandbox, bank, "--format", "header"))
    assert header.strip() == f"Authorization: Bearer {token}"  # the cached token


def test_json_format(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox, bank: BankCredentials) -> None:
    data = as_json(capsys, *on(sandbox, bank, "--scope", BANK_ALT_SCOPE))
    assert data["token_type"] == "Bearer" and data["scope"] == BANK_ALT_SCOPE
    assert claims(data["access_token"])["scope"] == BANK_ALT_SCOPE
    assert 60 < data["expires_in"] <= 120
    assert data["kfr_base_url"] == sandbox.kfr_base_url and data["bank"] == bank.orgnr
    assert data["cached"] is False
    assert "claims" not in data


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_line_is_a_working_own_bank_lookup(capsys: pytest.CaptureFixture[str],
                                                    sandbox: RunningSandbox, bank: BankCredentials) -> None:
    out, _ = token_cli(capsys, *on(sandbox, bank, "--format", "curl"))
    assert out.startswith("curl ") and f"/customers/financialInstitutions/{bank.orgnr}/" in out
    done = subprocess.run(["bash", "-c", out], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == {"banks": []}


def test_decode_shows_the_claims_never_the_token_or_its_signature(
    capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox, bank: BankCredentials,
) -> None:
    token = as_json(capsys, *on(sandbox, bank))["access_token"]
    out, _ = token_cli(capsys, *on(sandbox, bank, "--decode"))
    decoded = json.loads(out)
    assert decoded["claims"]["consumer"]["ID"] == f"0192:{bank.orgnr}"
    assert decoded["header"]["alg"] == "RS256"
    assert token.split(".")[2] not in out and token not in out
    both = as_json(capsys, *on(sandbox, bank, "--decode"))
    assert both["access_token"] == token and both["claims"] == decoded["claims"]


# ---------------------------------------------------------------- the cache


def test_the_cache_reuses_the_token_and_holds_it_only_encrypted(
    capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox, bank: BankCredentials, cache_dir: Path,
) -> None:
    first = as_json(capsys, *on(sandbox, bank))
    second = as_json(capsys, *on(sandbox, bank))
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["access_token"] == first["access_token"]
    token = first["access_token"]
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert oct(cache_dir.stat().st_mode & 0o777) == "0o700"
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data
        for segment in token.split("."):
            assert segment.encode() not in data, "a part of the token is on disk in clear"
    # Another scope is another entry; --no-cache asks anew and leaves the cache alone.
    as_json(capsys, *on(sandbox, bank, "--scope", BANK_ALT_SCOPE))
    fresh = as_json(capsys, *on(sandbox, bank, "--no-cache"))
    assert fresh["cached"] is False and fresh["access_token"] != token
    assert len([p for p in cache_dir.rglob("*") if p.is_file()]) == 2


def test_a_token_near_expiry_is_not_reused(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                           bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(token_lifetime_s=30))  # shorter than the renewal margin
    first = as_json(capsys, *on(sandbox, bank))
    second = as_json(capsys, *on(sandbox, bank))
    assert second["cached"] is False and second["access_token"] != first["access_token"]


def test_a_damaged_or_foreign_cache_entry_is_refetched(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                                       bank: BankCredentials, cache_dir: Path) -> None:
    first = as_json(capsys, *on(sandbox, bank))
    [entry] = list(cache_dir.iterdir())
    envelope = json.loads(entry.read_text())
    data = bytearray(envelope["data"].encode())
    data[10] = ord("A") if data[10] != ord("A") else ord("B")
    envelope["data"] = data.decode()
    entry.write_text(json.dumps(envelope))
    second = as_json(capsys, *on(sandbox, bank))
    assert second["cached"] is False and second["access_token"] != first["access_token"]
    assert as_json(capsys, *on(sandbox, bank))["cached"] is True  # the new entry is good


def test_the_embedded_sandbox_token_is_cached_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    first = as_json(capsys, "--bank", "311000004")
    second = as_json(capsys, "--bank", "311000004")
    assert second["cached"] is True and second["access_token"] == first["access_token"]
    assert first["environment"] == "sandbox" and first["kfr_base_url"] is None
    _, err = token_cli(capsys, "--bank", "311000004", "--format", "curl")
    assert "sandbox serve" in err


# ---------------------------------------------------------------- refusals


def test_production_is_refused(capsys: pytest.CaptureFixture[str], bank: BankCredentials) -> None:
    code = main(["token", "--bank", bank.orgnr, "--kfr-env", "test", "--maskinporten-url",
                 "https://maskinporten.no/", "--client-id", "x", "--cert", str(bank.p12)])
    err = capsys.readouterr().err
    assert code == 2 and "produksjon" in err.lower() and "Traceback" not in err


def test_a_scope_the_client_lacks_is_explained(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                               bank: BankCredentials, set_home: Path) -> None:
    code = main(["token", *on(sandbox, bank, "--scope", "bits:finnes.ikke")])
    err = capsys.readouterr().err
    assert code == 2 and "MP-200" in err and "Traceback" not in err
    assert not (set_home / "token-cache").exists() or not list((set_home / "token-cache").iterdir())
