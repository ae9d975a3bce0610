"""Settings resolution shared by every command that acts as a bank."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.errors import ConformanceError, UsageError
from conformance.profile import load_settings, open_environment

ORGNR = "311000004"


def _profile(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kfr-conformance.toml"
    path.write_text(f"[banks.{ORGNR}]\n{body}", encoding="utf-8")
    return path


def test_option_beats_profile_and_paths_resolve_where_they_were_written(tmp_path: Path) -> None:
    profile = _profile(tmp_path / "shared", 'cert = "certs/bank.p12"\nsheet = "ark.xlsx"\nenv = "test"\n')
    cwd = tmp_path / "work"
    cwd.mkdir()
    settings = load_settings(ORGNR, {"sheet": "mitt.xlsx", "kfr_env": None}, cwd=cwd, profile=profile)
    assert settings.path("cert") == tmp_path / "shared" / "certs" / "bank.p12"
    assert settings.path("sheet") == cwd / "mitt.xlsx"
    assert settings.get("kfr_env") == "test"  # the profile's "env" key


def test_profile_in_the_working_folder_is_found_and_other_banks_ignored(tmp_path: Path) -> None:
    _profile(tmp_path, 'name = "Eksempelbanken ASA"\n')
    assert load_settings(ORGNR, cwd=tmp_path).get("bank_name") == "Eksempelbanken ASA"
    assert load_settings("311000012", cwd=tmp_path).get("bank_name") is None


@pytest.mark.parametrize("body", ["[banks", f"[banks]\n{ORGNR} = 3\n"])
def test_broken_profile_is_a_usage_error(tmp_path: Path, body: str) -> None:
    (tmp_path / "kfr-conformance.toml").write_text(body, encoding="utf-8")
    with pytest.raises(UsageError):
        load_settings(ORGNR, cwd=tmp_path)


def test_named_profile_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="finnes ikke"):
        load_settings(ORGNR, cwd=tmp_path, profile=tmp_path / "nope.toml")


def test_secret_comes_from_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _profile(tmp_path, 'cert_password_env = "KFR_TEST_PW"\n')
    settings = load_settings(ORGNR, cwd=tmp_path)
    monkeypatch.delenv("KFR_TEST_PW", raising=False)
    with pytest.raises(UsageError, match="KFR_TEST_PW"):
        settings.secret("cert_password_env", "passord")
    monkeypatch.setenv("KFR_TEST_PW", "hemmelig")
    assert settings.secret("cert_password_env", "passord") == "hemmelig"


def test_test_environment_needs_client_and_certificate(tmp_path: Path) -> None:
    settings = load_settings(ORGNR, {"kfr_env": "test"}, cwd=tmp_path)
    with pytest.raises(UsageError, match="--client-id og --cert"):
        open_environment(settings)


def test_production_is_refused_before_anything_starts(tmp_path: Path) -> None:
    settings = load_settings(
        ORGNR, {"kfr_env": "test", "kfr_base_url": "https://api.bits.no/kar-ws/api/v1"}, cwd=tmp_path
    )
    with pytest.raises(ConformanceError, match="produksjon"):
        open_environment(settings)


def test_sandbox_without_url_issues_credentials_and_derives_the_issuer(tmp_path: Path) -> None:
    settings = load_settings(
        ORGNR, {"sandbox_data_dir": str(tmp_path / "sb"), "kfr_base_url": "http://127.0.0.1:9/kar-ws/api/v1"},
        cwd=tmp_path,
    )
    env = open_environment(settings)
    assert env.sandbox is None and env.is_sandbox
    assert env.maskinporten_issuer == "http://127.0.0.1:9/maskinporten/"
    assert env.cert_path.is_file() and env.client_id
