"""Helpers for the core-system run tests: the reference core system as a bank's command.

``CoreSystemBank`` registers a bank on a running sandbox exactly where ``pytest --bank``
will look for its sandbox credentials, writes the reference core system's ``core.json``
(its own Maskinporten client with the bank's certificate) and gives the ``--core-system``
command that runs it — one process per action, as a bank's CLI would.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.ids import synthetic_orgnr
from conformance.models import RunRecord
from conformance.sandbox import RunningSandbox
from conformance.sandbox.credentials import issue_bank_credentials

ROOT = Path(__file__).resolve().parent.parent
REF = Path(__file__).with_name("core_system_ref.py")
SHEET = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"
MANUAL = ("KFR-21", "KFR-22")
# Rows the reference core system performs in the bundled sheet.
CORE_ROWS = ("KFR-02", "KFR-03", "KFR-04", "KFR-05", "KFR-07", "KFR-08", "KFR-10", "KFR-11")


@dataclass
class CoreSystemBank:
    sandbox: RunningSandbox
    orgnr: str
    folder: Path
    credentials: Any

    @classmethod
    def register(cls, sandbox: RunningSandbox, folder: Path) -> CoreSystemBank:
        orgnr = synthetic_orgnr()
        creds = issue_bank_credentials(sandbox.data_dir, orgnr, f"Testbank {orgnr} AS",
                                       sandbox.data_dir / "banks" / orgnr)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(sandbox, orgnr, folder, creds)

    def config(self, variant: str = "good") -> Path:
        """The reference core system's own settings (no KFR URL: that is the gateway's,
        given on its command line through ``{kfr_base_url}``)."""
        path = self.folder / f"core-{variant}.json"
        path.write_text(json.dumps({
            "issuer": self.sandbox.maskinporten_issuer, "client_id": self.credentials.client_id,
            "cert": str(self.credentials.cert_pem), "key": str(self.credentials.key_pem),
            "bank": self.orgnr, "state_dir": str(self.folder / f"state-{variant}"),
            "variant": variant, "backoff_s": 0.15,
        }))
        return path

    def command(self, variant: str = "good") -> str:
        return f"{sys.executable} {REF} --config {self.config(variant)} --kfr-url {{kfr_base_url}}"

    def profile(self, **core_system: Any) -> Path:
        """A profile with a [core_system] table (e.g. a short observation time)."""
        lines = [f"[banks.{self.orgnr}.core_system]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in core_system.items()]
        path = self.folder / "kfr-conformance.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def manual_file(self) -> Path:
        path = self.folder / "manual.json"
        path.write_text(json.dumps({c: {"status": "OK", "by": "Kari Nordmann", "comment": "utført"} for c in MANUAL}))
        return path

    def args(self, reports: Path, *extra: str) -> list[str]:
        return [
            f"--bank={self.orgnr}", f"--kfr-base-url={self.sandbox.kfr_base_url}",
            f"--maskinporten-url={self.sandbox.maskinporten_issuer}",
            f"--sandbox-data-dir={self.sandbox.data_dir}", f"--reports-dir={reports}",
            f"--sheet={SHEET}", "-p", "no:cacheprovider", *extra,
        ]


def run_dir_of(reports: Path, orgnr: str) -> Path:
    runs = sorted((reports / orgnr).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def record_of(run_dir: Path) -> RunRecord:
    return RunRecord.from_json((run_dir / "run.json").read_bytes())


def outcomes(run_dir: Path) -> dict[str, str]:
    return {c.case_id: str(c.outcome) for c in record_of(run_dir).cases}


def evidence(run_dir: Path, case_id: str) -> list[dict[str, Any]]:
    return json.loads((run_dir / "evidence" / f"{case_id}.json").read_text())["exchanges"]


def robustness(run_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((run_dir / "robustness.json").read_text())
    return {row["id"]: row for row in data["rows"]}
