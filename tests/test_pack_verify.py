"""Verifying packs: a good pack passes every check; each kind of tampering fails its own.

Packs are built by the real builder from a results folder, signed with certificates from a
tiny test CA, and changed afterwards the way an attacker (or an accident) would.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from pack_support import (
    OTHER_BANK_ORGNR,
    CaseDraft,
    TinyCA,
    build_signed_pack,
    make_results_dir,
    read_zip,
    resign,
    shared_pki,
    write_zip,
)

from conformance.errors import InvalidPack, UsageError
from conformance.models import Outcome
from conformance.pack import cms
from conformance.pack.verify import (
    CHECK_NAMES,
    VerificationFailed,
    VerificationPolicy,
    VerificationReport,
    export_correlations,
    verify_pack_bytes,
    verify_path,
)

SANDBOX_URL = "http://127.0.0.1:5999/kar-ws/api/v1"


@pytest.fixture(scope="module")
def pki():
    return shared_pki()


@pytest.fixture
def policy(pki) -> VerificationPolicy:
    return VerificationPolicy(trust_roots=(pki.root.certificate,))


@pytest.fixture
def built(tmp_path):
    folder = make_results_dir(tmp_path)
    return build_signed_pack(folder, contact="kari.tester@testbank.example")


@pytest.fixture
def pack(built) -> bytes:
    return built.zip_path.read_bytes()


def failed(report: VerificationReport) -> set[str]:
    return {check.name for check in report.failed}


def reason(report: VerificationReport, name: str) -> str:
    return next(check.reason for check in report.checks if check.name == name)


def test_good_pack_passes_every_check(pack, policy):
    report = verify_pack_bytes(pack, policy)
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.ok, [(c.name, c.reason) for c in report.failed]
    assert report.signer["orgnr"] == report.manifest.bank_orgnr
    assert report.signer["key_usage"] == ["non_repudiation"]
    report.raise_for_failure()  # does not raise


def test_folder_and_email_verify_like_the_zip(built, policy):
    for path in (built.zip_path, built.zip_path.parent, built.email_path):
        report = verify_path(path, policy)
        assert report.ok, (path.name, [(c.name, c.reason) for c in report.failed])


def test_openssl_verifies_the_signature(built, pki, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca = pki.root.write_pem(tmp_path / "ca.pem")
    command = [
        openssl, "cms", "-verify", "-binary", "-inform", "DER",
        "-in", str(built.signature_path), "-content", str(built.manifest_path),
        "-CAfile", str(ca), "-purpose", "any", "-out", str(tmp_path / "out"),
    ]  # fmt: skip
    # The root alone must do: the issuing CA travels inside the signature.
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == built.manifest_path.read_bytes()
    # …and OpenSSL refuses a changed manifest, so the check is real.
    built.manifest_path.write_bytes(built.manifest_path.read_bytes().replace(b"passed", b"failed"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


# A changed file is nobody's evidence: checks that need it fail too, and say why.
CONSEQUENCES = {
    "journal.jsonl": {"journal"},
    "original/KFR-Integrasjonstester.xlsx": {"rows", "verdicts"},
}


@pytest.mark.parametrize(
    "member",
    [
        "KFR-Integrasjonstester-utfylt.xlsx",
        "report.html",
        "run.json",
        "journal.jsonl",
        "evidence/KFR-01.json",
        "evidence/KFR-03.json",
        "original/KFR-Integrasjonstester.xlsx",
    ],
)
def test_changing_any_byte_of_any_file_fails_files(pack, policy, member):
    entries = read_zip(pack)
    assert member in entries
    for position in (0, len(entries[member]) // 2, len(entries[member]) - 1):
        changed = dict(entries)
        data = bytearray(changed[member])
        data[position] ^= 0x01
        changed[member] = bytes(data)
        report = verify_pack_bytes(write_zip(sorted(changed.items())), policy)
        expected = {"files", *CONSEQUENCES.get(member, ())}
        assert failed(report) == expected, [(c.name, c.reason) for c in report.failed]
        assert f"endret: {member}" in reason(report, "files")


def test_removing_a_file_fails_files(pack, policy):
    entries = read_zip(pack)
    del entries["evidence/KFR-02.json"]
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy)
    assert failed(report) == {"files"}
    assert "mangler: evidence/KFR-02.json" in reason(report, "files")


def test_adding_a_file_fails_files(pack, policy):
    entries = read_zip(pack)
    entries["evidence/KFR-99.json"] = b'{"case_id": "KFR-99", "exchanges": []}'
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy)
    assert failed(report) == {"files"}
    assert "ikke i manifestet: evidence/KFR-99.json" in reason(report, "files")


def test_editing_the_manifest_fails_the_signature(pack, policy):
    entries = read_zip(pack)
    entries["manifest.json"] = entries["manifest.json"].replace(b"Testbank AS", b"Testbank AZ")
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy)
    assert failed(report) == {"signature"}
    assert "endret etter signering" in reason(report, "signature")


def test_removing_the_signature_fails_signature_and_signer_checks(pack, policy):
    entries = read_zip(pack)
    del entries["manifest.json.p7s"]
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy)
    signer_checks = {"certificate", "signing_time", "timestamp", "revocation", "signer_orgnr"}
    assert failed(report) == {"signature", *signer_checks}
    assert "manifest.json.p7s mangler" in reason(report, "signature")


def test_resigned_by_another_bank_fails_signer_orgnr(pack, policy, pki):
    report = verify_pack_bytes(resign(pack, pki.other_bank), policy)
    assert failed(report) == {"signer_orgnr"}
    assert f"signert av org.nr. {OTHER_BANK_ORGNR}" in reason(report, "signer_orgnr")


def test_expired_certificate_fails_certificate(pack, policy, pki):
    report = verify_pack_bytes(resign(pack, pki.expired), policy)
    assert failed(report) == {"certificate"}
    assert "ikke gyldig ved signering" in reason(report, "certificate")


def test_untrusted_certificate_fails_certificate(pack, policy, pki):
    report = verify_pack_bytes(resign(pack, pki.untrusted), policy)
    assert failed(report) == {"certificate"}
    assert "kjeder ikke til et klarert rotsertifikat" in reason(report, "certificate")
    # The same pack is fine for someone who trusts that root.
    trusting = VerificationPolicy(trust_roots=(pki.untrusted_root.certificate,))
    assert verify_pack_bytes(resign(pack, pki.untrusted), trusting).ok


def test_no_trust_roots_means_no_trust(pack):
    report = verify_pack_bytes(pack, VerificationPolicy())
    assert failed(report) == {"certificate"}
    assert "--trust" in reason(report, "certificate")


def test_a_bank_certificate_cannot_act_as_a_ca(pack, policy, pki):
    # A certificate "issued" by the bank's own (non-CA) certificate, chain included, does not
    # chain to the root: otherwise any bank could mint certificates for any other.
    forger = TinyCA(
        pki.bank.certificate, pki.bank.private_key, chain=(pki.bank.certificate, *pki.bank.chain)
    )
    forged = forger.issue(OTHER_BANK_ORGNR, "Annenbank ASA", key_index=6)
    report = verify_pack_bytes(resign(pack, forged), policy)
    assert "certificate" in failed(report)
    # Trusting the issuing CA directly makes it an anchor; the genuine pack still verifies.
    assert verify_pack_bytes(pack, VerificationPolicy(trust_roots=(pki.issuing.certificate,))).ok


def test_encryption_certificate_is_not_for_signing(pack, policy, pki):
    report = verify_pack_bytes(resign(pack, pki.encryption_only), policy)
    assert failed(report) == {"certificate"}
    assert "nøkkelbruk" in reason(report, "certificate")


def test_seid1_authentication_certificate_is_accepted(pack, policy, pki):
    # Older certificates carry the orgnr in serialNumber; a digitalSignature-only
    # authentication certificate may sign too.
    assert verify_pack_bytes(resign(pack, pki.seid1), policy).ok


def test_signature_over_other_bytes_fails(pack, policy, pki):
    entries = read_zip(pack)
    other = resign(pack, pki.bank, manifest=entries["manifest.json"] + b" ")
    entries["manifest.json.p7s"] = read_zip(other)["manifest.json.p7s"]
    report = verify_pack_bytes(write_zip(sorted(entries.items())), policy)
    assert failed(report) == {"signature"}


def test_signed_before_the_run_finished_fails_signing_time(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    run = json.loads((folder / "run.json").read_bytes())
    run["finished_at"] = "2099-01-01T00:00:00Z"
    (folder / "run.json").write_text(json.dumps(run))
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    assert failed(report) == {"signing_time"}
    assert "før kjøringen var ferdig" in reason(report, "signing_time")


def test_sandbox_pack_refused_unless_allowed(tmp_path, pki):
    folder = make_results_dir(tmp_path, environment="sandbox", kfr_base_url=SANDBOX_URL)
    result = build_signed_pack(folder)
    assert result.email_path is None
    strict = VerificationPolicy(trust_roots=(pki.root.certificate,))
    report = verify_path(result.zip_path, strict)
    assert failed(report) == {"environment"}
    assert "sandkassen" in reason(report, "environment")
    allowed = VerificationPolicy(trust_roots=(pki.root.certificate,), allow_sandbox=True)
    report = verify_path(result.zip_path, allowed)
    assert report.ok
    assert "ikke gyldig som onboarding-bevis" in reason(report, "environment")


def test_test_environment_at_another_url_needs_accepting(tmp_path, pki):
    folder = make_results_dir(tmp_path, kfr_base_url=SANDBOX_URL)
    zip_path = build_signed_pack(folder).zip_path
    strict = VerificationPolicy(trust_roots=(pki.root.certificate,))
    report = verify_path(zip_path, strict)
    assert failed(report) == {"environment"}
    assert SANDBOX_URL in reason(report, "environment")
    accepting = VerificationPolicy(
        trust_roots=(pki.root.certificate,), accepted_kfr_base_urls=(SANDBOX_URL + "/",)
    )
    assert verify_path(zip_path, accepting).ok


def _edit_evidence(folder: Path, case_id: str, edit, *, journal: bool = True) -> None:
    """Edit a case's exchanges as a dishonest bank would: in the evidence file and, unless
    told otherwise, the same way in the journal, so the two still agree."""
    path = folder / "evidence" / f"{case_id}.json"
    document = json.loads(path.read_bytes())
    edit(document["exchanges"])
    path.write_text(json.dumps(document))
    if journal:
        journal_path = folder / "journal.jsonl"
        lines = [json.loads(line) for line in journal_path.read_text().splitlines() if line.strip()]
        mine = [line for line in lines if line.get("case_id") == case_id]
        edit(mine)
        journal_path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _kfr_exchange(folder: Path, case_id: str, role: str = "main") -> int:
    """Index of the case's first exchange with ``role`` (token requests come first)."""
    document = json.loads((folder / "evidence" / f"{case_id}.json").read_bytes())
    return next(i for i, ex in enumerate(document["exchanges"]) if ex.get("role") == role)


def test_evidence_call_to_another_host_fails_environment(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    main = _kfr_exchange(folder, "KFR-02")

    def elsewhere(exchanges):
        exchanges[main]["request"]["url"] = exchanges[main]["request"]["url"].replace(
            "https://preprod.api.bits.no", "http://127.0.0.1:5000"
        )

    _edit_evidence(folder, "KFR-02", elsewhere)
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    assert failed(report) == {"environment"}
    assert "evidence/KFR-02.json" in reason(report, "environment")


def test_evidence_for_another_fid_fails_signer_orgnr(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    main = _kfr_exchange(folder, "KFR-03")

    def other_fid(exchanges):
        url = exchanges[main]["request"]["url"]
        exchanges[main]["request"]["url"] = url.replace(folder.parent.name, OTHER_BANK_ORGNR)

    _edit_evidence(folder, "KFR-03", other_fid)
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    # The row's own judge sees it too: a registration on another fid is not KFR-03's test.
    assert failed(report) == {"signer_orgnr", "verdicts"}
    assert f"fid {OTHER_BANK_ORGNR}" in reason(report, "signer_orgnr")
    assert "KFR avviste det ikke (HTTP 201)" in reason(report, "signer_orgnr")
    assert "KFR-03" in reason(report, "verdicts")


def test_another_fid_refused_by_kfr_is_the_kfr003_test(pack, policy):
    # The sheet's KFR-003 row (KFR-16) calls with another bank's fid on purpose; KFR answers
    # 403, and the call stays the only one for a foreign fid.
    report = verify_pack_bytes(pack, policy)
    assert report.ok
    assert "1 kall for en annen banks fid ble ikke godtatt (KFR avviste dem med 403" in reason(report, "signer_orgnr")


def test_duplicate_and_malformed_correlation_ids_fail(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    first = json.loads((folder / "evidence" / "KFR-02.json").read_bytes())["exchanges"]
    first = first[_kfr_exchange(folder, "KFR-02")]
    main = _kfr_exchange(folder, "KFR-03")

    def reuse(exchanges):
        exchanges[main]["correlation_id"] = first["correlation_id"]

    _edit_evidence(folder, "KFR-03", reuse)
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    assert "correlation_ids" in failed(report)
    assert "brukes mer enn én gang" in reason(report, "correlation_ids")
    main = _kfr_exchange(folder, "KFR-04")

    def not_uuid(exchanges):
        exchanges[main]["correlation_id"] = "abc-123"

    _edit_evidence(folder, "KFR-04", not_uuid)
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    assert "«abc-123» i evidence/KFR-04.json er ikke en UUID" in reason(report, "correlation_ids")


@pytest.mark.parametrize(
    ("draft", "expected", "also"),
    [
        # Claiming a failure the evidence does not show is caught by the judge too.
        (CaseDraft("KFR-07", outcome=Outcome.FAILED), "KFR-07 (Feilet)", {"verdicts"}),
        (CaseDraft("KFR-07", outcome=Outcome.NOT_RUN), "KFR-07 (Ikke kjørt)", {"verdicts"}),
        (
            CaseDraft("KFR-21", outcome=Outcome.PENDING, manual=True),
            "KFR-21 (Manuell – venter på bekreftelse)",
            set(),
        ),
        (CaseDraft("KFR-22", manual=True), "KFR-22 (manuell, ikke bekreftet)", set()),
    ],
)
def test_a_case_that_did_not_pass_fails_cases(tmp_path, policy, draft, expected, also):
    folder = make_results_dir(tmp_path, cases=(draft,))
    result = build_signed_pack(folder)
    assert result.email_path is None and result.blockers
    report = verify_path(result.zip_path, policy)
    assert failed(report) == {"cases", *also}
    assert expected in reason(report, "cases")
    assert "1 av 22" in reason(report, "cases")


def test_sheet_expectations(pack, pki):
    entries = read_zip(pack)
    sheet = json.loads(entries["manifest.json"])["sheet"]
    roots = (pki.root.certificate,)
    right = VerificationPolicy(
        trust_roots=roots, expect_sheet_sha256=sheet["sha256"].upper(), expect_sheet_version="1.3"
    )
    assert verify_pack_bytes(pack, right).ok
    wrong_hash = VerificationPolicy(trust_roots=roots, expect_sheet_sha256="00" * 32)
    report = verify_pack_bytes(pack, wrong_hash)
    assert failed(report) == {"sheet"}
    assert "forventet " + "00" * 32 in reason(report, "sheet")
    wrong_version = VerificationPolicy(trust_roots=roots, expect_sheet_version="2.0")
    assert "versjon 1.3, forventet 2.0" in reason(verify_pack_bytes(pack, wrong_version), "sheet")


def test_original_sheet_copy_must_match_the_named_hash(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    (folder / "original" / "KFR-Integrasjonstester.xlsx").write_bytes(b"another sheet")
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    # Without the sheet it ran, no row can be judged again from the evidence.
    assert failed(report) == {"sheet", "rows", "verdicts"}


def test_english_reasons(pack, pki):
    english = VerificationPolicy(trust_roots=(pki.untrusted_root.certificate,), lang="en")
    report = verify_pack_bytes(pack, english)
    assert report.verdict().startswith("INVALID")
    assert "does not chain to a trusted root" in reason(report, "certificate")
    assert report.to_dict()["checks"][1]["label"] == "Certificate"


def test_report_as_data(pack, policy, pki):
    report = verify_pack_bytes(resign(pack, pki.other_bank), policy)
    data = report.to_dict()
    assert data["ok"] is False
    assert [c["name"] for c in data["checks"] if not c["ok"]] == ["signer_orgnr"]
    assert data["manifest"]["bank"]["orgnr"] == report.manifest.bank_orgnr
    assert data["signer"]["orgnr"] == OTHER_BANK_ORGNR
    json.dumps(data)  # serialisable as it is
    with pytest.raises(VerificationFailed) as caught:
        report.raise_for_failure()
    assert caught.value.exit_code == 1
    assert "Signerer = bank" in caught.value.diagnostics()


def test_empty_report_is_not_ok():
    report = VerificationReport(checks=[], manifest=None, signer=None)
    assert not report.ok
    with pytest.raises(VerificationFailed):
        report.raise_for_failure()


def test_export_correlations(pack, policy, tmp_path):
    report = verify_pack_bytes(pack, policy)
    out = tmp_path / "corr.csv"
    rows = export_correlations(report, out)
    with out.open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    entries = read_zip(pack)
    expected = sum(
        1 for name, data in entries.items() if name.startswith("evidence/")
        for ex in json.loads(data)["exchanges"] if ex.get("correlation_id")
    )
    assert rows == len(table) == expected > 20  # token calls carry no CorrelationID
    assert list(table[0]) == ["correlation_id", "time", "operation", "status", "case_id"]
    for row in table:
        uuid.UUID(row["correlation_id"])
    assert {"add", "end", "batch", "lookup"} <= {row["operation"] for row in table}
    assert [row["time"] for row in table] == sorted(row["time"] for row in table)
    manifest = json.loads(read_zip(pack)["manifest.json"])
    listed = {c for case in manifest["cases"] for c in case["correlation_ids"]}
    assert {row["correlation_id"] for row in table} == listed
    # From the bytes directly, too.
    assert export_correlations(pack, tmp_path / "again.csv", policy=policy) == expected


def test_export_to_an_unwritable_place_is_a_clear_error(pack, policy, tmp_path):
    report = verify_pack_bytes(pack, policy)
    with pytest.raises(UsageError, match="Kan ikke skrive"):
        export_correlations(report, tmp_path / "no" / "such" / "dir.csv")


def test_exported_csv_defuses_formulas(tmp_path, policy):
    folder = make_results_dir(tmp_path)
    main = _kfr_exchange(folder, "KFR-02")

    def formula(exchanges):
        exchanges[main]["operation"] = '=HYPERLINK("http://evil")'

    _edit_evidence(folder, "KFR-02", formula)
    report = verify_path(build_signed_pack(folder).zip_path, policy)
    out = tmp_path / "c.csv"
    export_correlations(report, out)
    assert "'=HYPERLINK" in out.read_text(encoding="utf-8")


def test_verifying_never_loads_the_signing_code():
    code = (
        "import sys, conformance.pack.verify as v; "
        "assert 'conformance.pack.sign' not in sys.modules, 'sign loaded'; "
        "assert 'conformance.pack.build' not in sys.modules, 'build loaded'"
    )
    done = subprocess.run(
        [__import__("sys").executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_signature_structure(built):
    signed = cms.parse_signed_data(built.signature_path.read_bytes())
    assert signed.detached
    (signer,) = signed.signers
    assert signer.certificate is not None and signer.signing_time is not None
    assert signer.digest_oid == "2.16.840.1.101.3.4.2.1"  # SHA-256
    assert len(signed.certificates) == 2  # the bank's and the issuing CA's


def test_missing_path_is_unusable(tmp_path, policy):
    with pytest.raises(InvalidPack) as caught:
        verify_path(tmp_path / "nope.zip", policy)
    assert caught.value.code == "path.missing"
