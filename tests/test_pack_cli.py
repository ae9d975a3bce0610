"""``kfr-conformance pack | verify | email`` through the real CLI entry point."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest
from pack_support import (
    BANK_ORGNR,
    CaseDraft,
    make_results_dir,
    read_zip,
    shared_pki,
    smtp_server,
    write_zip,
)

from conformance.cli import main
from conformance.models import Outcome, RunRecord
from conformance.pack.manifest import pack_file_name
from conformance.pack.verify import CHECK_NAMES

SANDBOX_URL = "http://127.0.0.1:5999/kar-ws/api/v1"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def creds(tmp_path):
    pki = shared_pki()
    return {
        "p12": pki.bank.write_p12(tmp_path / "creds" / "bank.p12", password=b"hemmelig"),
        "ca": pki.root.write_pem(tmp_path / "creds" / "ca.pem"),
    }


@pytest.fixture
def packed(tmp_path, creds, monkeypatch, capsys):
    folder = make_results_dir(tmp_path / "reports")
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    code = main(["pack", str(folder), "--cert", str(creds["p12"]), "--cert-password-env", "KFR_CERT_PW",
                 "--contact", "kari@testbank.example"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    record = RunRecord.from_json((folder / "run.json").read_bytes())
    return folder, folder / pack_file_name(record.bank["orgnr"], record.started_at), out


def test_pack_command(packed):
    folder, zip_path, out = packed
    assert zip_path.is_file() and (folder / "c3-epost.eml").is_file()
    assert str(zip_path) in out and "C-3-e-post" in out
    assert "hemmelig" not in out


def test_verify_valid_pack(packed, creds, capsys):
    _, zip_path, _ = packed
    assert main(["verify", str(zip_path), "--trust", str(creds["ca"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GYLDIG")
    assert out.count("[OK  ]") == len(CHECK_NAMES)


def test_verify_invalid_pack_exit_1_with_reasons(packed, creds, capsys, tmp_path):
    _, zip_path, _ = packed
    entries = read_zip(zip_path.read_bytes())
    entries["report.html"] += b"<!-- endret -->"
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(write_zip(sorted(entries.items())))
    assert main(["verify", str(tampered), "--trust", str(creds["ca"])]) == 1
    out = capsys.readouterr().out
    assert out.startswith("UGYLDIG")
    assert "[FEIL] Filer: Filene stemmer ikke: endret: report.html." in out


def test_verify_unusable_input_exit_2(tmp_path, creds, capsys):
    junk = tmp_path / "pakke.zip"
    junk.write_bytes(b"this is not a zip")
    assert main(["verify", str(junk), "--trust", str(creds["ca"])]) == 2
    captured = capsys.readouterr()
    assert "ikke en zip-fil" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert main(["verify", str(junk), "--json", "--lang", "en"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "ok": False,
        "usable": False,
        "code": "zip.not_zip",
        "reason": "The file is not a zip file, so it cannot be a result pack.",
    }


def test_verify_json_english_and_correlations(packed, creds, capsys, tmp_path):
    _, zip_path, _ = packed
    out_csv = tmp_path / "corr.csv"
    code = main(["verify", str(zip_path), "--trust", str(creds["ca"]), "--json", "--lang", "en",
                 "--export-correlations", str(out_csv), "--expect-sheet-version", "1.3"])  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["usable"] and data["verdict"].startswith("VALID")
    assert data["checks"][0]["name"] == "signature"
    assert data["signer"]["orgnr"] == BANK_ORGNR
    with out_csv.open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == data["correlation_ids"] > 20


def test_verify_expectations_and_trust(packed, creds, capsys):
    _, zip_path, _ = packed
    assert main(["verify", str(zip_path), "--trust", str(creds["ca"]),
                 "--expect-sheet-sha256", "00" * 32]) == 1  # fmt: skip
    assert "[FEIL] Testark" in capsys.readouterr().out
    assert main(["verify", str(zip_path)]) == 1  # nobody trusted
    assert "--trust" in capsys.readouterr().out
    untrusted = shared_pki().untrusted_root.write_pem(zip_path.parent.parent / "other-ca.pem")
    assert main(["verify", str(zip_path), "--trust", str(untrusted)]) == 1
    assert "kjeder ikke" in capsys.readouterr().out


def test_verify_bad_trust_file_is_a_usage_error(packed, tmp_path, capsys):
    _, zip_path, _ = packed
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    assert main(["verify", str(zip_path), "--trust", str(bad)]) == 2
    assert "ikke et sertifikat" in capsys.readouterr().err


def test_email_command_and_send(packed, capsys, monkeypatch):
    folder, zip_path, _ = packed
    assert main(["email", str(folder)]) == 0
    assert "c3-epost.eml" in capsys.readouterr().out
    (folder / "c3-epost.eml").unlink()  # written again from the pack on demand
    monkeypatch.setenv("SMTP_PW", "smtp-hemmelig")
    with smtp_server(user="bank", password="smtp-hemmelig") as server:
        code = main(["email", str(folder), "--send", "--smtp-host", server.host,
                     "--smtp-port", str(server.port), "--smtp-user", "bank",
                     "--smtp-password-env", "SMTP_PW", "--from", "it@testbank.example"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Sendt til DSOP@bits.no" in captured.out
    assert "smtp-hemmelig" not in captured.out + captured.err
    (mail,) = server.received
    assert mail.rcpt_tos == ["DSOP@bits.no"] and zip_path.name.encode() in mail.content


def test_email_command_explains_blockers(tmp_path, creds, monkeypatch, capsys):
    cases = (CaseDraft("KFR-01"), CaseDraft("KFR-02", outcome=Outcome.FAILED))
    folder = make_results_dir(tmp_path, cases=cases)
    assert main(["email", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "KFR-02" in out and "feilet" in out
    assert main(["email", str(folder), "--send"]) == 1  # never sent while blocked


def test_pack_without_certificate_for_a_test_run(tmp_path, capsys):
    folder = make_results_dir(tmp_path)
    assert main(["pack", str(folder)]) == 2
    assert "--cert" in capsys.readouterr().err


def test_pack_with_a_missing_password_variable(tmp_path, creds, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    folder = make_results_dir(tmp_path)
    code = main(
        ["pack", str(folder), "--cert", str(creds["p12"]), "--cert-password-env", "NO_SUCH_VAR"]
    )
    assert code == 2
    assert "NO_SUCH_VAR" in capsys.readouterr().err


def test_manual_confirmation_then_pack(tmp_path, creds, monkeypatch, capsys):
    cases = (
        CaseDraft("KFR-01"),
        CaseDraft("KFR-06", outcome=Outcome.PENDING, manual=True, operations=()),
        CaseDraft("KFR-07", outcome=Outcome.NOT_AUTOMATED, operations=()),
    )
    folder = make_results_dir(tmp_path, cases=cases)
    manual = tmp_path / "manuelt.toml"
    manual.write_text(
        '[KFR-06]\nstatus = "OK"\nby = "Ola Nordmann"\ncomment = "Sett i KFR-loggen"\n'
        '[KFR-07]\nstatus = "OK"\nby = "Ola Nordmann"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    args = ["pack", str(folder), "--cert", str(creds["p12"]), "--cert-password-env", "KFR_CERT_PW"]
    assert main([*args, "--manual", str(manual)]) == 0
    out = capsys.readouterr().out
    assert "KFR-06, KFR-07" in out and "C-3-e-post:" in out
    record = RunRecord.from_json((folder / "run.json").read_bytes())
    confirmed = {c.case_id: c for c in record.cases}
    for case_id in ("KFR-06", "KFR-07"):
        case = confirmed[case_id]
        assert case.outcome is Outcome.PASSED and case.manual
        assert case.confirmed_by == "Ola Nordmann" and case.confirmed_at.endswith("Z")
    assert confirmed["KFR-06"].comment == "Sett i KFR-loggen"
    manifest = json.loads((folder / "manifest.json").read_bytes())
    assert {c["id"]: c["confirmed_by"] for c in manifest["cases"]}["KFR-06"] == "Ola Nordmann"


def test_manual_cannot_override_an_automated_result(tmp_path, creds, capsys, monkeypatch):
    cases = (CaseDraft("KFR-01", outcome=Outcome.FAILED),)
    folder = make_results_dir(tmp_path, cases=cases)
    before = (folder / "run.json").read_bytes()
    manual = tmp_path / "m.json"
    manual.write_text(json.dumps({"KFR-01": {"status": "OK", "by": "Noen"},
                                  "KFR-99": {"status": "OK", "by": "Noen"}}))  # fmt: skip
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    args = ["--cert", str(creds["p12"]), "--cert-password-env", "KFR_CERT_PW"]
    assert main(["pack", str(folder), *args, "--manual", str(manual)]) == 2
    err = capsys.readouterr().err
    assert "KFR-01: er automatisert" in err and "KFR-99: finnes ikke" in err
    assert (folder / "run.json").read_bytes() == before


def test_sandbox_run_uses_the_sandbox_credentials_and_openssl_agrees(tmp_path, monkeypatch, capsys):
    from conformance.sandbox.pki import TestCA

    home = tmp_path / "home"
    monkeypatch.setenv("KFR_CONFORMANCE_HOME", str(home))
    ca = TestCA(home / "sandbox")
    issued = ca.issue(BANK_ORGNR, "Testbank AS")
    p12 = home / "sandbox" / "banks" / BANK_ORGNR / f"{BANK_ORGNR}.p12"
    p12.parent.mkdir(parents=True)
    p12.write_bytes(issued.pkcs12())
    folder = make_results_dir(tmp_path / "reports", environment="sandbox", kfr_base_url=SANDBOX_URL)
    assert main(["pack", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "C-3-e-post er ikke laget" in out and "sandbox" in out
    record = RunRecord.from_json((folder / "run.json").read_bytes())
    zip_path = folder / pack_file_name(record.bank["orgnr"], record.started_at)
    ca_pem = ca.cert_path
    assert main(["verify", str(zip_path), "--trust", str(ca_pem)]) == 1
    assert "sandkassen" in capsys.readouterr().out
    assert main(["verify", str(zip_path), "--trust", str(ca_pem), "--allow-sandbox"]) == 0
    assert capsys.readouterr().out.startswith("GYLDIG")
    openssl = shutil.which("openssl")
    if openssl:
        done = subprocess.run(
            [openssl, "cms", "-verify", "-binary", "-inform", "DER",
             "-in", str(folder / "manifest.json.p7s"), "-content", str(folder / "manifest.json"),
             "-CAfile", str(ca_pem), "-purpose", "any", "-out", "/dev/null"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_accept_kfr_url_for_a_local_test_environment(tmp_path, creds, monkeypatch, capsys):
    folder = make_results_dir(tmp_path, kfr_base_url=SANDBOX_URL)
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    assert main(["pack", str(folder), "--cert", str(creds["p12"]),
                 "--cert-password-env", "KFR_CERT_PW"]) == 0  # fmt: skip
    assert not (folder / "c3-epost.eml").exists()  # not Bits' test environment: no C-3
    assert "Miljø" in capsys.readouterr().out
    zip_path = next(folder.glob("*.zip"))
    assert main(["verify", str(zip_path), "--trust", str(creds["ca"])]) == 1
    assert main(["verify", str(zip_path), "--trust", str(creds["ca"]),
                 "--accept-kfr-url", SANDBOX_URL]) == 0  # fmt: skip


def test_pack_reads_the_same_profile_as_the_run(tmp_path, creds, monkeypatch, capsys):
    folder = make_results_dir(tmp_path / "reports")
    orgnr = RunRecord.from_json((folder / "run.json").read_bytes()).bank["orgnr"]
    (tmp_path / "kfr-conformance.toml").write_text(
        f'[banks.{orgnr}]\ncert = "creds/bank.p12"\ncert_password_env = "KFR_CERT_PW"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    assert main(["pack", str(folder)]) == 0, capsys.readouterr()
    assert (folder / "manifest.json.p7s").is_file()
    monkeypatch.delenv("KFR_CERT_PW")
    assert main(["pack", str(folder)]) == 2
    assert "KFR_CERT_PW" in capsys.readouterr().err


def test_pack_manual_changes_nothing_unless_the_pack_is_signed(tmp_path, creds, monkeypatch, capsys):
    folder = make_results_dir(tmp_path, cases=(CaseDraft("KFR-21", outcome=Outcome.PENDING, manual=True),))
    watched = ["run.json", "report.html", "KFR-Integrasjonstester-utfylt.xlsx"]
    before = {name: (folder / name).read_bytes() for name in watched}
    manual = tmp_path / "m.toml"
    manual.write_text('[KFR-21]\nstatus = "OK"\nby = "Ola Nordmann"\n', encoding="utf-8")
    # Another bank's certificate: the confirmation is valid, but signing is refused.
    other = shared_pki().other_bank.write_p12(tmp_path / "other.p12", password=b"x")
    monkeypatch.setenv("KFR_OTHER_PW", "x")
    code = main(["pack", str(folder), "--cert", str(other), "--cert-password-env", "KFR_OTHER_PW",
                 "--manual", str(manual)])
    assert code == 2
    assert "tilhører org.nr." in capsys.readouterr().err
    assert {name: (folder / name).read_bytes() for name in watched} == before
    assert not (folder / "manifest.json").exists()
    # With the bank's own certificate the same confirmation lands, with name and time.
    monkeypatch.setenv("KFR_CERT_PW", "hemmelig")
    assert main(["pack", str(folder), "--cert", str(creds["p12"]), "--cert-password-env", "KFR_CERT_PW",
                 "--manual", str(manual)]) == 0
    case = next(c for c in RunRecord.from_json((folder / "run.json").read_bytes()).cases if c.case_id == "KFR-21")
    assert case.confirmed_by == "Ola Nordmann" and case.confirmed_at and case.attested
