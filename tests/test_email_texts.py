"""The words of the C-3 e-mail and of the reasons it is withheld: redacted, one line where
a header needs one, no control characters, Norwegian outcome words only."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import jwt
import pytest

from conformance.models import CaseResult, Expectation, Outcome, RunRecord
from conformance.pack.email import build_email, email_blockers

TOKEN = jwt.encode({"scope": "bits:kundeforhold.write", "sub": "311000004"}, "k" * 32)
RAW_CODES = re.compile(r"\b(passed|failed|error|not_run|not_automated|pending)\b")


def _record(*cases: CaseResult, bank_name: str = "Testbank AS", tester: str = "Kari") -> RunRecord:
    return RunRecord(
        run_id="20261123T090000Z-abc123",
        bank={"orgnr": "311000004", "name": bank_name},
        environment={"name": "test", "kfr_base_url": "https://preprod.api.bits.no/kar-ws/api/v1",
                     "maskinporten_issuer": "https://test.maskinporten.no/"},
        sheet={"file_name": "KFR-Integrasjonstester.xlsx", "version": "1.0", "sha256": "0" * 64},
        runner={"version": "0.1.0", "python": "3.11", "platform": "Linux"},
        attestation={"tester": tester, "role": "IT-ansvarlig"},
        started_at="2026-11-23T09:00:00Z",
        finished_at="2026-11-23T09:03:00Z",
        cases=list(cases),
    )


def _case(outcome: Outcome, message: str = "", **extra: object) -> CaseResult:
    return CaseResult(case_id="KFR-02", title="Registrer kundeforhold",
                      expected=Expectation("HTTP 201", status=201), outcome=outcome,
                      message=message, **extra)


def _email(record: RunRecord, tmp_path: Path, contact: str | None = None):
    pack = tmp_path / "311000004-KFR-integrasjonstest-2026-11-23.zip"
    pack.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    raw = build_email(record, pack, contact=contact).as_bytes()
    return BytesParser(policy=policy.default).parsebytes(raw), raw


def test_a_token_echoed_in_a_message_never_reaches_the_blockers() -> None:
    record = _record(
        _case(Outcome.FAILED, f'KFR svarte 401: {{"errorMessage": "invalid token {TOKEN}"}}'),
        _case(Outcome.ERROR, actual=f"Authorization: Bearer {TOKEN}"),
    )
    blockers = email_blockers(record)
    assert len(blockers) == 3  # two rows and the command that reruns the error row
    assert all(TOKEN not in line and TOKEN.split(".")[1] not in line for line in blockers)
    assert "[REDACTED]" in blockers[0] and "invalid token" in blockers[0]


def test_secrets_in_names_never_reach_the_email(tmp_path: Path) -> None:
    record = _record(_case(Outcome.PASSED), bank_name=f"Bank {TOKEN}", tester=f"Kari {TOKEN}")
    message, raw = _email(record, tmp_path, contact=f"kari@bank.example {TOKEN}")
    assert TOKEN.encode() not in raw and TOKEN.split(".")[1].encode() not in raw
    assert "Bank [REDACTED]" in str(message["Subject"])
    assert "Testet av: Kari [REDACTED]" in message.get_body(("plain",)).get_content()


def test_a_line_break_in_a_name_adds_no_header(tmp_path: Path) -> None:
    record = _record(_case(Outcome.PASSED), bank_name="Testbank AS\r\nBcc: angriper@example.com")
    message, _ = _email(record, tmp_path, contact="kari@bank.example\nBcc: angriper@example.com")
    assert message["Bcc"] is None
    assert message["Subject"] == (
        "KFR integrasjonstest fullført – Testbank AS Bcc: angriper@example.com (311000004)"
    )
    assert "\n" not in str(message["From"])


def test_control_characters_are_shown_not_sent(tmp_path: Path) -> None:
    record = _record(_case(Outcome.FAILED, "farge \x1b[31mrød\x1b[0m og NUL \x00"))
    (line,) = email_blockers(record)
    assert "\x1b" not in line and "\x00" not in line
    assert "farge \\x1b[31mrød\\x1b[0m og NUL \\x00" in line


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.PASSED])
def test_blockers_say_outcomes_in_norwegian(outcome: Outcome) -> None:
    record = _record(_case(outcome, manual=outcome is Outcome.PENDING))
    blockers = email_blockers(record)
    assert blockers and RAW_CODES.findall(" ".join(blockers)) == []


def test_rows_the_environment_failed_or_that_did_not_run_get_one_rerun_command() -> None:
    """The rerun stays inside the run (one pack covers every row): --resume with the run id
    and exactly the rows that need it, never the rows that passed or failed."""
    from dataclasses import replace

    rows = [replace(_case(outcome), case_id=f"KFR-{n:02d}")
            for n, outcome in enumerate((Outcome.PASSED, Outcome.ERROR, Outcome.FAILED, Outcome.NOT_RUN), 1)]
    blockers = email_blockers(_record(*rows))
    assert blockers[-1].endswith(
        'pytest --bank=311000004 --resume 20261123T090000Z-abc123 -k "KFR-02 or KFR-04"')
    assert sum("--resume" in line for line in blockers) == 1
    assert not any("--resume" in line for line in email_blockers(_record(rows[0], rows[2])))
