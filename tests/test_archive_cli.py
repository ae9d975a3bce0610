"""``kfr-conformance archive …`` as Bits and auditors use it: outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from archive_support import BANKS, cached_pack_set, overwrite

from conformance.cli import main
from conformance.home import HOME_ENV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def packs(tmp_path_factory):
    return cached_pack_set(tmp_path_factory)


@pytest.fixture
def arkiv(tmp_path) -> Path:
    return tmp_path / "arkiv"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_all(capsys, arkiv: Path, packs, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        *extra,
        *map(str, packs.packs.values()),
    )


def test_add_prints_one_line_per_pack_and_a_summary(capsys, arkiv, packs):
    code, out, _ = add_all(capsys, arkiv, packs)
    assert code == 0
    lines = [line for line in out.strip().splitlines() if not line.startswith(" ")]
    assert len(lines) == 7
    assert sum("lagt til" in line for line in lines[:-1]) == 6
    # The pack changed after signing is the same run as its original: noted, not a replay.
    assert out.count("Merk: samme kjøring") == 1 and "GJENBRUKT" not in out
    assert sum("UGYLDIG" in line for line in lines[:-1]) == 2
    assert lines[-1] == "6 lagt til (2 ugyldige), 0 fantes fra før, 0 kunne ikke arkiveres."

    code, out, _ = add_all(capsys, arkiv, packs)
    assert code == 0 and out.count("finnes fra før") == 6
    assert out.strip().endswith(
        "0 lagt til (0 ugyldige), 6 fantes fra før, 0 kunne ikke arkiveres."
    )


def test_allow_sandbox_accepts_the_sandbox_pack(capsys, arkiv, packs):
    sandbox = packs.packs["hostile-sandbox"]
    base = ["archive", "add", "--archive", str(arkiv), "--trust", str(packs.ca_pem)]
    code, out, _ = run(capsys, *base, "--allow-sandbox", str(sandbox))
    assert code == 0 and "(gyldig)" in out


def test_add_without_any_pack_found_is_a_usage_error(capsys, arkiv, tmp_path):
    (tmp_path / "tom").mkdir()
    code, _, err = run(capsys, "archive", "add", "--archive", str(arkiv), str(tmp_path / "tom"))
    assert code == 2 and "Fant ingen pakker" in err


def test_add_exits_2_when_an_input_could_not_be_archived(capsys, arkiv, packs, tmp_path):
    code, out, _ = run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        str(packs.packs["fjord-1"]),
        str(tmp_path / "finnes-ikke.zip"),
    )
    assert code == 2 and "IKKE ARKIVERT" in out and "1 lagt til" in out


def test_bad_trust_file_is_a_clear_error(capsys, arkiv, packs, tmp_path):
    bad = tmp_path / "ikke.pem"
    bad.write_text("hei")
    code, _, err = run(
        capsys,
        "archive",
        "add",
        "--archive",
        str(arkiv),
        "--trust",
        str(bad),
        str(packs.packs["fjord-1"]),
    )
    assert code == 2 and "--trust" in err and "Traceback" not in err


def test_list_shows_a_table_and_filters(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    code, out, _ = run(capsys, "archive", "list", "--archive", str(arkiv))
    assert code == 0
    header, rule, *rows = out.strip().split("\n\n")[0].splitlines()
    assert header.split()[:3] == ["Orgnr", "Bank", "Kjørt"]
    assert set(rule) <= {"-", " "}
    assert len(rows) == 6
    assert out.strip().endswith(
        "6 pakker: 4 gyldige, 0 gyldig signert med gjenbrukt bevis, 2 ugyldige."
    )

    fjord = BANKS[0].orgnr
    _, out, _ = run(capsys, "archive", "list", "--archive", str(arkiv), "--bank", fjord)
    assert out.count(f"{fjord}/") == 3 and BANKS[1].orgnr not in out

    _, out, _ = run(
        capsys, "archive", "list", "--archive", str(arkiv), "--status", "invalid", "--json"
    )
    listed = json.loads(out)
    assert len(listed) == 2 and {e["verdict"] for e in listed} == {"invalid"}

    _, out, _ = run(
        capsys, "archive", "list", "--archive", str(arkiv), "--since", "2026-09-25", "--json"
    )
    assert sorted(e["run_started_at"][:10] for e in json.loads(out)) == [
        "2026-10-01",
        "2026-10-16",
    ]


def test_list_rejects_bad_filters_plainly(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    code, _, err = run(capsys, "archive", "list", "--archive", str(arkiv), "--bank", "123")
    assert code == 2 and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["archive", "list", "--archive", str(arkiv), "--since", "i går"])
    assert exit_info.value.code == 2
    assert "ÅÅÅÅ-MM-DD" in capsys.readouterr().err


def test_list_of_a_folder_that_is_not_an_archive(capsys, tmp_path):
    code, _, err = run(capsys, "archive", "list", "--archive", str(tmp_path / "feil"))
    assert code == 2 and "ikke et arkiv" in err


def test_default_archive_is_under_the_conformance_home(capsys, packs, tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    code, _, _ = run(
        capsys, "archive", "add", "--trust", str(packs.ca_pem), str(packs.packs["fjord-1"])
    )
    assert code == 0
    assert (tmp_path / "home" / "archive" / "index.sqlite3").is_file()


def test_verify_all_exit_codes_and_tampering(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    trust = ["--trust", str(packs.ca_pem)]
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), *trust)
    assert code == 0 and out.strip().endswith("Alt i orden.")

    victim = next(arkiv.glob(f"{BANKS[0].orgnr}/*.zip"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    overwrite(victim, bytes(data))
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), *trust)
    assert code == 1
    assert f"{BANKS[0].orgnr}/{victim.name}: ENDRET" in out and "FEIL FUNNET" in out

    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), *trust, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [p["path"] for p in report["packs"] if p["problem"]] == [
        f"{BANKS[0].orgnr}/{victim.name}"
    ]


def test_verify_all_remembers_the_trust_root_unless_told_to_ignore_it(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    # No --trust: each pack's remembered policy holds the root it was added under.
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv))
    assert code == 0 and "VERIFISERER IKKE LENGER" not in out
    assert "Policy: lagret policy: 6." in out
    # Only today's (empty) options: no root is trusted, so no pack verifies any more.
    code, out, _ = run(
        capsys, "archive", "verify-all", "--archive", str(arkiv), "--ignore-stored-policy"
    )
    assert code == 1 and out.count("VERIFISERER IKKE LENGER") == 4


def test_verify_all_progress_bar_on_request_and_never_in_the_json(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    code, out, err = run(
        capsys,
        "archive",
        "verify-all",
        "--archive",
        str(arkiv),
        "--trust",
        str(packs.ca_pem),
        "--json",
        "--progress",
    )
    assert code == 0 and json.loads(out)["ok"] is True
    assert "Verifiserer [" in err and err.rstrip().endswith("6/6")
    _, _, err = run(
        capsys, "archive", "verify-all", "--archive", str(arkiv), "--trust", str(packs.ca_pem)
    )
    assert err == ""  # stderr is not a terminal here, and --progress was not given


def test_repair_then_verify_all_is_clean(capsys, arkiv, packs):
    add_all(capsys, arkiv, packs)
    victim = next(arkiv.glob(f"{BANKS[1].orgnr}/*.zip"))
    victim.unlink()
    stray = arkiv / BANKS[0].orgnr / (".%s.x.zip.part" % ("0" * 64))
    stray.write_bytes(b"halvferdig")
    trust = ["--trust", str(packs.ca_pem)]
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), *trust)
    assert code == 1 and "RAD UTEN FIL" in out and "MIDLERTIDIG FIL" in out

    code, out, _ = run(capsys, "archive", "repair", "--archive", str(arkiv), *trust)
    assert code == 0 and "Arkivet er konsistent." in out
    assert "ufullstendig midlertidig fil fjernet" in out and "merket som manglende" in out
    code, out, _ = run(capsys, "archive", "verify-all", "--archive", str(arkiv), *trust)
    assert code == 0 and "Mangler (registrert av repair)" in out
    code, out, _ = run(capsys, "archive", "repair", "--archive", str(arkiv), *trust)
    assert "Ingenting å reparere." in out


def test_html_writes_the_site(capsys, arkiv, packs, tmp_path):
    add_all(capsys, arkiv, packs)
    site = tmp_path / "nettsted"
    code, out, _ = run(capsys, "archive", "html", "--archive", str(arkiv), str(site))
    assert code == 0 and "6 pakker, 3 banker, 4 rapporter" in out  # valid packs only
    assert (site / "index.html").is_file()


def test_the_installed_command_line_runs_as_a_program(arkiv, packs):
    """The same through a real process, as the crash test and Bits' scripts run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.cli",
            "archive",
            "add",
            "--archive",
            str(arkiv),
            "--trust",
            str(packs.ca_pem),
            str(packs.packs["fjord-1"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 lagt til" in result.stdout


def test_trust_root_may_be_der_as_for_verify(capsys, arkiv, packs, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    der = tmp_path / "ca.der"
    der.write_bytes(packs.ca.certificate.public_bytes(Encoding.DER))
    add_all(capsys, arkiv, packs)
    code, out, _ = run(
        capsys, "archive", "verify-all", "--archive", str(arkiv), "--trust", str(der)
    )
    assert code == 0 and "Alt i orden." in out
