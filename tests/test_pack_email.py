"""The C-3 e-mail: written only for a fully passing run against KFR's test environment,
withheld with case-by-case reasons otherwise, and sent over SMTP (aiosmtpd on loopback)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest
from pack_support import (
    BANK_NAME,
    CaseDraft,
    build_signed_pack,
    make_results_dir,
    shared_pki,
    smtp_server,
)

from conformance.errors import PackError, UsageError
from conformance.models import Outcome
from conformance.pack.build import load_run_record
from conformance.pack.email import BITS_ADDRESS, email_blockers, send_email
from conformance.pack.verify import VerificationPolicy, verify_pack_bytes, verify_path

SANDBOX_URL = "http://127.0.0.1:5999/kar-ws/api/v1"
# The login test server allows AUTH without TLS on loopback, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


@pytest.fixture
def passing(tmp_path):
    folder = make_results_dir(tmp_path)
    return build_signed_pack(folder, contact="Kari Tester <kari@testbank.example>")


def test_email_for_a_passing_test_run(passing):
    assert passing.email_path is not None and passing.blockers == []
    message = parse(passing.email_path.read_bytes())
    record = load_run_record(passing.zip_path.parent)
    orgnr = record.bank["orgnr"]
    assert message["To"] == BITS_ADDRESS
    assert message["From"].addresses[0].addr_spec == "kari@testbank.example"
    assert message["Subject"] == f"KFR integrasjonstest fullført – {BANK_NAME} ({orgnr})"
    assert message["Date"] and message["Message-ID"]
    body = message.get_body(("plain",)).get_content()
    for expected in (
        "alle testtilfellene er bestått",
        "klar for produksjon (onboarding-steg C-3)",
        "22 av 22 bestått (herav 2 manuelt bekreftet)",
        "versjon 1.3",
        "Miljø: test (https://preprod.api.bits.no/kar-ws/api/v1)",
        record.run_id,
        "Kontaktperson: Kari Tester <kari@testbank.example>",
        "Testet av: Kari Tester (Utvikler)",
    ):
        assert expected in body, expected
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {passing.zip_path.name, "KFR-Integrasjonstester-utfylt.xlsx"}
    assert attachments[passing.zip_path.name].get_content_type() == "application/zip"
    assert attachments[passing.zip_path.name].get_content() == passing.zip_path.read_bytes()
    sheet = passing.zip_path.parent / "KFR-Integrasjonstester-utfylt.xlsx"
    assert attachments[sheet.name].get_content() == sheet.read_bytes()


def test_verify_accepts_the_email(passing):
    policy_ = VerificationPolicy(trust_roots=(shared_pki().root.certificate,))
    assert verify_path(passing.email_path, policy_).ok


def test_no_contact_says_so(tmp_path):
    result = build_signed_pack(make_results_dir(tmp_path))
    message = parse(result.email_path.read_bytes())
    assert "ikke oppgitt" in str(message["From"])
    assert "Kontaktperson: ikke oppgitt" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    ("draft", "words"),
    [
        (CaseDraft("KFR-09", outcome=Outcome.FAILED), ("KFR-09", "feilet", "Svaret avvek")),
        (CaseDraft("KFR-09", outcome=Outcome.ERROR), ("KFR-09", "feil i miljøet", "på nytt")),
        (CaseDraft("KFR-09", outcome=Outcome.NOT_AUTOMATED, operations=()), ("KFR-09", "--manual")),
        (
            CaseDraft("KFR-09", outcome=Outcome.PENDING, manual=True, operations=()),
            ("KFR-09", "venter på bekreftelse"),
        ),
        (CaseDraft("KFR-09", outcome=Outcome.NOT_RUN, operations=()), ("KFR-09", "ikke kjørt")),
        (CaseDraft("KFR-09", manual=True, operations=()), ("KFR-09", "uten navn")),
    ],
)
def test_email_withheld_case_by_case(tmp_path, draft, words):
    folder = make_results_dir(tmp_path, cases=(CaseDraft("KFR-01"), draft))
    result = build_signed_pack(folder)
    assert result.email_path is None
    assert not (folder / "c3-epost.eml").exists()
    rerun = draft.outcome in (Outcome.ERROR, Outcome.NOT_RUN)
    assert len(result.blockers) == 1 + rerun  # + the one command that reruns the row
    for word in words:
        assert word in result.blockers[0]
    if rerun:
        assert result.blockers[1].endswith('-k "KFR-09"') and "--resume" in result.blockers[1]
    assert result.blockers == email_blockers(load_run_record(folder))


def test_email_withheld_for_the_sandbox(tmp_path):
    folder = make_results_dir(tmp_path, environment="sandbox", kfr_base_url=SANDBOX_URL)
    result = build_signed_pack(folder)
    assert result.email_path is None
    assert result.blockers == [result.blockers[0]]
    assert "sandbox" in result.blockers[0] and "testmiljøet" in result.blockers[0]


def test_no_email_for_test_environment_at_a_local_url(tmp_path):
    # "--kfr-env test" pointed at a local KFR: every row passed, but the session checks its
    # pack as Bits will, and Bits' verify does not take that URL for its test environment.
    folder = make_results_dir(tmp_path, kfr_base_url=SANDBOX_URL)
    result = build_signed_pack(folder)
    assert result.email_path is None and not (folder / "c3-epost.eml").exists()
    assert any("Miljø" in b and SANDBOX_URL in b for b in result.blockers), result.blockers


def test_send_via_local_smtp(passing):
    with smtp_server() as server:
        recipient = send_email(passing.email_path, host=server.host, port=server.port)
    assert recipient == BITS_ADDRESS
    (mail,) = server.received
    assert mail.mail_from == "kari@testbank.example"
    assert mail.rcpt_tos == [BITS_ADDRESS]
    message = parse(mail.content)
    zips = [p for p in message.iter_attachments() if p.get_filename().endswith(".zip")]
    policy_ = VerificationPolicy(trust_roots=(shared_pki().root.certificate,))
    assert verify_pack_bytes(zips[0].get_content(), policy_).ok


def test_send_with_login_and_explicit_sender(tmp_path):
    result = build_signed_pack(make_results_dir(tmp_path))  # From: ikke oppgitt
    with pytest.raises(UsageError) as no_sender:
        send_email(result.email_path, host="127.0.0.1", port=1)
    assert "--from" in no_sender.value.diagnostics()
    with smtp_server(user="bank", password="s3cret-pw") as server:
        send_email(
            result.email_path,
            host=server.host,
            port=server.port,
            user="bank",
            password="s3cret-pw",
            from_addr="it@testbank.example",
        )
        with pytest.raises(PackError) as caught:
            send_email(
                result.email_path,
                host=server.host,
                port=server.port,
                user="bank",
                password="wrong-pw",
                from_addr="it@testbank.example",
            )
    assert server.logins == ["bank"]
    assert server.received[0].mail_from == "it@testbank.example"
    assert parse(server.received[0].content)["From"] == "it@testbank.example"
    assert "wrong-pw" not in caught.value.diagnostics()


def test_password_never_travels_in_clear_to_a_remote_host(passing):
    with pytest.raises(UsageError) as caught:
        send_email(passing.email_path, host="smtp.example.org", user="u", password="p")
    assert "--starttls" in caught.value.diagnostics()


def test_starttls_against_a_server_without_it(passing):
    with smtp_server() as server, pytest.raises(PackError, match="STARTTLS"):
        send_email(passing.email_path, host=server.host, port=server.port, starttls=True)
    assert server.received == []


def test_unreachable_server_is_a_clear_error(passing):
    with smtp_server() as server:
        port = server.port
    with pytest.raises(PackError, match=f"127.0.0.1:{port}"):
        send_email(passing.email_path, host="127.0.0.1", port=port, timeout=5)
