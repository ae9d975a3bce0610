"""The C-3 e-mail to Bits: "our integration test is complete and successful".

Onboarding step C-3 is an e-mail to DSOP@bits.no saying the bank is ready for production,
with the completed test attached. It is written only when it would be true — every case
passed (manual rows confirmed by a named person) against KFR's ``test`` environment —
otherwise ``email_blockers`` says, case by case, what stands in the way.

Every free text that goes into the e-mail or a blocker line (bank name, tester, contact,
case titles, KFR's messages) passes ``conformance.evidence.redact_text`` first — a token
echoed in an error message never reaches Bits' inbox — and loses control characters;
header values (subject, sender) are kept to one line, so a line break in a profile's bank
name cannot add headers or stop the e-mail from being written.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from conformance.atomic import atomic_write_bytes
from conformance.errors import PackError, UsageError
from conformance.evidence import redact_text
from conformance.models import Outcome, RunRecord
from conformance.pack.manifest import EMAIL_NAME, parse_time

BITS_ADDRESS = "DSOP@bits.no"
NO_CONTACT = "ikke oppgitt"
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MAX_EMAIL_BYTES = 256 * 1024 * 1024


# Control characters other than line feed and tab: shown as \xNN, never sent.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _text(value: object) -> str:
    """Free text for the e-mail body: redacted, control characters made visible."""
    text = redact_text("" if value is None else str(value))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _line(value: object) -> str:
    """Free text for one line (a header, a list item): as ``_text``, whitespace collapsed."""
    return " ".join(_text(value).split())


def _case_label(case) -> str:
    case_id = _line(case.case_id)
    return f"{case_id} «{_line(case.title)}»" if case.title else case_id


def email_blockers(record: RunRecord) -> list[str]:
    """Why the C-3 e-mail may not be sent, one line per reason (Norwegian); empty = allowed."""
    blockers: list[str] = []
    environment = record.environment.get("name", "")
    if environment != "test":
        blockers.append(
            f"Kjøringen gikk mot «{_line(environment) or 'ukjent'}» "
            f"({_line(record.environment.get('kfr_base_url', ''))}), ikke KFRs testmiljø; "
            "C-3 krever en vellykket kjøring mot testmiljøet (--kfr-env test)."
        )
    if not record.cases:
        blockers.append("Kjøringen har ingen testtilfeller.")
    for case in record.cases:
        label = _case_label(case)
        detail = _line(case.message or case.actual)
        if case.outcome is Outcome.PASSED:
            if case.manual and not case.confirmed_by:
                blockers.append(f"{label}: manuell rad uten navn på den som bekreftet (--manual).")
        elif case.outcome is Outcome.FAILED:
            blockers.append(f"{label}: feilet – {detail}" if detail else f"{label}: feilet.")
        elif case.outcome is Outcome.ERROR:
            blockers.append(
                f"{label}: feil i miljøet ({detail or 'ukjent'}); kjør raden på nytt (se nederst)."
            )
        elif case.outcome is Outcome.NOT_AUTOMATED:
            blockers.append(
                f"{label}: ikke automatisert – utfør det manuelt og bekreft med --manual."
            )
        elif case.outcome is Outcome.PENDING:
            blockers.append(f"{label}: manuell rad venter på bekreftelse (--manual).")
        elif case.outcome is Outcome.NOT_RUN:
            blockers.append(
                f"{label}: ikke kjørt denne gangen (-k, --lf eller avbrutt); kjør raden (se nederst)."
            )
    if rerun := [c.case_id for c in record.cases if c.outcome in (Outcome.ERROR, Outcome.NOT_RUN)]:
        blockers.append(rerun_advice(record, rerun))
    return blockers


def rerun_advice(record: RunRecord, case_ids: list[str]) -> str:
    """The one command that runs these rows again inside the same run, so that one pack
    still covers every row (and the 10 MB row is not sent again when it already passed)."""
    selection = " or ".join(_line(case_id) for case_id in case_ids)
    return (
        f"Kjør {'raden' if len(case_ids) == 1 else 'radene'} på nytt i samme kjøring: "
        f'pytest --bank={_line(record.bank.get("orgnr", ""))} --resume {_line(record.run_id)} -k "{selection}"'
    )


def find_filled_sheet(results_dir: Path) -> Path | None:
    found = sorted(p for p in results_dir.glob("*-utfylt.xlsx") if p.is_file())
    return found[0] if found else None


def _run_time(record: RunRecord) -> str:
    try:
        start, end = parse_time(record.started_at), parse_time(record.finished_at)
    except ValueError:
        return f"{record.started_at} – {record.finished_at}"
    minutes = max(round((end - start).total_seconds() / 60), 0)
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC ({minutes} min)"


def email_body(record: RunRecord, *, pack_name: str, sheet_name: str | None, contact: str) -> str:
    bank = _line(record.bank.get("name") or record.bank["orgnr"])
    orgnr = _line(record.bank["orgnr"])
    total = len(record.cases)
    manual = sum(1 for c in record.cases if c.manual)
    tester = _line(record.attestation.get("tester")) or NO_CONTACT
    role = _line(record.attestation.get("role"))
    contact = _line(contact)
    pack_name = _line(pack_name)
    sheet_name = _line(sheet_name) if sheet_name else None
    attachments = [
        f"- {pack_name}: signert resultatpakke (kontrolleres med «kfr-conformance verify»)"
    ]
    if sheet_name:
        attachments.append(f"- {sheet_name}: det utfylte testarket")
    lines = [
        "Hei,",
        "",
        f"{bank} (org.nr. {orgnr}) har gjennomført KFR-integrasjonstesten (onboarding-steg C-2)",
        "mot KFRs testmiljø, og alle testtilfellene er bestått. Integrasjonstesten er dermed",
        "fullført og vellykket, og banken er klar for produksjon (onboarding-steg C-3).",
        "",
        "Oppsummering:",
        f"- Testtilfeller: {total} av {total} bestått"
        + (f" (herav {manual} manuelt bekreftet)" if manual else ""),
        f"- Testark: {_line(record.sheet.get('file_name', ''))}, "
        f"versjon {_line(record.sheet.get('version', ''))}, "
        f"SHA-256 {_line(record.sheet.get('sha256', ''))}",
        f"- Miljø: {_line(record.environment.get('name', ''))} "
        f"({_line(record.environment.get('kfr_base_url', ''))})",
        f"- Kjøring: {_line(_run_time(record))}, kjørings-ID {_line(record.run_id)}",
        f"- Testet av: {tester}" + (f" ({role})" if role else ""),
        f"- Kontaktperson: {contact}",
        "",
        "Vedlegg:",
        *attachments,
        "",
        "Med vennlig hilsen",
        bank,
        "",
    ]
    return "\n".join(lines)


def build_email(
    record: RunRecord,
    pack_zip: Path,
    *,
    filled_sheet: Path | None = None,
    contact: str | None = None,
    now: dt.datetime | None = None,
) -> EmailMessage:
    contact = _line(contact or record.attestation.get("contact")) or NO_CONTACT
    bank = _line(record.bank.get("name") or record.bank["orgnr"])
    message = EmailMessage(policy=policy.SMTP)
    message["To"] = BITS_ADDRESS
    message["From"] = contact
    message["Subject"] = f"KFR integrasjonstest fullført – {bank} ({_line(record.bank['orgnr'])})"
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    _, address = parseaddr(contact)
    domain = address.rpartition("@")[2] if "@" in address else "kfr-conformance.invalid"
    message["Message-ID"] = make_msgid("kfr-c3", domain=domain)
    message.set_content(
        email_body(
            record,
            pack_name=pack_zip.name,
            sheet_name=filled_sheet.name if filled_sheet else None,
            contact=contact,
        )
    )
    message.add_attachment(
        pack_zip.read_bytes(), maintype="application", subtype="zip", filename=pack_zip.name
    )
    if filled_sheet is not None:
        message.add_attachment(
            filled_sheet.read_bytes(),
            maintype=XLSX_TYPE[0],
            subtype=XLSX_TYPE[1],
            filename=filled_sheet.name,
        )
    return message


def write_email(
    results_dir: Path, record: RunRecord, pack_zip: Path, *, contact: str | None = None
) -> Path:
    """Write ``c3-epost.eml`` into the results folder (atomically) and return its path."""
    if blockers := email_blockers(record):
        raise PackError("C-3-e-posten kan ikke lages ennå:\n  - " + "\n  - ".join(blockers))
    message = build_email(
        record, pack_zip, filled_sheet=find_filled_sheet(results_dir), contact=contact
    )
    target = results_dir / EMAIL_NAME
    atomic_write_bytes(target, message.as_bytes())
    return target


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_email(
    path: Path,
    *,
    host: str,
    port: int = 25,
    starttls: bool = False,
    user: str | None = None,
    password: str | None = None,
    from_addr: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Send the e-mail at ``path`` via SMTP; returns the envelope recipient."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"Kan ikke lese e-posten {path}: {exc.strerror or exc}") from exc
    message = BytesParser(policy=policy.SMTP).parsebytes(raw)
    if from_addr:
        del message["From"]
        message["From"] = from_addr
    sender = parseaddr(str(message.get("From", "")))[1]
    if "@" not in sender:
        raise UsageError(
            "E-posten har ingen gyldig avsender.",
            hint="Oppgi avsenderen med --from (f.eks. --from it-drift@banken.no).",
        )
    recipient = parseaddr(str(message.get("To", "")))[1] or BITS_ADDRESS
    if user and not starttls and not _is_loopback(host):
        raise UsageError(
            "Passordet ville bli sendt ukryptert.",
            hint="Bruk --starttls når SMTP-tjeneren krever innlogging.",
        )
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if starttls:
                smtp.starttls(context=ssl.create_default_context())
            if user:
                smtp.login(user, password or "")
            smtp.send_message(message, from_addr=sender, to_addrs=[recipient])
    except (smtplib.SMTPException, OSError) as exc:
        # The server's answer, never the password: smtplib does not echo credentials.
        raise PackError(f"Kunne ikke sende e-posten via {host}:{port}: {exc}") from exc
    return recipient
