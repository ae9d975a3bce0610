"""Verifying a received pack — what Bits runs on every pack a bank e-mails in.

The pack is hostile input until proven otherwise: it is read in memory through
``safezip`` (limits first), the manifest is parsed strictly, and only then are the checks
run. Every check is reported on its own, with a reason in Norwegian or English:

    signature       the CMS signature is valid over the exact manifest bytes
    certificate     the signer chains to a trusted CA and was valid at signing time (the
                    timestamp's time when there is a good one, else the signer's own)
    signing_time    the signature was made after the run finished, not in the future, and
                    the signer's own time agrees with the timestamp
    timestamp       an RFC 3161 timestamp over the signature from a trusted TSA (none: said
                    plainly; refused by policy once the certificate has expired)
    revocation      the signer is not revoked (OCSP, then CRL; off / soft / hard)
    signer_orgnr    signer's orgnr = the manifest's bank = the ``fid`` of every KFR call
    files           every listed file present with its SHA-256 and size; nothing unlisted
    cases           every case passed (manual rows confirmed)
    sheet           the expected sheet (SHA-256 / version, when asked)
    environment     KFR's ``test`` environment at an accepted base URL (sandbox by choice)
    correlation_ids CorrelationIDs are UUIDs and unique

Unusable input (not a zip, hostile zip, malformed manifest or signature) raises
``InvalidPack``. This module never imports the signing module.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import verification as x509_verification

from conformance.errors import ConformanceError, InvalidPack, PackError, UsageError
from conformance.pack import cms
from conformance.pack._text import invalid, join, text
from conformance.pack.certinfo import certificate_orgnr, describe_certificate, key_usage_names
from conformance.pack.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    file_sha256,
    member_files,
    parse_time,
)
from conformance.pack.rejudge import TEST_KFR_BASE_URL as TEST_BASE_URL
from conformance.pack.rejudge import TEST_MASKINPORTEN_ISSUER, evidence_checks, sheet_rows
from conformance.pack.revocation import MODES as REVOCATION_MODES
from conformance.pack.revocation import judge_revocation
from conformance.pack.safezip import SafeZip, ZipLimits
from conformance.pack.timestamp import judge_timestamp

CHECK_NAMES = (
    "signature",
    "certificate",
    "signing_time",
    "timestamp",
    "revocation",
    "signer_orgnr",
    "files",
    "cases",
    "sheet",
    "environment",
    "correlation_ids",
    "rows",
    "verdicts",
    "journal",
    "attested",
    "core_system",
)
KFR_OPERATIONS = frozenset({"add", "end", "batch", "lookup", "agency_lookup", "account_lookup"})
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_SIGNATURE_BYTES = 1 << 20  # a CMS signature with a few certificates is a few KiB
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FID = re.compile(r"/financialInstitutions/([^/]*)")


class VerificationFailed(ConformanceError):
    """A pack was read but does not pass; ``report`` has every check."""

    exit_code = 1

    def __init__(self, message: str, report: VerificationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    reason: str  # in the policy's language


@dataclass(frozen=True)
class CorrelationRecord:
    correlation_id: str
    time: str
    operation: str
    status: int | None
    case_id: str


@dataclass(frozen=True)
class VerificationPolicy:
    """What Bits accepts. Accepting a sandbox pack takes an explicit ``allow_sandbox``.

    Trusted time and revocation: ``tsa_trust_roots`` (with ``trust_roots``) are the roots a
    timestamp's TSA may chain to; ``require_timestamp`` refuses an untimestamped pack whose
    certificate has expired since; ``revocation`` is ``off``, ``soft`` (unknown status is a
    note) or ``hard`` (unknown status refuses); ``ocsp_url``/``crl_url``/``crls`` override
    what the certificate names. ``now`` is the moment of verification (None: the clock), so
    a test or an auditor can ask how a pack stands years later. ``strict()`` is the preset
    that requires a timestamp and a known revocation status."""

    trust_roots: tuple[x509.Certificate, ...] = ()
    allow_sandbox: bool = False
    accepted_kfr_base_urls: tuple[str, ...] = (TEST_BASE_URL,)
    expect_sheet_sha256: str | None = None
    expect_sheet_version: str | None = None
    accepted_maskinporten_issuers: tuple[str, ...] = (TEST_MASKINPORTEN_ISSUER,)
    accept_attested: bool = False       # rows expecting an HTTP answer passed on a person's word
    allow_bundled_sheet: bool = False   # the tool's own reconstructed sheet, not Bits'
    lang: str = "nb"
    limits: ZipLimits = field(default_factory=ZipLimits)
    tsa_trust_roots: tuple[x509.Certificate, ...] = ()
    require_timestamp: bool = False
    timestamp_tolerance: dt.timedelta = dt.timedelta(minutes=10)
    revocation: str = "soft"
    ocsp_url: str | None = None
    crl_url: str | None = None
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    revocation_timeout: float = 5.0
    now: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.revocation not in REVOCATION_MODES:
            raise ValueError(f"revocation must be one of {REVOCATION_MODES}")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")

    @classmethod
    def strict(cls, **overrides: Any) -> VerificationPolicy:
        """Require a timestamp once the certificate has expired, and a known revocation
        status (``hard``)."""
        return cls(**{"require_timestamp": True, "revocation": "hard", **overrides})

    def moment(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)


@dataclass
class VerificationReport:
    checks: list[CheckResult]
    manifest: Manifest | None
    signer: dict | None
    lang: str = "nb"
    correlations: list[CorrelationRecord] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True only when there are checks and every one passed (no checks is not ok)."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.ok]

    def label(self, name: str) -> str:
        return text(f"check.{name}", self.lang)

    def verdict(self) -> str:
        if not self.checks:
            return text("verdict.empty", self.lang)
        return text("verdict.ok" if self.ok else "verdict.failed", self.lang)

    def raise_for_failure(self) -> None:
        if self.ok:
            return
        reasons = [f"{self.label(c.name)}: {c.reason}" for c in self.failed]
        raise VerificationFailed("\n  ".join([self.verdict(), *reasons]), self)

    def to_dict(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "lang": self.lang,
            "checks": [
                {"name": c.name, "label": self.label(c.name), "ok": c.ok, "reason": c.reason}
                for c in self.checks
            ],
            "signer": self.signer,
            "manifest": None
            if manifest is None
            else {
                "run_id": manifest.run_id,
                "bank": dict(manifest.bank),
                "environment": dict(manifest.environment),
                "sheet": dict(manifest.sheet),
                "attestation": dict(manifest.attestation),
                "started_at": manifest.started_at,
                "finished_at": manifest.finished_at,
                "counts": dict(manifest.counts),
                "files": len(manifest.files),
            },
            "correlation_ids": len(self.correlations),
        }


# --- where the members come from ----------------------------------------------------------


class _Members(Protocol):
    names: list[str]

    def read(self, name: str) -> bytes: ...

    def digest(self, name: str) -> tuple[str, int]: ...

    def size(self, name: str) -> int: ...


class _ZipMembers:
    def __init__(self, archive: SafeZip) -> None:
        self._archive = archive
        self.names = archive.names

    def read(self, name: str) -> bytes:
        return self._archive.read(name)

    def digest(self, name: str) -> tuple[str, int]:
        return self._archive.digest(name)

    def size(self, name: str) -> int:
        return self._archive.size(name)  # reading never yields more than this


class _FolderMembers:
    """A results folder, with the same membership rule the builder uses."""

    def __init__(self, folder: Path, limits: ZipLimits, lang: str) -> None:
        self._folder = folder
        self._limits = limits
        self._lang = lang
        try:
            names = member_files(folder)
        except PackError as exc:
            raise InvalidPack(exc.message) from exc
        self.names = names + [n for n in (MANIFEST_NAME, SIGNATURE_NAME) if (folder / n).is_file()]

    def read(self, name: str) -> bytes:
        path = self._folder / name
        if path.stat().st_size > self._limits.max_total_uncompressed:
            raise invalid("zip.too_large", self._lang, cap=self._limits.max_total_uncompressed)
        return path.read_bytes()

    def digest(self, name: str) -> tuple[str, int]:
        return file_sha256(self._folder / name)

    def size(self, name: str) -> int:
        return (self._folder / name).stat().st_size


# --- entry points ---------------------------------------------------------------------------


def verify_pack_bytes(data: bytes, policy: VerificationPolicy) -> VerificationReport:
    """Verify a pack given as the zip's bytes."""
    with SafeZip(data, policy.limits, lang=policy.lang) as archive:
        return _verify(_ZipMembers(archive), policy)


def verify_path(path: Path, policy: VerificationPolicy) -> VerificationReport:
    """Verify a pack zip, a results folder, or a received ``.eml`` (the pack attached)."""
    path = Path(path)
    lang = policy.lang
    if not path.exists():
        raise invalid("path.missing", lang, path=path)
    if path.is_dir():
        try:
            return _verify(_FolderMembers(path, policy.limits, lang), policy)
        except OSError as exc:
            raise invalid("path.unreadable", lang, path=path, detail=exc.strerror or exc) from exc
    data = _read_input(path, policy)
    if path.suffix.lower() == ".eml":
        data = pack_from_email(data, lang=lang)
    return verify_pack_bytes(data, policy)


def _read_input(path: Path, policy: VerificationPolicy) -> bytes:
    lang = policy.lang
    try:
        size = path.stat().st_size
        # An .eml carries the zip base64-encoded: a third larger, plus the sheet.
        cap = policy.limits.max_input_bytes * (2 if path.suffix.lower() == ".eml" else 1)
        if size > cap:
            raise invalid("zip.input_too_large", lang, size=size, cap=cap)
        return path.read_bytes()
    except OSError as exc:
        raise invalid("path.unreadable", lang, path=path, detail=exc.strerror or exc) from exc


def pack_from_email(raw: bytes, *, lang: str = "nb") -> bytes:
    """The one zip attached to a received e-mail."""
    # Imported here: the e-mail package is a tenth of verify's start-up, for .eml input only.
    from email import policy as email_policy
    from email.parser import BytesParser

    try:
        message = BytesParser(policy=email_policy.default).parsebytes(raw)
        packs = []
        for part in message.walk():
            if part.is_multipart():
                continue
            filename = (part.get_filename() or "").lower()
            if filename.endswith(".zip") or part.get_content_type() in {
                "application/zip",
                "application/x-zip-compressed",
            }:
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    packs.append(payload)
    except Exception as exc:  # the e-mail parser is lenient, but a hostile message is data
        raise invalid("eml.malformed", lang, detail=type(exc).__name__) from exc
    if not packs:
        raise invalid("eml.no_pack", lang)
    if len(packs) > 1:
        raise invalid("eml.many_packs", lang, count=len(packs))
    return packs[0]


# --- the checks -----------------------------------------------------------------------------


@dataclass
class _Evidence:
    """What the evidence files say, gathered once for several checks."""

    exchanges: list[tuple[str, dict]] = field(default_factory=list)  # (file, exchange)
    problems: list[str] = field(default_factory=list)
    # Evidence files missing or not matching the manifest: already a "files" failure, so
    # other checks do not blame their (unread) content a second time.
    untrusted: set[str] = field(default_factory=set)


def _verify(members: _Members, policy: VerificationPolicy) -> VerificationReport:
    lang = policy.lang
    if MANIFEST_NAME not in members.names:
        raise invalid("pack.no_manifest", lang)
    limits = policy.limits
    if members.size(MANIFEST_NAME) > limits.max_json_bytes:
        raise invalid("manifest.too_large", lang, cap=limits.max_json_bytes)
    manifest_bytes = members.read(MANIFEST_NAME)
    manifest = Manifest.from_bytes(manifest_bytes, lang=lang)
    signed: cms.SignedData | None = None
    if SIGNATURE_NAME in members.names:
        if members.size(SIGNATURE_NAME) > MAX_SIGNATURE_BYTES:
            raise invalid("signature.malformed", lang, detail=f"> {MAX_SIGNATURE_BYTES} bytes")
        try:
            signed = cms.parse_signed_data(members.read(SIGNATURE_NAME))
        except cms.CmsError as exc:
            raise invalid("signature.malformed", lang, detail=str(exc)[:200]) from exc
    signature = cms.check_signature(signed, manifest_bytes) if signed else None
    signer_info = signature.signer if signature else None
    certificate = signer_info.certificate if signer_info else None
    signing_time = signer_info.signing_time if signer_info else None
    carried = signed.certificates if signed else ()
    now = policy.moment()
    stamp = judge_timestamp(
        signer_info,
        tsa_roots=(*policy.tsa_trust_roots, *policy.trust_roots),
        require_timestamp=policy.require_timestamp,
        now=now,
        lang=lang,
    )
    trusted_time = stamp.trusted_time  # None unless the timestamp is good

    files_check, evidence = _check_files(members, manifest, limits, lang)
    correlations = _correlations(evidence)
    rows = sheet_rows(members, manifest, lang, evidence.untrusted)
    rows_check, verdicts_check, journal_check, environment_check, attested_check, *rejudged = (
        CheckResult(c.name, c.ok, c.reason)
        for c in evidence_checks(members, manifest, evidence, policy, rows)
    )
    certificate_check = _check_certificate(
        certificate, carried, trusted_time or signing_time, policy, stamped=trusted_time is not None
    )
    revocation = judge_revocation(
        certificate,
        carried,
        certificate_trusted=certificate_check.ok,
        trusted_time=trusted_time,
        policy=policy,
        now=now,
    )
    checks = [
        _check_signature(signature, lang),
        certificate_check,
        _check_signing_time(signing_time, trusted_time, manifest, policy),
        CheckResult("timestamp", stamp.ok, stamp.reason),
        CheckResult("revocation", revocation.ok, revocation.reason),
        _check_signer_orgnr(certificate, manifest, evidence, lang),
        files_check,
        _check_cases(manifest, lang),
        _check_sheet(manifest, policy, bundled=rows.bundled),
        environment_check,
        _check_correlation_ids(manifest, evidence, lang),
        rows_check,
        verdicts_check,
        journal_check,
        attested_check,
        *rejudged,  # further checks of conformance.pack.rejudge (core_system)
    ]
    signer = None
    if certificate is not None:
        signer = describe_certificate(certificate)
        signer["signing_time"] = signing_time.isoformat() if signing_time else None
        signer["timestamp"] = trusted_time.isoformat() if trusted_time else None
        signer["tsa"] = stamp.tsa if trusted_time else None
    return VerificationReport(checks, manifest, signer, lang, correlations)


def _check_signature(signature: cms.SignatureCheck | None, lang: str) -> CheckResult:
    if signature is None:
        return CheckResult("signature", False, text("sig.missing", lang))
    if not signature.ok:
        return CheckResult("signature", False, text(f"sig.{signature.problem}", lang))
    digest = cms.DIGEST_NAMES.get(signature.signer.digest_oid, "?") if signature.signer else "?"
    return CheckResult("signature", True, text("sig.ok", lang, digest=f"CMS, {digest}"))


def _check_certificate(
    certificate: x509.Certificate | None,
    carried: tuple[x509.Certificate, ...],
    signing_time: dt.datetime | None,
    policy: VerificationPolicy,
    *,
    stamped: bool = False,
) -> CheckResult:
    """``carried``: the certificates inside the signature, offered as intermediates.
    ``signing_time`` is the moment the certificate is judged at: the timestamp's when
    ``stamped``, else the signer's own claim."""
    lang = policy.lang
    name = "certificate"
    if certificate is None:
        return CheckResult(name, False, text("cert.unknown", lang))
    described = describe_certificate(certificate)
    subject, issuer = described["subject"], described["issuer"]
    usage = key_usage_names(certificate)
    if usage is not None and not {"digital_signature", "non_repudiation"} & set(usage):
        return CheckResult(
            name,
            False,
            text("cert.key_usage", lang, subject=subject, usage=", ".join(usage) or "–"),
        )
    if signing_time is None:
        return CheckResult(name, False, text("cert.no_time", lang))
    if not certificate.not_valid_before_utc <= signing_time <= certificate.not_valid_after_utc:
        return CheckResult(
            name,
            False,
            text(
                "cert.not_valid_stamped" if stamped else "cert.not_valid_then",
                lang,
                subject=subject,
                time=_show_time(signing_time),
                not_before=_show_time(certificate.not_valid_before_utc),
                not_after=_show_time(certificate.not_valid_after_utc),
            ),
        )
    if not policy.trust_roots:
        return CheckResult(name, False, text("cert.no_roots", lang))
    try:
        verifier = (
            x509_verification.PolicyBuilder()
            .store(x509_verification.Store(list(policy.trust_roots)))
            .time(signing_time)
            .max_chain_depth(8)
            .extension_policies(
                # CA certificates are held to the usual rules (a CA, allowed to sign
                # certificates); the bank's certificate may be an authentication or a
                # signing certificate, whose extended key usages differ between issuers.
                ca_policy=x509_verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=x509_verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verifier.verify(certificate, [c for c in carried if c != certificate])
    except (x509_verification.VerificationError, ValueError, UnsupportedAlgorithm) as exc:
        detail = str(exc).split(" (encountered")[0][:200]
        return CheckResult(
            name, False, text("cert.untrusted", lang, subject=subject, issuer=issuer, detail=detail)
        )
    if stamped:
        shown = {"subject": subject, "issuer": issuer, "time": _show_time(signing_time)}
        return CheckResult(name, True, text("cert.ok_stamped", lang, **shown))
    return CheckResult(name, True, text("cert.ok", lang, subject=subject, issuer=issuer))


def _check_signing_time(
    signing_time: dt.datetime | None,
    trusted_time: dt.datetime | None,
    manifest: Manifest,
    policy: VerificationPolicy,
) -> CheckResult:
    """``signing_time`` is the signer's own claim; ``trusted_time`` the good timestamp's
    ``genTime``, which then decides and which the claim must agree with."""
    lang = policy.lang
    name = "signing_time"
    moment = trusted_time or signing_time
    if moment is None:
        return CheckResult(name, False, text("time.missing", lang))
    finished = parse_time(manifest.finished_at)
    shown = {"time": _show_time(moment), "finished": _show_time(finished)}
    if moment < finished - CLOCK_SKEW:
        return CheckResult(name, False, text("time.before_run", lang, **shown))
    if moment > policy.moment() + CLOCK_SKEW:
        return CheckResult(name, False, text("time.future", lang, **shown))
    if trusted_time is None:
        return CheckResult(name, True, text("time.ok", lang, **shown))
    tolerance = _show_duration(policy.timestamp_tolerance, lang)
    claimed = _show_time(signing_time) if signing_time else "–"
    if signing_time is not None and abs(signing_time - trusted_time) > policy.timestamp_tolerance:
        return CheckResult(
            name, False, text("time.drift", lang, claimed=claimed, tolerance=tolerance, **shown)
        )
    return CheckResult(
        name, True, text("time.ok_stamped", lang, claimed=claimed, tolerance=tolerance, **shown)
    )


def _show_duration(duration: dt.timedelta, lang: str) -> str:
    minutes = duration.total_seconds() / 60
    if minutes >= 1 and minutes == int(minutes):
        return f"{int(minutes)} min"
    return f"{duration.total_seconds():g} s"


def _kfr_calls(evidence: _Evidence) -> Iterable[tuple[str, dict, str]]:
    for file, exchange in evidence.exchanges:
        if exchange.get("operation") in KFR_OPERATIONS:
            request = exchange.get("request")
            url = request.get("url") if isinstance(request, dict) else None
            yield file, exchange, url if isinstance(url, str) else ""


def _status(exchange: dict) -> int | None:
    response = exchange.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _check_signer_orgnr(
    certificate: x509.Certificate | None, manifest: Manifest, evidence: _Evidence, lang: str
) -> CheckResult:
    """Signer = bank = every ``fid`` KFR accepted. The sheet's KFR-003 case deliberately
    calls with another bank's fid; such a call is fine only when KFR refused it (403)."""
    name = "signer_orgnr"
    if certificate is None:
        return CheckResult(name, False, text("orgnr.unknown", lang))
    bank = manifest.bank_orgnr
    signer = certificate_orgnr(certificate)
    if signer is None:
        subject = describe_certificate(certificate)["subject"]
        return CheckResult(name, False, text("orgnr.none_in_cert", lang, subject=subject))
    if signer != bank:
        return CheckResult(name, False, text("orgnr.bank", lang, signer=signer, bank=bank))
    own = refused = 0
    for file, exchange, url in _kfr_calls(evidence):
        match = _FID.search(urlsplit(url).path)
        if match is None:
            continue  # agency lookups name no fid
        if match.group(1) == bank:
            own += 1
        elif not 200 <= (_status(exchange) or 0) < 300:
            # Refused (KFR-003's 403), or never accepted (throttled, a gateway error, no
            # answer): only an accepted write for another fid is the bank acting as another.
            refused += 1
        else:
            shown = {"url": url[:200], "file": file, "fid": match.group(1)[:20], "bank": bank}
            return CheckResult(
                name, False, text("orgnr.fid", lang, status=_status(exchange), **shown)
            )
    reason = text("orgnr.ok", lang, count=own, orgnr=bank)
    if refused:
        reason += " " + text("orgnr.refused", lang, count=refused)
    return CheckResult(name, True, reason)


def _check_files(
    members: _Members, manifest: Manifest, limits: ZipLimits, lang: str
) -> tuple[CheckResult, _Evidence]:
    present = [n for n in members.names if n not in (MANIFEST_NAME, SIGNATURE_NAME)]
    listed = {entry.path: entry for entry in manifest.files}
    problems: list[str] = []
    evidence = _Evidence()
    evidence_names = {c.evidence_file for c in manifest.cases if c.evidence_file}
    for name in present:
        entry = listed.get(name)
        if entry is None:
            problems.append(text("files.unlisted", lang, name=name))
            continue
        is_evidence = name in evidence_names or (
            name.startswith("evidence/") and name.endswith(".json")
        )
        if is_evidence and members.size(name) > limits.max_json_bytes:
            # Parsing JSON takes many times its size in memory: hash it, do not read it.
            problems.append(text("files.evidence_too_large", lang, name=name))
            evidence.untrusted.add(name)
            is_evidence = False
        if is_evidence:
            data = members.read(name)
            sha256, size = hashlib.sha256(data).hexdigest(), len(data)
            if (sha256, size) == (entry.sha256, entry.size):
                _collect_evidence(name, data, evidence, lang)
            else:
                evidence.untrusted.add(name)
        else:
            sha256, size = members.digest(name)
        if (sha256, size) != (entry.sha256, entry.size):
            problems.append(text("files.changed", lang, name=name))
            evidence.untrusted.add(name)  # a changed file is nobody's evidence
    present_set = set(present)
    for path in listed:
        if path not in present_set:
            problems.append(text("files.missing", lang, name=path))
            evidence.untrusted.add(path)
    for case in manifest.cases:
        if case.evidence_file and case.evidence_file not in listed:
            problems.append(
                text("files.evidence_unlisted", lang, case=case.id, name=case.evidence_file)
            )
    problems += evidence.problems
    if problems:
        return CheckResult(
            "files", False, text("files.failed", lang, problems=join(problems))
        ), evidence
    return CheckResult("files", True, text("files.ok", lang, count=len(listed))), evidence


def _collect_evidence(name: str, data: bytes, evidence: _Evidence, lang: str) -> None:
    try:
        document = json.loads(data)
        exchanges = document["exchanges"]
        if not isinstance(exchanges, list):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        evidence.problems.append(text("files.evidence_malformed", lang, name=name))
        return
    default_case = document.get("case_id") if isinstance(document.get("case_id"), str) else ""
    for exchange in exchanges:
        if not isinstance(exchange, dict):
            evidence.problems.append(text("files.evidence_malformed", lang, name=name))
            return
        if not isinstance(exchange.get("case_id"), str):
            exchange = {**exchange, "case_id": default_case}
        evidence.exchanges.append((name, exchange))


def _check_cases(manifest: Manifest, lang: str) -> CheckResult:
    name = "cases"
    if not manifest.cases:
        return CheckResult(name, False, text("cases.none", lang))
    bad = []
    for case in manifest.cases:
        if case.passed:
            continue
        if case.manual and case.outcome == "passed":
            bad.append(text("cases.unconfirmed", lang, case=case.id))
        else:
            bad.append(f"{case.id} ({_outcome_label(case.outcome, lang)})")
    if bad:
        return CheckResult(
            name,
            False,
            text("cases.failed", lang, bad=len(bad), count=len(manifest.cases), cases=join(bad)),
        )
    expected_counts: dict[str, int] = {}
    for case in manifest.cases:
        expected_counts[case.outcome] = expected_counts.get(case.outcome, 0) + 1
    counts = {k: v for k, v in manifest.counts.items() if v and k != "total"}
    if counts != expected_counts or manifest.counts.get("total", len(manifest.cases)) != len(
        manifest.cases
    ):
        return CheckResult(name, False, text("cases.counts", lang))
    manual = sum(1 for case in manifest.cases if case.manual)
    return CheckResult(name, True, text("cases.ok", lang, count=len(manifest.cases), manual=manual))


def _check_sheet(manifest: Manifest, policy: VerificationPolicy, *, bundled: bool = False) -> CheckResult:
    lang = policy.lang
    if bundled and not policy.allow_bundled_sheet:
        # The tool's own reconstruction says nothing about Bits' current cases.
        return CheckResult("sheet", False, text("sheet.bundled", lang, file=manifest.sheet["file_name"]))
    sheet = manifest.sheet
    actual_sha, actual_version = sheet["sha256"].lower(), sheet["version"]
    if policy.expect_sheet_sha256 and policy.expect_sheet_sha256.lower() != actual_sha:
        return CheckResult(
            "sheet",
            False,
            text("sheet.sha256", lang, actual=actual_sha, expected=policy.expect_sheet_sha256),
        )
    if policy.expect_sheet_version and policy.expect_sheet_version != actual_version:
        return CheckResult(
            "sheet",
            False,
            text(
                "sheet.version", lang, actual=actual_version, expected=policy.expect_sheet_version
            ),
        )
    original = next((f for f in manifest.files if f.path == f"original/{sheet['file_name']}"), None)
    if original is not None and original.sha256 != actual_sha:
        # The run copied the sheet it read; its hash must be the one the manifest names.
        return CheckResult(
            "sheet", False, text("sheet.original", lang, name=original.path, actual=original.sha256)
        )
    key = (
        "sheet.ok"
        if policy.expect_sheet_sha256 or policy.expect_sheet_version
        else "sheet.unpinned"
    )
    shown = {"file": sheet["file_name"], "version": actual_version, "sha256": actual_sha[:16] + "…"}
    return CheckResult("sheet", True, text(key, lang, **shown))


def _correlations(evidence: _Evidence) -> list[CorrelationRecord]:
    records = []
    for _file, exchange in evidence.exchanges:
        value = exchange.get("correlation_id")
        if value is None:
            continue
        records.append(
            CorrelationRecord(
                correlation_id=str(value),
                time=str(exchange.get("started_at") or ""),
                operation=str(exchange.get("operation") or ""),
                status=_status(exchange),
                case_id=str(exchange.get("case_id") or ""),
            )
        )
    records.sort(key=lambda r: (r.time, r.correlation_id))
    return records


def _check_correlation_ids(manifest: Manifest, evidence: _Evidence, lang: str) -> CheckResult:
    name = "correlation_ids"
    problems: list[str] = []
    by_case: dict[str, set[str]] = {}
    seen: set[str] = set()
    for file, exchange in evidence.exchanges:
        value = exchange.get("correlation_id")
        if value is None:
            continue
        if not isinstance(value, str) or not _UUID.match(value):
            problems.append(text("corr.not_uuid", lang, value=str(value)[:60], where=file))
            continue
        key = value.lower()
        if key in seen:
            problems.append(text("corr.duplicate", lang, value=value))
        seen.add(key)
        by_case.setdefault(str(exchange.get("case_id")), set()).add(key)
    listed: set[str] = set()
    for case in manifest.cases:
        for value in case.correlation_ids:
            if not _UUID.match(value):
                problems.append(text("corr.not_uuid", lang, value=value[:60], where=case.id))
                continue
            key = value.lower()
            if key in listed:
                problems.append(text("corr.duplicate", lang, value=value))
            listed.add(key)
            if key not in by_case.get(case.id, set()) and (
                case.evidence_file not in evidence.untrusted
            ):
                problems.append(text("corr.unknown", lang, value=value, case=case.id))
    if problems:
        return CheckResult(name, False, text("corr.failed", lang, problems=join(problems)))
    return CheckResult(name, True, text("corr.ok", lang, count=len(seen | listed)))


def _show_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- correlations for Bits' own logs --------------------------------------------------------

_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    """Text from a received pack, safe to open in a spreadsheet (no formula injection)."""
    shown = "" if value is None else str(value)
    return "'" + shown if shown.startswith(_CSV_FORMULA) else shown


def export_correlations(
    report_or_pack: VerificationReport | bytes | Path,
    out_csv: Path,
    *,
    policy: VerificationPolicy | None = None,
) -> int:
    """Write every CorrelationID with its time, operation, status and case as CSV, so Bits
    can match the pack against KFR's own request logs. Returns the number of rows."""
    report = report_or_pack
    if isinstance(report, bytes):
        report = verify_pack_bytes(report, policy or VerificationPolicy())
    elif isinstance(report, Path | str):
        report = verify_path(Path(report), policy or VerificationPolicy())
    rows = report.correlations
    out_csv = Path(out_csv)
    try:
        _write_correlations(out_csv, rows)
    except OSError as exc:
        raise UsageError(f"Kan ikke skrive {out_csv}: {exc.strerror or exc}") from exc
    return len(rows)


def _write_correlations(out_csv: Path, rows: list[CorrelationRecord]) -> None:
    with out_csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["correlation_id", "time", "operation", "status", "case_id"])
        for row in rows:
            writer.writerow(
                [
                    _csv_cell(row.correlation_id),
                    _csv_cell(row.time),
                    _csv_cell(row.operation),
                    "" if row.status is None else row.status,
                    _csv_cell(row.case_id),
                ]
            )


def _outcome_label(value: str, lang: str) -> str:
    from conformance.models import Outcome

    try:
        return Outcome(value).label_nb if lang == "nb" else value
    except ValueError:
        return value
