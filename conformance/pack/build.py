"""Building the pack from a results folder: manifest, signature, deterministic zip, e-mail.

Determinism: entries sorted by path, every timestamp 1980-01-01 00:00, fixed permissions,
one compression level, no comments or extra fields — the same folder gives the same bytes.
Re-signing would change the signing time, so an existing signature is kept when the
manifest bytes are unchanged and it is the same certificate's valid signature over them
(and, when a TSA is given, already carries a timestamp).

Trusted time: with ``tsa_url`` the fresh signature gets an RFC 3161 timestamp from that
TSA (``sign.timestamp_signature``). A TSA that fails never loses the run: the pack is
built without a timestamp and ``PackResult.warnings`` says why, in Norwegian.

Atomicity: every file is written to a hidden temporary file in the same folder, flushed to
disk and moved into place with ``os.replace``; an interrupted build never leaves a half
file under a final name (and the leftovers are never packed: see ``manifest.is_excluded``).
"""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography import x509

from conformance.atomic import atomic_file, atomic_write_bytes
from conformance.errors import CredentialError, PackError
from conformance.models import RunRecord
from conformance.pack import cms
from conformance.pack.certinfo import certificate_orgnr
from conformance.pack.email import email_blockers, write_email
from conformance.pack.manifest import (
    EMAIL_NAME,
    MANIFEST_NAME,
    RUN_RECORD_NAME,
    SIGNATURE_NAME,
    build_manifest,
    pack_file_name,
)
from conformance.pack.sign import sign_manifest, timestamp_signature
from conformance.pack.timestamp import TimestampError

ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_COMPRESSLEVEL = 6
_COPY_CHUNK = 1 << 20


@dataclass
class PackResult:
    zip_path: Path
    manifest_path: Path
    signature_path: Path
    email_path: Path | None = None
    blockers: list[str] = field(default_factory=list)  # why no C-3 e-mail (Norwegian)
    timestamped: bool = False  # the signature carries an RFC 3161 timestamp
    warnings: list[str] = field(default_factory=list)  # e.g. the TSA failed (Norwegian)


def _copy_into(source: Path, sink: BinaryIO) -> None:
    with source.open("rb") as handle:
        shutil.copyfileobj(handle, sink, _COPY_CHUNK)


def write_deterministic_zip(target: Path, members: Iterable[tuple[str, Path]]) -> None:
    """Zip ``(name, file)`` pairs into ``target``, sorted by name, with fixed metadata."""
    with (
        atomic_file(target) as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for name, source in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below mean what they say
            info.external_attr = ZIP_FILE_MODE << 16
            info.file_size = source.stat().st_size
            info._compresslevel = ZIP_COMPRESSLEVEL  # type: ignore[attr-defined]
            with archive.open(info, "w") as sink:
                _copy_into(source, sink)


def load_run_record(results_dir: Path) -> RunRecord:
    path = results_dir / RUN_RECORD_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise PackError(
            f"{results_dir} har ingen {RUN_RECORD_NAME}, så det er ikke en resultatmappe.",
            hint="Oppgi mappen en kjøring la igjen, f.eks. reports/<orgnr>/<kjørings-id>/.",
        ) from exc
    except OSError as exc:
        raise PackError(f"Kan ikke lese {path}: {exc.strerror or exc}") from exc
    try:
        record = RunRecord.from_json(raw)
        pack_file_name(record.bank["orgnr"], record.started_at)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PackError(f"{path} er skadet eller har feil format ({exc}).") from exc
    return record


def _check_signer(record: RunRecord, certificate: x509.Certificate) -> None:
    orgnr = record.bank["orgnr"]
    signer = certificate_orgnr(certificate)
    subject = certificate.subject.rfc4514_string()
    if signer is None:
        raise CredentialError(
            f"Sertifikatet «{subject}» har ikke et entydig organisasjonsnummer.",
            hint="Bruk bankens virksomhetssertifikat (organizationIdentifier NTRNO-<orgnr>).",
        )
    if signer != orgnr:
        raise CredentialError(
            f"Sertifikatet tilhører org.nr. {signer}, men kjøringen gjelder banken {orgnr}.",
            hint="Signer med virksomhetssertifikatet til banken som ble testet.",
        )
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise CredentialError(
            f"Sertifikatet «{subject}» er ikke gyldig nå (gyldig "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} – {certificate.not_valid_after_utc:%Y-%m-%d}).",
            hint="Et utløpt sertifikat gir en pakke Bits ikke kan godta; forny sertifikatet.",
        )


def _reusable_signature(
    results_dir: Path, manifest_bytes: bytes, certificate: x509.Certificate, *, want_timestamp: bool
) -> bytes | None:
    try:
        if (results_dir / MANIFEST_NAME).read_bytes() != manifest_bytes:
            return None
        signature = (results_dir / SIGNATURE_NAME).read_bytes()
        check = cms.check_signature(cms.parse_signed_data(signature), manifest_bytes)
    except (OSError, cms.CmsError):
        return None
    if not (check.ok and check.signer is not None and check.signer.certificate == certificate):
        return None
    # A timestamp added to an old signature would be far from its signing time, which
    # verify refuses: sign afresh instead.
    if want_timestamp and not check.signer.timestamp_tokens:
        return None
    return signature


def _is_timestamped(signature: bytes) -> bool:
    try:
        return any(s.timestamp_tokens for s in cms.parse_signed_data(signature).signers)
    except cms.CmsError:
        return False


def self_check_blockers(zip_path: Path) -> list[str]:
    """The pack verified exactly as Bits will verify it, before any C-3 e-mail: every check
    that fails is a blocker. Only trust in the issuing CA is left to Bits (it holds the
    Buypass/Commfides roots); the certificates the signature carries are taken as given."""
    from conformance.pack.safezip import SafeZip, ZipLimits
    from conformance.pack.verify import VerificationPolicy, verify_path

    try:
        with SafeZip(zip_path.read_bytes(), ZipLimits()) as archive:
            carried = cms.parse_signed_data(archive.read(SIGNATURE_NAME)).certificates
    except Exception as exc:  # an unreadable pack is a blocker, never a crash
        return [f"Resultatpakken {zip_path.name} kan ikke kontrolleres: {exc}"]
    # Attested rows are Bits' decision to accept or not (the e-mail names them), not a
    # reason to keep the bank from sending. Offline: the end of a run never waits for an
    # OCSP responder or a CRL download (revocation is Bits' check).
    policy = VerificationPolicy(trust_roots=tuple(carried), accept_attested=True, revocation="off")
    report = verify_path(zip_path, policy)
    return [
        f"Kontrollen Bits kjører (kfr-conformance verify) avviser pakken – "
        f"{report.label(check.name)}: {check.reason}"
        for check in report.failed
        # Trust in the issuing CA and in the TSA's root is Bits' to decide; the builder has
        # already checked that the timestamp is over this signature (request_token).
        # Cases are listed row by row already.
        if check.name not in ("certificate", "timestamp", "cases")
    ]


def build_pack(
    results_dir: Path,
    *,
    certificate: x509.Certificate,
    private_key,
    chain: Iterable[x509.Certificate] = (),
    contact: str | None = None,
    tsa_url: str | None = None,
) -> PackResult:
    """Manifest, signature and pack for ``results_dir``; the C-3 e-mail when allowed.
    ``tsa_url``: the RFC 3161 TSA that timestamps the signature (none: no timestamp)."""
    results_dir = Path(results_dir)
    record = load_run_record(results_dir)
    _check_signer(record, certificate)
    try:
        return _build(results_dir, record, certificate, private_key, tuple(chain), contact, tsa_url)
    except OSError as exc:
        raise PackError(f"Kunne ikke skrive resultatpakken i {results_dir}: {exc}") from exc


def _build(
    results_dir: Path,
    record: RunRecord,
    certificate: x509.Certificate,
    private_key,
    chain: tuple[x509.Certificate, ...],
    contact: str | None,
    tsa_url: str | None,
) -> PackResult:
    manifest = build_manifest(results_dir, record)
    manifest_bytes = manifest.to_bytes()
    warnings: list[str] = []
    signature = _reusable_signature(
        results_dir, manifest_bytes, certificate, want_timestamp=bool(tsa_url)
    )
    if signature is None:
        signature = sign_manifest(manifest_bytes, certificate, private_key, chain)
        if tsa_url:
            try:
                signature = timestamp_signature(signature, tsa_url)
            except TimestampError as exc:
                warnings.append(
                    f"{exc.message} Pakken er signert uten tidsstempel; Bits og revisorer kan "
                    "da ikke bekrefte signeringstidspunktet når sertifikatet er utløpt."
                )
    manifest_path = results_dir / MANIFEST_NAME
    signature_path = results_dir / SIGNATURE_NAME
    atomic_write_bytes(manifest_path, manifest_bytes)
    atomic_write_bytes(signature_path, signature)
    # Exactly the files the manifest lists: a file that changed since it was hashed makes
    # the pack fail verification instead of slipping in unnoticed.
    members = [(entry.path, results_dir / entry.path) for entry in manifest.files]
    members += [(MANIFEST_NAME, manifest_path), (SIGNATURE_NAME, signature_path)]
    zip_path = results_dir / manifest.pack_file_name
    write_deterministic_zip(zip_path, members)
    result = PackResult(
        zip_path,
        manifest_path,
        signature_path,
        timestamped=_is_timestamped(signature),
        warnings=warnings,
    )
    result.blockers = email_blockers(record)
    if not result.blockers:
        # Every row passed against the test environment: check the pack as Bits will.
        result.blockers = self_check_blockers(zip_path)
    email_path = results_dir / EMAIL_NAME
    if result.blockers:
        email_path.unlink(missing_ok=True)  # a stale e-mail must not outlive a failing rebuild
    else:
        result.email_path = write_email(results_dir, record, zip_path, contact=contact)
    return result
