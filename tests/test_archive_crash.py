"""Kill ``kfr-conformance archive add`` at random moments; nothing may be lost.

Each round starts a real ``archive add`` process over many packs and SIGKILLs it after a
random delay somewhere inside the time a full add takes. Then, as an operator would,
``verify-all`` and ``repair`` run, and afterwards:

- the archive is consistent (every pack file has its row, every row its file, no temp files);
- every pack the killed process had reported as added is there, byte for byte;
- finishing the import adds exactly the rest, each pack once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from archive_support import BANKS, make_pack, sha256_of
from pack_support import TinyCA

from conformance.archive.store import Archive
from conformance.cli import main

REPO = Path(__file__).resolve().parents[1]
PACKS = 30
ROUNDS = 12
SEED = int(os.environ.get("KFR_CRASH_SEED", "20261123"))


@pytest.fixture(scope="module")
def many_packs(tmp_path_factory):
    work = tmp_path_factory.mktemp("crash-packs")
    ca = TinyCA.create("KFR Krasj Test Root CA", key_index=20)
    ca_pem = ca.write_pem(work / "ca.pem")
    base = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
    zips = [
        make_pack(
            work / "runs", ca, BANKS[i % 2], started_at=base + dt.timedelta(days=i), seed=100 + i
        )
        for i in range(PACKS)
    ]
    return ca_pem, zips


def _add_command(archive: Path, ca_pem: Path, zips: list[Path]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "conformance.cli",
        "archive",
        "add",
        "--archive",
        str(archive),
        "--trust",
        str(ca_pem),
        *map(str, zips),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _claimed(stdout: str, zips: list[Path]) -> set[Path]:
    """Packs the killed process said it had added (it prints one flushed line per pack)."""
    by_name = {str(z): z for z in zips}
    out = set()
    for line in stdout.splitlines():
        source, _, rest = line.partition(": ")
        if rest.startswith("lagt til") and source in by_name:
            out.add(by_name[source])
    return out


def _pack_files(archive: Path) -> list[Path]:
    return [p for p in archive.glob("*/*") if p.is_file()]


@pytest.mark.slow
def test_add_killed_at_random_moments_loses_nothing(many_packs, tmp_path, capsys):
    ca_pem, zips = many_packs
    rng = random.Random(SEED)
    expected = {sha256_of(z): z for z in zips}

    started = time.monotonic()
    full = subprocess.Popen(
        _add_command(tmp_path / "maal", ca_pem, zips),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    full.stdout.readline()
    first_line = time.monotonic() - started
    full.communicate(timeout=120)
    full_time = time.monotonic() - started
    assert full.returncode == 0
    import_time = full_time - first_line  # interpreter start-up is most of a short run

    partial_rounds = repaired_rounds = 0
    for round_no in range(ROUNDS):
        archive = tmp_path / f"arkiv-{round_no}"
        process = subprocess.Popen(
            _add_command(archive, ca_pem, zips),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        head = ""
        if round_no % 2:  # anywhere: start-up, creating the index, the first pack …
            time.sleep(rng.uniform(0.6 * first_line, full_time))
        else:  # … or once the import is under way, at a random point inside it
            head = process.stdout.readline()
            time.sleep(rng.uniform(0.0, import_time))
        process.send_signal(signal.SIGKILL)
        stdout, _ = process.communicate(timeout=60)
        stdout = head + stdout
        claimed = _claimed(stdout, zips)
        partial_rounds += 0 < len(claimed) < len(zips)
        context = f"round {round_no} (seed {SEED}): {len(claimed)} reported added"

        if not (archive / "index.sqlite3").exists():
            assert _pack_files(archive) == [], context  # killed before the archive existed
            continue
        trust = ["--archive", str(archive), "--trust", str(ca_pem)]
        main(["archive", "verify-all", *trust, "--json"])
        before = json.loads(capsys.readouterr().out)
        assert main(["archive", "repair", *trust, "--json"]) == 0, context
        repair = json.loads(capsys.readouterr().out)
        repaired_rounds += bool(repair["actions"])
        if before["consistency"]["ok"]:
            assert repair["actions"] == [], context

        assert main(["archive", "verify-all", *trust, "--json"]) == 0, context
        after = json.loads(capsys.readouterr().out)
        assert after["ok"] and after["consistency"]["ok"], (context, after)

        with Archive.open(archive) as opened:
            entries = {e.sha256: e for e in opened.entries()}
            for pack in claimed:  # nothing reported as added is lost
                entry = entries.get(sha256_of(pack))
                assert entry is not None, (context, pack.name)
                assert opened.file_of(entry).read_bytes() == pack.read_bytes(), context
            assert len(_pack_files(archive)) == len(entries), context  # no file without row
            assert set(entries) <= set(expected), context

        # finishing the import adds exactly the rest
        assert main(["archive", "add", *trust, *map(str, zips)]) == 0, context
        capsys.readouterr()
        with Archive.open(archive) as opened:
            assert {e.sha256 for e in opened.entries()} == set(expected), context
            assert all(e.is_valid for e in opened.entries()), context
        assert len(_pack_files(archive)) == len(zips), context

    print(f"{ROUNDS} kills, {partial_rounds} mid-import, {repaired_rounds} needed repair")
    assert partial_rounds > 0, "no kill landed inside the import; the test proved nothing"
