"""Revocation of the signer (OCSP first, CRL fallback) against the sandbox's real OCSP
responder and CRL over loopback HTTP, under the policies off / soft / hard.

Every test signs with a fresh certificate of the sandbox CA (revocation is final), and the
process-wide answer cache is cleared around each test, since tests revoke between two
verifications.
"""

from __future__ import annotations

import datetime as dt
import socket

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pki_support import failed, issue, policy_for, reason, signed_pack, utcnow

from conformance.cli import main
from conformance.pack.revocation import clear_cache, load_crl
from conformance.pack.verify import verify_path
from conformance.sandbox.pki import CRL_FILE


@pytest.fixture(autouse=True)
def _fresh_answers():
    clear_cache()
    yield
    clear_cache()


def _dead_url(path: str = "/_pki/ocsp") -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- the sandbox's responder and CRL --------------------------------------------------------


def test_sandbox_certificates_name_the_running_sandboxs_ocsp_and_crl(sandbox):
    cert = issue(sandbox).cert
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = {d.access_method: d.access_location.value for d in aia}
    assert urls[x509.AuthorityInformationAccessOID.OCSP] == sandbox.pki_urls.ocsp
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == sandbox.pki_urls.crl
    # …and the CA certificate the AIA names is the sandbox CA.
    served = x509.load_der_x509_certificate(httpx.get(sandbox.pki_urls.ca).content)
    assert served == sandbox.ca.cert


def test_ocsp_and_crl_say_good_then_revoked(sandbox):
    issued = issue(sandbox)
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.cert, sandbox.ca.cert, hashes.SHA1())
    body = request.build().public_bytes(serialization.Encoding.DER)

    def ask() -> ocsp.OCSPResponse:
        answer = httpx.post(sandbox.pki_urls.ocsp, content=body)
        assert answer.headers["content-type"] == "application/ocsp-response"
        return ocsp.load_der_ocsp_response(answer.content)

    assert ask().certificate_status == ocsp.OCSPCertStatus.GOOD
    since = utcnow().replace(microsecond=0) - dt.timedelta(hours=2)
    sandbox.revoke(issued.cert, at=since)
    answer = ask()
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_time_utc == since
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    crl = x509.load_der_x509_crl(httpx.get(sandbox.pki_urls.crl).content)
    assert crl.is_signature_valid(sandbox.ca.cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None
    # The CRL is also published in the data folder, for a verifier offline.
    on_disk = load_crl((sandbox.data_dir / CRL_FILE).read_bytes())
    assert on_disk.get_revoked_certificate_by_serial_number(issued.cert.serial_number)


def test_ocsp_for_another_issuer_is_unknown_and_garbage_is_malformed(sandbox, sandbox_factory):
    other = sandbox_factory()
    foreign = other.ca.issue("910000004", "Annen AS")
    request = ocsp.OCSPRequestBuilder().add_certificate(foreign.cert, other.ca.cert, hashes.SHA1())
    answer = httpx.post(
        sandbox.pki_urls.ocsp, content=request.build().public_bytes(serialization.Encoding.DER)
    )
    assert ocsp.load_der_ocsp_response(answer.content).certificate_status == (
        ocsp.OCSPCertStatus.UNKNOWN
    )
    garbage = ocsp.load_der_ocsp_response(httpx.post(sandbox.pki_urls.ocsp, content=b"x").content)
    assert garbage.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# --- verify -------------------------------------------------------------------------------------


def test_a_good_signer_passes_by_ocsp(sandbox, tmp_path):
    result = signed_pack(tmp_path, issue(sandbox), tsa_url=sandbox.tsa_url)
    report = verify_path(result.zip_path, policy_for(sandbox, revocation="hard"))
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    assert "Ikke tilbakekalt ifølge OCSP" in reason(report, "revocation")


def test_a_revoked_signer_is_refused_by_ocsp(sandbox, tmp_path):
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    sandbox.revoke(issued.cert)
    for mode in ("soft", "hard"):
        report = verify_path(result.zip_path, policy_for(sandbox, revocation=mode))
        assert failed(report) == {"revocation"}
        assert "tilbakekalt" in reason(report, "revocation")
        assert "OCSP" in reason(report, "revocation")
        assert "key_compromise" in reason(report, "revocation")
    off = verify_path(result.zip_path, policy_for(sandbox, revocation="off"))
    assert off.ok and "slått av" in reason(off, "revocation")


def test_a_revoked_signer_is_refused_by_the_crl_when_ocsp_is_unreachable(sandbox, tmp_path):
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    sandbox.revoke(issued.cert)
    policy = policy_for(sandbox, ocsp_url=_dead_url(), revocation="soft")
    report = verify_path(result.zip_path, policy)
    assert failed(report) == {"revocation"}
    assert "ifølge CRL" in reason(report, "revocation")
    assert sandbox.pki_urls.crl in reason(report, "revocation")


def test_a_crl_file_stands_in_for_an_unreachable_sandbox(sandbox, tmp_path):
    """The port of a sandbox changes between runs: the verifier hands over its crl.der."""
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    sandbox.revoke(issued.cert)
    crl = load_crl((sandbox.data_dir / CRL_FILE).read_bytes())
    policy = policy_for(sandbox, ocsp_url=_dead_url(), crls=(crl,), revocation="hard")
    report = verify_path(result.zip_path, policy)
    assert failed(report) == {"revocation"}
    assert "ifølge CRL (fil)" in reason(report, "revocation")


def test_revoked_after_a_trustworthy_timestamp_is_accepted_with_a_note(sandbox, tmp_path):
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued, tsa_url=sandbox.tsa_url)
    sandbox.revoke(issued.cert, at=utcnow() + dt.timedelta(minutes=1))
    report = verify_path(result.zip_path, policy_for(sandbox, revocation="hard"))
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    assert "etter det tidsstemplede signeringstidspunktet" in reason(report, "revocation")


def test_revoked_before_the_timestamp_is_refused(sandbox, tmp_path):
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued, tsa_url=sandbox.tsa_url)
    sandbox.revoke(issued.cert, at=utcnow() - dt.timedelta(days=1))  # compromised since
    report = verify_path(result.zip_path, policy_for(sandbox))
    assert failed(report) == {"revocation"}
    assert "før det tidsstemplede signeringstidspunktet" in reason(report, "revocation")


def test_without_a_timestamp_any_revocation_refuses(sandbox, tmp_path):
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    sandbox.revoke(issued.cert, at=utcnow() + dt.timedelta(minutes=1))
    report = verify_path(result.zip_path, policy_for(sandbox))
    assert failed(report) == {"revocation"}
    assert "uten tidsstempel" in reason(report, "revocation")


def test_unreachable_status_is_a_note_when_soft_and_refuses_when_hard(sandbox, tmp_path):
    result = signed_pack(tmp_path, issue(sandbox))
    unreachable = {"ocsp_url": _dead_url(), "crl_url": _dead_url("/_pki/crl")}
    soft = verify_path(result.zip_path, policy_for(sandbox, revocation="soft", **unreachable))
    assert soft.ok and "«soft»" in reason(soft, "revocation")
    assert "ConnectError" in reason(soft, "revocation")
    hard = verify_path(result.zip_path, policy_for(sandbox, revocation="hard", **unreachable))
    assert failed(hard) == {"revocation"} and "«hard»" in reason(hard, "revocation")


def test_a_certificate_naming_no_revocation_source(sandbox, tmp_path):
    published, sandbox.ca.urls = sandbox.ca.urls, None
    try:
        issued = issue(sandbox)
    finally:
        sandbox.ca.urls = published
    result = signed_pack(tmp_path, issued)
    soft = verify_path(result.zip_path, policy_for(sandbox))
    assert soft.ok and "ingen OCSP- eller CRL-adresse" in reason(soft, "revocation")
    hard = verify_path(result.zip_path, policy_for(sandbox, revocation="hard"))
    assert failed(hard) == {"revocation"}
    # The verifier can still point at the sandbox (its port changes between runs).
    pointed = policy_for(sandbox, revocation="hard", ocsp_url=sandbox.pki_urls.ocsp)
    assert verify_path(result.zip_path, pointed).ok


def test_an_answer_signed_by_another_ca_is_not_believed(sandbox, sandbox_factory, tmp_path):
    other = sandbox_factory()
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    forged_source = {"ocsp_url": other.pki_urls.ocsp, "crl_url": other.pki_urls.crl}
    report = verify_path(result.zip_path, policy_for(sandbox, revocation="hard", **forged_source))
    assert failed(report) == {"revocation"}
    assert "ikke signert av utstederen" in reason(report, "revocation")


def test_addresses_in_an_untrusted_certificate_are_not_fetched(sandbox, sandbox_factory, tmp_path):
    """A certificate that does not chain to a trusted root could name any URL: verify must
    not go there. Its own (other) sandbox has revoked it; the verifier never asks."""
    other = sandbox_factory()
    foreign = other.ca.issue(issue(sandbox).cert.subject.get_attributes_for_oid(
        x509.NameOID.SERIAL_NUMBER)[0].value, "Testbank AS")  # fmt: skip
    result = signed_pack(tmp_path, foreign)
    other.revoke(foreign.cert)
    report = verify_path(result.zip_path, policy_for(sandbox, revocation="hard"))
    assert "certificate" in failed(report) and "revocation" not in failed(report)
    assert "ikke godkjent" in reason(report, "revocation")


def test_years_later_an_untimestamped_pack_has_no_current_status(sandbox, tmp_path):
    """Without a timestamp only a current answer counts; years ahead, today's is not."""
    issued = issue(sandbox)
    result = signed_pack(tmp_path, issued)
    later = issued.cert.not_valid_after_utc + dt.timedelta(days=400)
    report = verify_path(result.zip_path, policy_for(sandbox, revocation="hard", now=later))
    assert failed(report) == {"revocation"} and "for gammelt" in reason(report, "revocation")


# --- the command line -----------------------------------------------------------------------------


def test_cli_sandbox_revoke_then_verify(sandbox, tmp_path, capsys):
    issued = issue(sandbox)
    result = signed_pack(tmp_path / "pack", issued)
    cert_pem = tmp_path / "bank-cert.pem"
    cert_pem.write_bytes(issued.cert_pem())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sandbox.ca_pem)
    verify = ["verify", str(result.zip_path), "--trust", str(ca), "--revocation", "hard"]
    assert main(verify) == 0
    capsys.readouterr()
    orgnr = issued.cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value
    code = main(["sandbox", "revoke", "--bank", orgnr, "--cert", str(cert_pem),
                 "--data-dir", str(sandbox.data_dir)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "Tilbakekalt:" in out and format(issued.cert.serial_number, "x") in out
    clear_cache()
    assert main(verify) == 1
    out = capsys.readouterr().out
    assert "[FEIL] Tilbakekalling: Sertifikatet er tilbakekalt" in out
    # Through the CRL file instead of the certificate's addresses:
    crl_file = str(sandbox.data_dir / CRL_FILE)
    clear_cache()
    assert main([*verify, "--ocsp-url", _dead_url(), "--crl", crl_file]) == 1
    assert "ifølge CRL (fil)" in capsys.readouterr().out


def test_cli_revoke_refuses_a_certificate_of_another_bank(sandbox, tmp_path, capsys):
    issued = issue(sandbox)
    cert_pem = tmp_path / "cert.pem"
    cert_pem.write_bytes(issued.cert_pem())
    code = main(["sandbox", "revoke", "--bank", "910000004", "--cert", str(cert_pem),
                 "--data-dir", str(sandbox.data_dir)])  # fmt: skip
    assert code == 2 and "tilhører ikke banken" in capsys.readouterr().err
    assert sandbox.ca.revocation_of(issued.cert) is None


def test_cli_refuses_bad_revocation_options(tmp_path, capsys):
    missing = str(tmp_path / "none.zip")
    assert main(["verify", missing, "--ocsp-url", "ftp://x"]) == 2
    assert "http(s)" in capsys.readouterr().err
    bad = tmp_path / "bad.crl"
    bad.write_bytes(b"not a crl")
    assert main(["verify", missing, "--crl", str(bad)]) == 2
    assert "ikke en sperreliste" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["verify", missing, "--revocation", "maybe"])


def test_a_revoked_sandbox_certificate_is_not_reused_for_the_next_run(sandbox, tmp_path):
    creds = sandbox.register_bank("910000004", out_dir=tmp_path / "creds")
    first = x509.load_pem_x509_certificate(creds.cert_pem.read_bytes())
    sandbox.revoke(first)
    again = sandbox.register_bank("910000004", out_dir=tmp_path / "creds")
    second = x509.load_pem_x509_certificate(again.cert_pem.read_bytes())
    assert second.serial_number != first.serial_number
    assert sandbox.ca.revocation_of(second) is None
