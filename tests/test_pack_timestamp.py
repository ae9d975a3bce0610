"""RFC 3161 timestamps on the pack signature (CAdES-T), against the sandbox's real TSA.

Packs are built by the real builder and timestamped over loopback HTTP by the sandbox's
TSA; verification runs with a policy whose "now" lies years ahead, so "after the
certificate has expired" is tested without waiting. Every refusal names its check.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pack_support import BANK_ORGNR, read_zip, write_zip
from pki_support import YEARS, failed, issue, policy_for, reason, signed_pack, utcnow
from rfc3161_client import TimestampRequestBuilder, decode_timestamp_response

from conformance.cli import main
from conformance.errors import InvalidPack
from conformance.pack import cms
from conformance.pack.timestamp import TimestampError, request_token
from conformance.pack.verify import CHECK_NAMES, VerificationReport, verify_pack_bytes, verify_path
from conformance.sandbox import tsa as sandbox_tsa
from conformance.sandbox.pki import PkiUrls


@pytest.fixture(scope="module")
def stamped(sandbox, tmp_path_factory):
    """One timestamped pack, shared by the tests that only read it."""
    issued = issue(sandbox)
    result = signed_pack(tmp_path_factory.mktemp("stamped"), issued, tsa_url=sandbox.tsa_url)
    return result, issued


@pytest.fixture(scope="module")
def unstamped(sandbox, tmp_path_factory):
    issued = issue(sandbox)
    return signed_pack(tmp_path_factory.mktemp("unstamped"), issued), issued


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/_pki/tsa"


# --- building -------------------------------------------------------------------------------


def test_build_adds_a_timestamp_from_the_tsa(stamped, sandbox):
    result, _ = stamped
    assert result.timestamped and not result.warnings
    (signer,) = cms.parse_signed_data(result.signature_path.read_bytes()).signers
    assert len(signer.timestamp_tokens) == 1
    # The token is the TSA's answer over this very signature value.
    report = verify_path(result.zip_path, policy_for(sandbox))
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert "KFR sandbox TSA" in reason(report, "timestamp")
    stamped_at = dt.datetime.fromisoformat(report.signer["timestamp"])
    assert abs(stamped_at - utcnow()) < dt.timedelta(minutes=10)
    assert "tidsstemplede signeringstidspunktet" in reason(report, "certificate")
    assert "ifølge tidsstempelet" in reason(report, "signing_time")


def test_openssl_still_verifies_a_timestamped_signature(stamped, sandbox, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    result, _ = stamped
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sandbox.ca_pem)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(result.manifest_path.read_bytes())
    command = [
        openssl, "cms", "-verify", "-binary", "-inform", "DER",
        "-in", str(result.signature_path), "-content", str(manifest),
        "-CAfile", str(ca), "-purpose", "any", "-out", str(tmp_path / "out"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == manifest.read_bytes()
    printed = subprocess.run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(result.signature_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "id-smime-aa-timeStampToken" in printed.stdout  # OpenSSL sees the unsigned attribute
    manifest.write_bytes(manifest.read_bytes().replace(b"passed", b"failed"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


def test_a_failing_tsa_gives_an_untimestamped_pack_with_a_warning(sandbox, tmp_path):
    issued = issue(sandbox)
    secret_url = _closed_port_url().replace("http://", "http://kari:hemmelig-passord@")
    result = signed_pack(tmp_path, issued, tsa_url=secret_url)
    assert not result.timestamped
    (warning,) = result.warnings
    assert "uten tidsstempel" in warning and "svarte ikke" in warning
    assert "hemmelig-passord" not in warning  # user information in the URL is never shown
    assert result.zip_path.is_file()
    report = verify_path(result.zip_path, policy_for(sandbox))
    assert report.ok and "ikke tidsstempel" in reason(report, "timestamp")


def test_a_tsa_that_is_not_a_tsa_gives_a_warning(sandbox, tmp_path):
    result = signed_pack(tmp_path, issue(sandbox), tsa_url=sandbox.base_url + "/_pki/crl")
    assert not result.timestamped
    assert "HTTP 405" in result.warnings[0]  # GET-only endpoint: the POST is refused


def test_rebuilding_with_a_tsa_signs_afresh_then_keeps_the_signature(sandbox, tmp_path):
    from conformance.pack.build import build_pack

    issued = issue(sandbox)
    first = signed_pack(tmp_path, issued)
    assert not first.timestamped
    folder = first.zip_path.parent
    second = build_pack(folder, certificate=issued.cert, private_key=issued.key, tsa_url=sandbox.tsa_url)
    assert second.timestamped
    signature = second.signature_path.read_bytes()
    third = build_pack(folder, certificate=issued.cert, private_key=issued.key, tsa_url=sandbox.tsa_url)
    assert third.signature_path.read_bytes() == signature  # reused: no second TSA round trip
    assert verify_path(third.zip_path, policy_for(sandbox)).ok


def test_request_token_checks_what_the_tsa_answers(sandbox):
    import hashlib

    from asn1crypto import cms as asn1_cms

    token = asn1_cms.ContentInfo.load(request_token(sandbox.tsa_url, b"signaturverdi"))
    info = token["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(b"signaturverdi").digest()
    with pytest.raises(TimestampError, match="ikke en http"):
        request_token("file:///etc/passwd", b"x")
    with pytest.raises(TimestampError, match="HTTP 404"):
        request_token(sandbox.base_url + "/_pki/nothing", b"x")


# --- the sandbox TSA --------------------------------------------------------------------------


def test_sandbox_tsa_answers_rfc3161_and_openssl_agrees(sandbox, tmp_path):
    request = TimestampRequestBuilder().data(b"hei").build()
    answer = httpx.post(
        sandbox.tsa_url,
        content=request.as_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    )
    assert answer.headers["content-type"] == "application/timestamp-reply"
    response = decode_timestamp_response(answer.content)
    assert response.status == 0 and response.tst_info.nonce == request.nonce
    tsa_cert = sandbox.ca.tsa.cert
    from cryptography import x509

    usage = tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [x509.ExtendedKeyUsageOID.TIME_STAMPING]
    openssl = shutil.which("openssl")
    if openssl is None:
        return
    (tmp_path / "data").write_bytes(b"hei")
    (tmp_path / "reply.tsr").write_bytes(answer.content)
    (tmp_path / "ca.pem").write_bytes(sandbox.ca_pem)
    done = subprocess.run(
        [openssl, "ts", "-verify", "-data", str(tmp_path / "data"), "-in", str(tmp_path / "reply.tsr"),
         "-CAfile", str(tmp_path / "ca.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stderr
    (tmp_path / "data").write_bytes(b"hallo")
    done = subprocess.run(
        [openssl, "ts", "-verify", "-data", str(tmp_path / "data"), "-in", str(tmp_path / "reply.tsr"),
         "-CAfile", str(tmp_path / "ca.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        (b"", "bad_data_format"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"\x30" + b"\x84\xff\xff\xff\xff", "bad_data_format"),
    ],
)
def test_sandbox_tsa_rejects_malformed_requests(sandbox, body, failure):
    from asn1crypto import tsp

    answer = httpx.post(sandbox.tsa_url, content=body)
    assert answer.status_code == 200  # RFC 3161: the refusal is in the status, not in HTTP
    status = tsp.PKIStatusInfo.load(answer.content[2:])  # SEQUENCE { PKIStatusInfo }
    assert status["status"].native == "rejection"
    assert failure in status["fail_info"].native


def test_sandbox_tsa_rejects_a_weak_hash(sandbox):
    from asn1crypto import algos, tsp

    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha1"}),
                "hashed_message": b"\x00" * 20,
            },
        }
    ).dump()
    status = tsp.PKIStatusInfo.load(httpx.post(sandbox.tsa_url, content=request).content[2:])
    assert status["status"].native == "rejection" and "bad_alg" in status["fail_info"].native


# --- verifying years later --------------------------------------------------------------------


def test_timestamped_pack_verifies_after_the_certificate_has_expired(stamped, sandbox):
    result, issued = stamped
    later = issued.cert.not_valid_after_utc + YEARS
    for policy in (
        policy_for(sandbox, now=later),
        policy_for(sandbox, now=later, require_timestamp=True),
        policy_for(sandbox, strict=True, now=later),
    ):
        report = verify_path(result.zip_path, policy)
        assert report.ok, [(c.name, c.reason) for c in report.failed]


def test_untimestamped_pack_after_expiry_is_refused_under_the_strict_policy(unstamped, sandbox):
    result, issued = unstamped
    later = issued.cert.not_valid_after_utc + YEARS
    report = verify_path(result.zip_path, policy_for(sandbox, now=later, require_timestamp=True))
    assert failed(report) == {"timestamp"}
    assert "ikke tidsstempel" in reason(report, "timestamp")
    assert "utløpt" in reason(report, "timestamp")
    strict = verify_path(result.zip_path, policy_for(sandbox, strict=True, now=later))
    assert "timestamp" in failed(strict)


def test_untimestamped_pack_is_accepted_with_a_plain_note_otherwise(unstamped, sandbox):
    result, issued = unstamped
    later = issued.cert.not_valid_after_utc + YEARS
    for policy in (policy_for(sandbox), policy_for(sandbox, now=later)):
        report = verify_path(result.zip_path, policy)
        assert report.ok, [(c.name, c.reason) for c in report.failed]
        assert "ikke tidsstempel" in reason(report, "timestamp")
        assert "bankens egen opplysning" in reason(report, "timestamp")
    # Strict, but the certificate still valid: accepted, and told until when.
    report = verify_path(result.zip_path, policy_for(sandbox, require_timestamp=True))
    assert report.ok and "fortsatt er gyldig" in reason(report, "timestamp")
    english = verify_path(result.zip_path, policy_for(sandbox, lang="en"))
    assert "no timestamp" in reason(english, "timestamp")


def test_certificate_is_judged_at_the_timestamp_not_at_the_claim(sandbox, tmp_path):
    """A certificate that expires a few minutes after signing: judged at the timestamp it
    was valid; nothing in the pack lets the signer pick another time."""
    now = utcnow()
    issued = issue(sandbox, not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(minutes=10))
    result = signed_pack(tmp_path, issued, tsa_url=sandbox.tsa_url)
    report = verify_path(result.zip_path, policy_for(sandbox, now=now + YEARS, strict=True))
    assert report.ok, [(c.name, c.reason) for c in report.failed]


# --- forged and broken timestamps ---------------------------------------------------------------


def _replace_timestamp(pack_zip: Path, token: bytes) -> bytes:
    entries = read_zip(pack_zip.read_bytes())
    plain = _strip_unsigned(entries["manifest.json.p7s"])
    entries["manifest.json.p7s"] = cms.add_signature_timestamp(plain, token)
    return write_zip(sorted(entries.items()))


def _strip_unsigned(signature: bytes) -> bytes:
    from asn1crypto import cms as asn1_cms

    info = asn1_cms.ContentInfo.load(signature)
    signed = info["content"]
    (signer,) = list(signed["signer_infos"])
    fields = cms.present_fields(signer)
    fields.pop("unsigned_attrs", None)
    signed_fields = cms.present_fields(signed)
    signed_fields["signer_infos"] = asn1_cms.SignerInfos([asn1_cms.SignerInfo(fields)])
    return asn1_cms.ContentInfo(
        {"content_type": "signed_data", "content": asn1_cms.SignedData(signed_fields)}
    ).dump()


def test_a_timestamp_over_other_bytes_is_refused(stamped, sandbox):
    result, _ = stamped
    forged = _replace_timestamp(result.zip_path, request_token(sandbox.tsa_url, b"andre bytes"))
    report = verify_pack_bytes(forged, policy_for(sandbox))
    assert failed(report) == {"timestamp"}
    assert "gjelder ikke denne signaturen" in reason(report, "timestamp")


def test_a_timestamp_from_an_untrusted_tsa_is_refused(stamped, sandbox, sandbox_factory):
    result, _ = stamped
    other = sandbox_factory()
    (signer,) = cms.parse_signed_data(result.signature_path.read_bytes()).signers
    forged = _replace_timestamp(result.zip_path, request_token(other.tsa_url, signer.signature))
    report = verify_pack_bytes(forged, policy_for(sandbox))
    assert failed(report) == {"timestamp"}
    assert "godtas ikke" in reason(report, "timestamp")
    # The signer's certificate is still judged at its own claimed time, not the bad token's.
    assert "tidsstemplede" not in reason(report, "certificate")
    # Trusting the other TSA's root (--tsa-trust) makes the same pack verify.
    trusting = policy_for(sandbox, tsa_trust_roots=(other.ca.cert,))
    assert verify_pack_bytes(forged, trusting).ok


def test_a_tsa_certificate_without_the_timestamping_purpose_is_refused(stamped, sandbox):
    """A token signed by a bank certificate of the trusted CA (no timeStamping EKU)."""
    from cryptography.hazmat.primitives import serialization
    from rfc3161_client import TimestampRequestBuilder

    result, _ = stamped
    (signer,) = cms.parse_signed_data(result.signature_path.read_bytes()).signers
    request = sandbox_tsa.parse_request(TimestampRequestBuilder().data(signer.signature).build().as_bytes())
    not_a_tsa = issue(sandbox)
    token = sandbox_tsa.make_token(request, not_a_tsa).dump()
    assert not_a_tsa.cert.public_bytes(serialization.Encoding.DER) in token
    report = verify_pack_bytes(_replace_timestamp(result.zip_path, token), policy_for(sandbox))
    assert failed(report) == {"timestamp"}
    assert "timeStamping" in reason(report, "timestamp")


def test_a_signing_time_far_from_the_timestamp_is_refused(stamped, sandbox):
    """The sandbox TSA's own key, but a genTime an hour after the signer's signingTime."""
    result, _ = stamped
    (signer,) = cms.parse_signed_data(result.signature_path.read_bytes()).signers
    request = sandbox_tsa.parse_request(TimestampRequestBuilder().data(signer.signature).build().as_bytes())
    later = utcnow() + dt.timedelta(hours=1)
    token = sandbox_tsa.make_token(request, sandbox.ca.tsa, now=later).dump()
    forged = _replace_timestamp(result.zip_path, token)
    report = verify_pack_bytes(forged, policy_for(sandbox, now=later + dt.timedelta(minutes=1)))
    assert failed(report) == {"signing_time"}
    assert "avviker fra tidsstempelet" in reason(report, "signing_time")
    # Within a looser tolerance it agrees.
    loose = policy_for(sandbox, now=later, timestamp_tolerance=dt.timedelta(hours=2))
    assert verify_pack_bytes(forged, loose).ok


def test_two_timestamps_are_refused(stamped, sandbox):
    from asn1crypto import cms as asn1_cms

    result, _ = stamped
    entries = read_zip(result.zip_path.read_bytes())
    info = asn1_cms.ContentInfo.load(entries["manifest.json.p7s"])
    (signer,) = list(info["content"]["signer_infos"])
    (attribute,) = list(signer["unsigned_attrs"])
    token = attribute["values"][0]
    doubled = asn1_cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token, token]})
    fields = cms.present_fields(signer)
    fields["unsigned_attrs"] = asn1_cms.CMSAttributes([doubled])
    signed_fields = cms.present_fields(info["content"])
    signed_fields["signer_infos"] = asn1_cms.SignerInfos([asn1_cms.SignerInfo(fields)])
    entries["manifest.json.p7s"] = asn1_cms.ContentInfo(
        {"content_type": "signed_data", "content": asn1_cms.SignedData(signed_fields)}
    ).dump()
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy_for(sandbox))
    assert failed(report) == {"timestamp"} and "2 tidsstempler" in reason(report, "timestamp")


def test_no_tsa_roots_means_no_trusted_time(stamped):
    from conformance.pack.verify import VerificationPolicy

    result, _ = stamped
    report = verify_path(result.zip_path, VerificationPolicy())
    assert {"timestamp", "certificate"} <= failed(report)
    assert "--tsa-trust" in reason(report, "timestamp")


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_timestamp_tokens_give_a_report_or_invalid_pack(stamped, sandbox, data):
    """Bytes flipped, cut or inserted inside the token: the CMS reader (asn1crypto) and the
    token reader (rfc3161-client) either refuse the signature as unreadable or the
    timestamp check fails with a reason; nothing else escapes."""
    result, _ = stamped
    (signer,) = cms.parse_signed_data(result.signature_path.read_bytes()).signers
    token = bytearray(signer.timestamp_tokens[0])
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            token[data.draw(st.integers(0, len(token) - 1))] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        token = token[: data.draw(st.integers(0, len(token) - 1))]
    else:
        position = data.draw(st.integers(0, len(token)))
        token[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    entries = read_zip(result.zip_path.read_bytes())
    signature = entries["manifest.json.p7s"]
    # Rebuild the signature around the mutated token the way a tamperer would: by bytes,
    # fixing no lengths (so outer structures break too), or through the CMS writer.
    if data.draw(st.booleans()):
        entries["manifest.json.p7s"] = signature.replace(signer.timestamp_tokens[0], bytes(token))
    else:
        try:
            entries["manifest.json.p7s"] = cms.add_signature_timestamp(
                _strip_unsigned(signature), bytes(token)
            )
        except cms.CmsError:
            return  # not even a TLV: the builder refuses it, as it should
    try:
        report = verify_pack_bytes(write_zip(sorted(entries.items())), policy_for(sandbox))
    except InvalidPack as exc:
        assert exc.code == "signature.malformed" and exc.message
        return
    assert isinstance(report, VerificationReport)
    if bytes(token) != signer.timestamp_tokens[0] and not report.ok:
        assert report.failed[0].reason


# --- the command line and the runner ------------------------------------------------------------


def test_cli_pack_and_verify_with_trusted_time(sandbox, tmp_path, capsys):
    from pack_support import make_results_dir

    issued = issue(sandbox)
    p12 = tmp_path / "bank.p12"
    p12.write_bytes(issued.pkcs12())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sandbox.ca_pem)
    folder = make_results_dir(tmp_path / "reports")
    assert main(["pack", str(folder), "--cert", str(p12), "--tsa-url", sandbox.tsa_url]) == 0
    assert "Tidsstempel:    ja" in capsys.readouterr().out
    zip_path = next(folder.glob("*.zip"))
    later = (issued.cert.not_valid_after_utc + YEARS).date().isoformat()
    assert main(["verify", str(zip_path), "--trust", str(ca), "--strict", "--now", later]) == 0
    out = capsys.readouterr().out
    assert "[OK  ] Tidsstempel: Tidsstempel fra «" in out

    unstamped = make_results_dir(tmp_path / "reports2")
    assert main(["pack", str(unstamped), "--cert", str(p12)]) == 0
    assert "Tidsstempel:    nei" in capsys.readouterr().out
    zip_path = next(unstamped.glob("*.zip"))
    assert main(["verify", str(zip_path), "--trust", str(ca), "--now", later]) == 0
    capsys.readouterr()
    code = main(["verify", str(zip_path), "--trust", str(ca), "--strict", "--now", later, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"]
    by_name = {c["name"]: c for c in report["checks"]}
    assert not by_name["timestamp"]["ok"] and "utløpt" in by_name["timestamp"]["reason"]


def test_cli_refuses_a_bad_now_and_a_bad_tsa_trust_file(tmp_path, capsys):
    missing = tmp_path / "nothing.zip"
    with pytest.raises(SystemExit) as caught:
        main(["verify", str(missing), "--now", "i morgen"])
    assert caught.value.code == 2
    assert "er ikke et tidspunkt" in capsys.readouterr().err
    bad = tmp_path / "bad.pem"
    bad.write_text("ikke et sertifikat")
    assert main(["verify", str(missing), "--tsa-trust", str(bad)]) == 2
    assert "--tsa-trust-filen" in capsys.readouterr().err


def test_the_runner_timestamps_a_sandbox_run_with_the_sandbox_tsa(pytester, sandbox, tmp_path):
    root = Path(__file__).resolve().parent.parent
    reports = tmp_path / "r"
    result = pytester.runpytest_inprocess(
        f"--bank={BANK_ORGNR}", f"--kfr-base-url={sandbox.kfr_base_url}",
        f"--maskinporten-url={sandbox.maskinporten_issuer}", f"--sandbox-data-dir={sandbox.data_dir}",
        f"--reports-dir={reports}", f"--sheet={root / 'testcases' / 'KFR-Integrasjonstester.xlsx'}",
        "-p", "no:cacheprovider", "-k", "KFR-01",
    )  # fmt: skip
    (run_dir,) = (reports / BANK_ORGNR).iterdir()
    signature = (run_dir / "manifest.json.p7s").read_bytes()
    (signer,) = cms.parse_signed_data(signature).signers
    assert len(signer.timestamp_tokens) == 1, result.stdout.str()
    report = verify_path(run_dir, policy_for(sandbox, allow_sandbox=True))
    assert next(c for c in report.checks if c.name == "timestamp").ok
    assert PkiUrls.for_base(sandbox.base_url).tsa == sandbox.tsa_url
