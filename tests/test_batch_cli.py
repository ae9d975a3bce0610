"""``kfr-conformance batch``: build and check from the command line, and upload + confirm
against a real sandbox over HTTP — including an upload killed with SIGKILL mid-way."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from conformance import ids
from conformance.cli import main
from conformance.sandbox import Faults

REPO = Path(__file__).resolve().parents[1]
PASSWORD_VAR = "KFR_BATCH_TEST_PASSWORD"


def _orgnrs(count: int, first: int = 3_000_000) -> list[str]:
    """Valid organisation numbers in the unassigned 3xxxxxxxx range, quickly."""
    out = []
    weights = (3, 2, 7, 6, 5, 4, 3, 2)
    base = first
    while len(out) < count:
        digits = f"3{base:07d}"
        check = (11 - sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 11) % 11
        if check != 10:
            out.append(digits + str(check))
        base += 1
    return out


def _build(tmp_path: Path, numbers: list[str], *extra: str, name: str = "filer") -> Path:
    export = tmp_path / f"{name}.csv"
    export.write_text("fnr;startdato\n" + "\n".join(f"{n};01.03.2020" for n in numbers) + "\n")
    out = tmp_path / name
    assert main(["batch", "build", "--in", str(export), "--out-dir", str(out),
                 "--allow-synthetic", *extra]) == 0
    return out


# ---------------------------------------------------------------- build and check


def test_build_prints_counts_and_exit_code_says_lines_were_rejected(tmp_path: Path, capsys) -> None:
    export = tmp_path / "eksport.csv"
    good = _orgnrs(3)
    export.write_text(f"orgnr,status\n{good[0]},aktiv\n{good[1]},avsluttet\n{good[0]},aktiv\n"
                      f"{ids.invalid_check_digit(good[2])},aktiv\n")
    code = main(["batch", "build", "--in", str(export), "--out-dir", str(tmp_path / "ut"),
                 "--allow-synthetic"])
    out = capsys.readouterr().out
    assert code == 1  # built, but a line was rejected
    assert "Kundeforhold i filene: 1 (fødselsnummer 0, D-nummer 0, organisasjonsnummer 1)" in out
    assert "Avsluttede kundeforhold utelatt: 1" in out
    assert "Duplikater fjernet: 1 linjer" in out
    assert "linje 5: ugyldig kontrollsiffer (organisasjonsnummer)" in out
    assert (tmp_path / "ut" / "kfr-batch-0001.txt").read_text() == good[0]
    summary = json.loads((tmp_path / "ut" / "sammendrag.json").read_text())
    assert summary["unique_ids"] == 1 and summary["rejected"] == 1 and summary["announcement"] is None


def test_bad_input_is_a_plain_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    assert main(["batch", "build", "--in", str(tmp_path / "mangler.csv"), "--out-dir",
                 str(tmp_path / "ut")]) == 2
    assert "Kan ikke lese eksporten" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("a;b\n1;2\n")
    assert main(["batch", "build", "--in", str(tmp_path / "x.csv"), "--out-dir", str(tmp_path / "ut"),
                 "--columns", "id"]) == 2
    assert "--columns" in capsys.readouterr().err


def test_over_100000_drafts_the_announcement_with_days_and_volumes(tmp_path: Path, capsys) -> None:
    numbers = _orgnrs(100_001)
    export = tmp_path / "liste.txt"
    export.write_text("\n".join(numbers))
    code = main(["batch", "build", "--in", str(export), "--out-dir", str(tmp_path / "ut"),
                 "--allow-synthetic", "--bank", "311000004", "--bank-name", "Eksempelbanken ASA",
                 "--contact", "kari@eksempelbanken.no", "--start-date", "2026-12-04",  # a Friday
                 "--per-day", "60000", "--max-bytes", "200000"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Kunngjøring til DSOP@bits.no" in out
    message = BytesParser(policy=policy.default).parsebytes(
        (tmp_path / "ut" / "d3-kunngjoring.eml").read_bytes())
    assert message["To"] == "DSOP@bits.no" and message["From"] == "kari@eksempelbanken.no"
    assert "Eksempelbanken ASA (311000004)" in message["Subject"]
    body = message.get_content()
    assert "Totalt 100 001 kundeforhold i 6 batchfiler" in body
    # 20 000 IDs a file (200 000 bytes): three files on Friday, the rest after the weekend.
    assert "fredag 2026-12-04: 60 000 kundeforhold, filene 1–3" in body
    assert "mandag 2026-12-07: 40 001 kundeforhold, filene 4–6" in body
    assert "organisasjonsnummer: 100 001" in body
    assert "6 min 40 s i alt" in body  # 100 001 IDs at 250 per second
    assert not message.is_multipart(), "the files hold personal data and are not attached"
    summary = json.loads((tmp_path / "ut" / "sammendrag.json").read_text())
    assert [d["ids"] for d in summary["plan"]] == [60_000, 40_001]
    assert summary["announcement"] == "d3-kunngjoring.eml"


def test_check_command_exit_codes_and_report(tmp_path: Path, capsys) -> None:
    out = _build(tmp_path, _orgnrs(50), "--max-bytes", "200")
    assert main(["batch", "check", str(out), "--allow-synthetic"]) == 0
    assert "Filene følger KFRs format" in capsys.readouterr().out
    assert main(["batch", "check", str(out)]) == 1
    assert "syntetisk test-ID 50" in capsys.readouterr().out  # without --allow-synthetic
    bad = tmp_path / "fra-andre.txt"
    first = (out / "kfr-batch-0001.txt").read_text().split(",")[0].partition("#")[0]
    bad.write_text(first + ",12345")
    report = tmp_path / "funn.csv"
    assert main(["batch", "check", str(out), str(bad), "--report", str(report), "--allow-synthetic"]) == 1
    text = capsys.readouterr().out
    rows = report.read_text(encoding="utf-8-sig").splitlines()
    assert rows[0] == "fil;element;verdi;årsak;alvor"
    assert sorted(rows[1:]) == sorted([
        f"fra-andre.txt;1;{first};duplikat: står også som element 1 i kfr-batch-0001.txt;feil",
        "fra-andre.txt;2;12345;5 siffer (9 for organisasjonsnummer, 11 for fødsels-/D-nummer);feil",
    ])
    assert "Filene har 2 feil" in text


# ---------------------------------------------------------------- upload and confirm


def _bank_args(sb, creds) -> list[str]:
    return ["--bank", creds.orgnr, "--kfr-base-url", sb.kfr_base_url,
            "--maskinporten-url", sb.maskinporten_issuer, "--client-id", creds.client_id,
            "--cert", str(creds.p12), "--cert-password-env", PASSWORD_VAR]


@pytest.fixture
def bank_env(bank, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PASSWORD_VAR, bank.password or "")
    return bank


def _batches(sb, fid: str) -> list[tuple[str, int]]:
    with sqlite3.connect(sb.data_dir / "sandbox.sqlite3") as conn:
        return conn.execute(
            "SELECT correlation_id, total FROM batches WHERE fid = ? ORDER BY id", (fid,)
        ).fetchall()


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _upload_command(folder: Path, sb, creds, *extra: str) -> list[str]:
    return [sys.executable, "-m", "conformance.cli", "batch", "upload", str(folder),
            *_bank_args(sb, creds), "--allow-synthetic", *extra]


def _kill_when(process: subprocess.Popen, seen: list[str], predicate) -> None:
    """Read the child's output line by line; SIGKILL it as soon as ``predicate(lines)``."""
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            seen.append(line)
            if predicate(seen):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=30)
    finally:
        watchdog.cancel()
    assert process.returncode == -signal.SIGKILL, "".join(seen)


@pytest.mark.slow
def test_upload_killed_mid_way_and_restarted_ingests_every_id_once(
    sandbox, bank_env, tmp_path: Path, capsys
) -> None:
    rng = random.Random(2026)
    numbers = sorted({ids.synthetic_fodselsnummer(rng) for _ in range(600)})
    # 22 bytes an entry plus a comma: 100 IDs a file, 6 files.
    folder = _build(tmp_path, numbers, "--max-bytes", "2299")
    capsys.readouterr()
    files = sorted(folder.glob("kfr-batch-*.txt"))
    assert len(files) == 6
    # Pacing at 200 IDs/s: the uploader waits ~0.5 s after each file — that is where we kill it.
    command = _upload_command(folder, sandbox, bank_env, "--ingest-rate", "200")
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    _kill_when(process, seen, lambda lines: sum("godtatt (201" in x for x in lines) == 2
               and lines[-1].startswith("Venter"))
    state_path = folder / f"opplasting-{bank_env.orgnr}.json"
    state = json.loads(state_path.read_text())
    assert [e["state"] for e in state["files"]] == ["accepted", "accepted"]
    assert len(_batches(sandbox, bank_env.orgnr)) == 2

    again = subprocess.run(command, env=_subprocess_env(), capture_output=True, text=True, timeout=90)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("allerede godtatt") == 2
    assert again.stdout.count("godtatt (201") == 4

    state = json.loads(state_path.read_text())
    assert [e["state"] for e in state["files"]] == ["accepted"] * 6
    assert [e["attempts"] for e in state["files"]] == [1] * 6
    batches = _batches(sandbox, bank_env.orgnr)
    assert [total for _, total in batches] == [100] * 6, "each file reached KFR exactly once"
    assert [cid for cid, _ in batches] == [e["correlation_id"] for e in state["files"]]
    assert sandbox.wait_for_ingestion(timeout=30)
    assert sandbox.relationship_count(bank_env.orgnr) == 600

    code = main(["batch", "confirm", str(folder), *_bank_args(sandbox, bank_env), "--rate", "2000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Slått opp: 600 av 600; synlige i KFR: 600; ikke synlige: 0." in out


@pytest.mark.slow
def test_unknown_outcome_needs_resend_unknown(sandbox, bank_env, tmp_path: Path, capsys) -> None:
    rng = random.Random(77)
    numbers = sorted({ids.synthetic_d_nummer(rng) for _ in range(200)})
    folder = _build(tmp_path, numbers, "--max-bytes", "2299")
    capsys.readouterr()
    state_path = folder / f"opplasting-{bank_env.orgnr}.json"
    command = _upload_command(folder, sandbox, bank_env, "--ingest-rate", "100000")
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen: list[str] = []

    def hold_second_file(lines: list[str]) -> bool:
        if "godtatt (201" in lines[-1]:
            sandbox.set_faults(Faults(latency_ms=3000))  # the next request hangs in KFR
        return "[2/2]" in lines[-1] and "sender" in lines[-1]

    _kill_when(process, seen, hold_second_file)
    sandbox.set_faults(Faults())
    state = json.loads(state_path.read_text())
    assert [e["state"] for e in state["files"]] == ["accepted", "sending"]

    stopped = subprocess.run(command, env=_subprocess_env(), capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 1
    assert "Utfallet er ukjent" in stopped.stderr and "--resend-unknown" in stopped.stderr
    assert "køen dobles" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert json.loads(state_path.read_text())["files"][1]["state"] == "sending"

    resent = subprocess.run([*command, "--resend-unknown"], env=_subprocess_env(),
                            capture_output=True, text=True, timeout=60)
    assert resent.returncode == 0, resent.stdout + resent.stderr
    state = json.loads(state_path.read_text())
    assert [e["state"] for e in state["files"]] == ["accepted", "accepted"]
    assert state["files"][1]["attempts"] == 2
    assert sandbox.wait_for_ingestion(timeout=30)
    # Whether or not the first send arrived, every customer is in KFR once.
    assert sandbox.relationship_count(bank_env.orgnr) == len(numbers)
    assert main(["batch", "confirm", str(folder), *_bank_args(sandbox, bank_env), "--rate", "2000"]) == 0


def test_a_refused_file_is_sent_again_on_the_next_run(sandbox, bank_env, tmp_path: Path, capsys) -> None:
    folder = _build(tmp_path, _orgnrs(30, first=4_000_000), "--max-bytes", "200")
    capsys.readouterr()
    sandbox.set_faults(Faults(fail_next=1))  # the first batch gets 500 KFR-007
    args = ["batch", "upload", str(folder), *_bank_args(sandbox, bank_env), "--allow-synthetic",
            "--ingest-rate", "100000"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "tok ikke imot filen" in err
    state_path = folder / f"opplasting-{bank_env.orgnr}.json"
    assert [e["state"] for e in json.loads(state_path.read_text())["files"]] == ["refused"]
    assert main(args) == 0
    entries = json.loads(state_path.read_text())["files"]
    assert all(e["state"] == "accepted" for e in entries) and entries[0]["attempts"] == 2
    assert len(_batches(sandbox, bank_env.orgnr)) == len(entries)


def test_production_is_refused_before_anything_happens(tmp_path: Path, capsys) -> None:
    folder = _build(tmp_path, _orgnrs(5), "--max-bytes", "200")
    capsys.readouterr()
    cert = tmp_path / "cert.p12"
    cert.write_bytes(b"not used")
    for url_option in (["--kfr-base-url", "https://api.bits.no/kar-ws/api/v1"],
                       ["--maskinporten-url", "https://maskinporten.no/"]):
        code = main(["batch", "upload", str(folder), "--bank", "311000004", "--kfr-env", "test",
                     "--client-id", "x", "--cert", str(cert), "--allow-synthetic", *url_option])
        assert code == 2
        assert "produksjonsmiljø" in capsys.readouterr().err
    assert not list(folder.glob("opplasting-*")), "no state, no lock: nothing was started"


def test_invalid_files_are_not_uploaded(sandbox, bank_env, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "filer"
    bad.mkdir()
    (bad / "kfr-batch-0001.txt").write_text("12345678901")
    assert main(["batch", "upload", str(bad), *_bank_args(sandbox, bank_env)]) == 2
    assert "ingenting er sendt" in capsys.readouterr().err
    assert _batches(sandbox, bank_env.orgnr) == []


def test_confirm_reports_ids_not_visible_and_resumes(sandbox, bank_env, tmp_path: Path, capsys) -> None:
    uploaded = _orgnrs(40, first=5_000_000)
    never = _orgnrs(10, first=6_000_000)
    up = _build(tmp_path, uploaded, name="lastet")
    assert main(["batch", "upload", str(up), *_bank_args(sandbox, bank_env), "--allow-synthetic",
                 "--ingest-rate", "100000"]) == 0
    assert sandbox.wait_for_ingestion(timeout=30)
    not_up = _build(tmp_path, never, name="ikke-lastet")
    capsys.readouterr()
    both = [str(up / "kfr-batch-0001.txt"), str(not_up / "kfr-batch-0001.txt")]
    state = tmp_path / "bekreft.json"
    common = ["batch", "confirm", *both, *_bank_args(sandbox, bank_env), "--state", str(state),
              "--rate", "1000", "--missing-out", str(tmp_path / "mangler.csv")]
    assert main(common) == 1
    out = capsys.readouterr().out
    assert "synlige i KFR: 40; ikke synlige: 10." in out
    missing = (tmp_path / "mangler.csv").read_text().splitlines()
    assert sorted(line.split(";")[0] for line in missing[1:]) == sorted(never)

    # A second run looks up only the missing ones again.
    assert main(common) == 1
    assert "slår opp igjen de 10 som manglet" in capsys.readouterr().out

    # A sample is drawn once and kept: a resumed run continues the same sample.
    sample_state = tmp_path / "utvalg.json"
    sample = ["batch", "confirm", *both, *_bank_args(sandbox, bank_env), "--state",
              str(sample_state), "--sample", "20", "--seed", "5", "--rate", "1000",
              "--missing-out", str(tmp_path / "m2.csv")]
    main(sample)
    data = json.loads(sample_state.read_text())
    assert data["planned"] == 20 and data["checked"] == 20 and data["seed"] == 5
    assert data["visible"] + len(data["missing"]) == 20
    data["checked"], data["visible"], data["missing"] = 5, 5 - min(5, len(data["missing"])), data["missing"][:0]
    sample_state.write_text(json.dumps(data))
    capsys.readouterr()
    main(sample)
    out = capsys.readouterr().out
    assert "Fortsetter etter 5 av 20 oppslag." in out
    assert json.loads(sample_state.read_text())["checked"] == 20
    # Other choices than the stored ones are refused rather than mixed in.
    assert main([*sample[:-6], "--sample", "21", "--rate", "1000"]) == 2
    assert "--restart" in capsys.readouterr().err
