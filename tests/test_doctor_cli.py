"""``kfr-conformance doctor`` end to end against real servers on loopback: all green against
the sandbox; each failure kind (wrong password, another bank's certificate, an expired
certificate, a dead proxy, an unreachable host, a missing scope, a 5-minute clock skew)
gives its own red line with advice and exit code 1."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import httpcore  # noqa: F401 - one copy of httpcore for httpx's exception map (see test_preflight)
import pytest

from conformance.cli import main
from conformance.ids import synthetic_orgnr
from conformance.sandbox import BankCredentials, Faults, RunningSandbox

STEPS = {"A-3", "A-7", "B-1/A-4", "C-1", "C-2"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No profile of the developer's, no proxy of the machine's."""
    monkeypatch.chdir(tmp_path)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def on(sb: RunningSandbox, creds: BankCredentials, *extra: str) -> list[str]:
    """Options for ``creds`` against the running sandbox ``sb``, as a bank would give them."""
    return ["--bank", creds.orgnr, "--kfr-base-url", sb.kfr_base_url,
            "--maskinporten-url", sb.maskinporten_issuer, "--sandbox-data-dir", str(sb.data_dir),
            "--cert", str(creds.p12), "--client-id", creds.client_id, *extra]


def doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["check"]: line for line in report["checks"]}


def red(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: line for name, line in checks(report).items() if line["status"] == "feil"}


# ---------------------------------------------------------------- all green


def test_doctor_against_the_embedded_sandbox_is_all_green(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--bank", "311000004"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.split(" ", 1)[0] in {"ok", "advarsel", "feil"}]
    assert lines and all(line.startswith("ok ") for line in lines), out
    assert "klar for «pytest --bank=311000004»" in out
    code, report = doctor_json(capsys, "--bank", "311000004")
    assert code == 0 and report["ok"] is True
    assert len(report["checks"]) == len(lines)  # one line per check
    assert {line["step"] for line in report["checks"]} == STEPS
    assert {line["status"] for line in report["checks"]} == {"ok"}
    assert report["environment"] == "sandbox"
    sheet = checks(report)["sheet.read"]["details"]
    assert len(sheet["sha256"]) == 64 and sheet["version"]


def test_doctor_reads_the_same_profile_as_the_runner(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                                     bank: BankCredentials, tmp_path: Path) -> None:
    (tmp_path / "kfr-conformance.toml").write_text(
        f'[banks.{bank.orgnr}]\nkfr_base_url = "{sandbox.kfr_base_url}"\n'
        f'maskinporten_url = "{sandbox.maskinporten_issuer}"\nsandbox_data_dir = "{sandbox.data_dir}"\n'
        f'cert = "{bank.p12}"\nclient_id = "{bank.client_id}"\nalt_scope = "{bank.alt_scope}"\n',
        encoding="utf-8",
    )
    code, report = doctor_json(capsys, "--bank", bank.orgnr)
    assert code == 0, red(report)
    assert report["kfr_base_url"] == sandbox.kfr_base_url
    assert {line["status"] for line in report["checks"]} == {"ok"}


# ---------------------------------------------------------------- each failure kind


def test_wrong_password(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    creds = sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b", password="riktig-passord")
    monkeypatch.setenv("KFR_CERT_PASSWORD", "feil-passord")
    code, report = doctor_json(capsys, *on(sandbox, creds, "--cert-password-env", "KFR_CERT_PASSWORD"))
    assert code == 1
    line = red(report)["certificate.password"]
    assert line["step"] == "A-3" and "feil passord" in line["message"]
    assert "--cert-password-env" in line["advice"]
    assert "riktig-passord" not in json.dumps(report) and "feil-passord" not in json.dumps(report)


def test_another_banks_certificate(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                  bank: BankCredentials, other_bank: BankCredentials) -> None:
    args = on(sandbox, bank)
    args[args.index("--cert") + 1] = str(other_bank.p12)
    code, report = doctor_json(capsys, *args)
    assert code == 1
    failed = red(report)
    assert other_bank.orgnr in failed["certificate.orgnr"]["message"]
    assert failed["certificate.orgnr"]["advice"]
    assert failed["maskinporten.token"]["details"]["mp_code"] == "MP-122"


def test_expired_certificate(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                             bank: BankCredentials, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = tmp_path / "expired.p12"
    expired.write_bytes(sandbox.ca.issue(bank.orgnr, bank.name, not_before=now - dt.timedelta(days=800),
                                         not_after=now - dt.timedelta(days=3)).pkcs12())
    args = on(sandbox, bank)
    args[args.index("--cert") + 1] = str(expired)
    code, report = doctor_json(capsys, *args)
    assert code == 1
    failed = red(report)
    assert "utløp" in failed["certificate.validity"]["message"]
    assert "testsertifikat" in failed["certificate.validity"]["advice"]
    assert failed["maskinporten.token"]["details"]["mp_code"] == "MP-121"


def test_dead_proxy(capsys: pytest.CaptureFixture[str], bank: BankCredentials,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    code, report = doctor_json(
        capsys, "--bank", bank.orgnr, "--kfr-env", "test",
        "--kfr-base-url", "https://kfr.example.invalid/kar-ws/api/v1",
        "--maskinporten-url", "https://mp.example.invalid/", "--client-id", bank.client_id,
        "--cert", str(bank.p12),
    )
    assert code == 1
    failed = red(report)
    for role in ("maskinporten", "kfr"):
        line = failed[f"network.tcp.{role}"]
        assert proxy in line["message"] and "HTTPS_PROXY" in line["advice"]
    assert proxy in failed["maskinporten.token"]["message"]
    assert "network.tls.kfr" not in checks(report)


@pytest.mark.parametrize("where", ["closed-port", "unresolvable"])
def test_unreachable_host(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                          bank: BankCredentials, where: str) -> None:
    kfr = (f"http://127.0.0.1:{closed_port()}/kar-ws/api/v1" if where == "closed-port"
           else "https://kfr.example.invalid/kar-ws/api/v1")
    args = on(sandbox, bank)
    args[args.index("--kfr-base-url") + 1] = kfr
    code, report = doctor_json(capsys, *args)
    assert code == 1
    failed = red(report)
    layer = "network.tcp.kfr" if where == "closed-port" else "network.dns.kfr"
    assert kfr.split("/")[2].split(":")[0] in failed[layer]["message"] and failed[layer]["advice"]
    assert "kfr.lookup" in failed
    assert checks(report)["maskinporten.token"]["status"] == "ok"  # only KFR is unreachable


def test_missing_scope(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                       bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(misbehave=frozenset({"token_wrong_scope"})))
    code, report = doctor_json(capsys, *on(sandbox, bank, "--alt-scope", str(bank.alt_scope)))
    assert code == 1
    line = red(report)["maskinporten.scope"]
    assert line["step"] == "B-1/A-4" and "bits:kundeforhold.write" in line["message"]
    assert "Samarbeidsportalen" in line["advice"]


def test_five_minute_clock_skew(capsys: pytest.CaptureFixture[str], sandbox: RunningSandbox,
                                bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(clock_offset_s=300))
    code, report = doctor_json(capsys, *on(sandbox, bank))
    assert code == 1
    failed = red(report)
    clock = failed["clock.maskinporten"]
    assert clock["step"] == "A-7" and 295 <= -clock["details"]["skew_s"] <= 305
    assert "NTP" in clock["advice"]
    assert failed["maskinporten.token"]["details"]["mp_code"] == "MP-130"


def test_the_text_output_puts_advice_on_the_red_line(capsys: pytest.CaptureFixture[str],
                                                     sandbox: RunningSandbox, bank: BankCredentials) -> None:
    sandbox.set_faults(Faults(clock_offset_s=300))
    assert main(["doctor", *on(sandbox, bank)]) == 1
    out = capsys.readouterr().out
    [clock] = [line for line in out.splitlines() if "Maskinporten (127.0.0.1" in line and "Klokken" in line]
    assert clock.startswith("feil ") and "A-7" in clock and "→ Tiltak:" in clock
    assert "rett linjene merket «feil»" in out


# ---------------------------------------------------------------- unusable input


def test_production_is_refused_before_any_request(capsys: pytest.CaptureFixture[str], bank: BankCredentials) -> None:
    code = main(["doctor", "--bank", bank.orgnr, "--kfr-env", "test", "--kfr-base-url",
                 "https://api.bits.no/kar-ws/api/v1", "--client-id", "x", "--cert", str(bank.p12)])
    err = capsys.readouterr().err
    assert code == 2 and "produksjon" in err and "Traceback" not in err


def test_an_invalid_orgnr_is_a_plain_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--bank", "311000005"]) == 2
    err = capsys.readouterr().err
    assert "311000005" in err and "organisasjonsnummer" in err and "Traceback" not in err
