"""Helpers for pack tests: a tiny certificate authority, results folders, hostile zips.

Certificates are made directly with ``cryptography`` so the pack tests do not depend on
the sandbox's CA: enterprise certificates carry the orgnr the way Buypass and Commfides do
(``organizationIdentifier=NTRNO-<orgnr>`` in SEID 2, ``serialNumber=<orgnr>`` in SEID 1).
Everything here is synthetic: organisation numbers come from ``synthetic_orgnr`` and
person numbers from ``synthetic_fodselsnummer``.

Reused by the archive tests, so the helpers take plain arguments and return plain data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import io
import json
import random
import socket
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.ids import synthetic_orgnr
from conformance.models import Outcome

TEST_KFR_BASE_URL = "https://preprod.api.bits.no/kar-ws/api/v1"
TEST_MASKINPORTEN_ISSUER = "https://test.maskinporten.no/"

# Two fixed synthetic banks: "ours" and "another bank" for re-signing attacks.
BANK_ORGNR = synthetic_orgnr(random.Random(4001))
OTHER_BANK_ORGNR = synthetic_orgnr(random.Random(4002))
BANK_NAME = "Testbank AS"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@functools.lru_cache(maxsize=16)
def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make; tests share a handful by index."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Issued:
    """An enterprise certificate with its key and the chain up to (not including) the root."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def p12(self, password: bytes | None = None) -> bytes:
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            b"kfr-test", self.private_key, self.certificate, list(self.chain) or None, encryption
        )

    def write_p12(self, path: Path, password: bytes | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.p12(password))
        return path


@dataclass
class TinyCA:
    """A root (or intermediate) CA that issues enterprise certificates for tests."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...] = ()  # intermediates above this CA, below the root
    _serial: int = field(default=1000)

    @classmethod
    def create(
        cls,
        name: str = "KFR Pack Test Root CA",
        *,
        key_index: int = 0,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> TinyCA:
        key = rsa_key(key_index)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kfr-conformance tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=3650))
            .not_valid_after(not_after or now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_pem(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem)
        return path

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def intermediate(self, name: str = "KFR Pack Test Issuing CA", *, key_index: int = 1) -> TinyCA:
        key = rsa_key(key_index)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(now - dt.timedelta(days=1000))
            .not_valid_after(now + dt.timedelta(days=1000))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                False,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        return TinyCA(cert, key, chain=(cert, *self.chain))

    def issue(
        self,
        orgnr: str = BANK_ORGNR,
        name: str = BANK_NAME,
        *,
        key_index: int = 5,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        seid: int = 2,
        key_usage: str = "non_repudiation",
    ) -> Issued:
        """An enterprise certificate for ``orgnr``: SEID 2 (organizationIdentifier) or SEID 1
        (serialNumber). ``key_usage`` is ``non_repudiation`` (signing certificate),
        ``digital_signature`` (authentication certificate) or ``key_encipherment``."""
        key = rsa_key(key_index)
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "NO")]
        if seid == 2:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{orgnr}"))
        else:
            attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, orgnr))
        attrs += [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
        now = utcnow()
        usage = {
            "digital_signature": False,
            "content_commitment": False,
            "key_encipherment": False,
        }
        usage[{"non_repudiation": "content_commitment"}.get(key_usage, key_usage)] = True
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(not_before or now - dt.timedelta(days=30))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    **usage,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                False,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        return Issued(cert, key, chain=self.chain)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


# --- results folders ----------------------------------------------------------------------


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class CaseDraft:
    """What a test wants one case to look like."""

    case_id: str
    outcome: Outcome = Outcome.PASSED
    manual: bool = False
    confirmed_by: str | None = None
    operations: tuple[str, ...] = ("add",)


def make_results_dir(
    root: Path,
    *,
    orgnr: str = BANK_ORGNR,
    name: str = BANK_NAME,
    environment: str = "test",
    kfr_base_url: str = TEST_KFR_BASE_URL,
    maskinporten_issuer: str = TEST_MASKINPORTEN_ISSUER,
    cases: Iterable[CaseDraft] = (),
    started_at: dt.datetime | None = None,
    evidence_padding: int = 0,
    sheet_version: str = "1.3",
    seed: int = 7,
) -> Path:
    """A results folder as the runner leaves it: a copy of the session's real sandbox run
    (``tests/real_run.py``), relabelled to ``orgnr``/``environment``/``started_at`` with
    fresh CorrelationIDs from ``seed``. Every row passed, with real evidence, so verify
    re-derives every verdict; ``cases`` then *claims* other outcomes in run.json (the
    evidence stays as it was), and ``evidence_padding`` adds that many bytes to the first
    case's last response body (evidence and journal alike, for size benchmarks)."""
    from real_run import copy_template, rewrite_outputs

    folder = copy_template(
        root, orgnr=orgnr, name=name, environment=environment, kfr_base_url=kfr_base_url,
        maskinporten_issuer=maskinporten_issuer, started_at=started_at, seed=seed,
    )
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    by_id = {case["case_id"]: case for case in run["cases"]}
    for draft in cases:
        case = by_id[draft.case_id]
        case["outcome"] = str(draft.outcome)
        case["manual"] = draft.manual
        case["confirmed_by"] = draft.confirmed_by
        if draft.outcome is not Outcome.PASSED:
            case["message"] = "Svaret avvek fra arket."
    if evidence_padding:
        _pad_first_evidence(folder, run, evidence_padding, random.Random(seed))
    if sheet_version != "1.3":
        from real_run import supplied_sheet

        sheet = supplied_sheet(folder / "original" / run["sheet"]["file_name"], sheet_version)
        run["sheet"]["version"] = sheet_version
        run["sheet"]["sha256"] = hashlib.sha256(sheet.read_bytes()).hexdigest()
    (folder / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=2, sort_keys=True),
                                     encoding="utf-8")
    rewrite_outputs(folder)
    return folder


def _pad_first_evidence(folder: Path, run: dict, size: int, rng: random.Random) -> None:
    first = next(c for c in run["cases"] if c.get("evidence_file"))
    path = folder / first["evidence_file"]
    data = json.loads(path.read_text(encoding="utf-8"))
    target = data["exchanges"][-1]
    # Random hex: compresses about 2:1 like real recorded text, not 1000:1 like "xxx".
    padding = rng.randbytes(size // 2).hex()
    target["response"]["body"] = padding
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    journal = folder / "journal.jsonl"
    lines = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    for line in lines:
        if line.get("case_id") == first["case_id"] and line.get("seq") == target["seq"] \
                and line.get("attempt") == target.get("attempt"):
            line["response"]["body"] = padding
    journal.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines), encoding="utf-8")


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(entries: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """A plain zip of ``entries`` (order kept; duplicates allowed when given as pairs)."""
    items = entries.items() if isinstance(entries, Mapping) else entries
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name, data in items:
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def _zip_entry(
    name: bytes, payload: bytes, *, method: int, crc: int, declared: int, offset: int
) -> tuple[bytes, bytes]:
    """Local header + data, and the central directory record, for one entry."""
    local = (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(payload),
            declared,
            len(name),
            0,
        )
        + name
        + payload
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(payload),
            declared,
            len(name),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        + name
    )
    return local, central


def make_zip_bomb(
    total_size: int = 1 << 30,
    *,
    declared_size: int | None = None,
    name: str = "evidence/bomb.json",
    extra: Mapping[str, bytes] | None = None,
) -> bytes:
    """A zip whose one entry inflates to ``total_size`` zero bytes (1 GiB ≈ 1 MB of zip).

    The deflate stream is crafted, not computed: after a full flush the compressor's output
    for a 1 MiB block of zeros repeats exactly, so the block is written ``total_size / 1 MiB``
    times. ``declared_size`` lets the headers lie about the uncompressed size."""
    block_size = 1 << 20
    assert total_size % block_size == 0 and total_size < 1 << 32
    zeros = bytes(block_size)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    count = total_size // block_size
    payload = block * count + tail
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    declared = total_size if declared_size is None else declared_size
    parts: list[bytes] = []
    centrals: list[bytes] = []
    offset = 0
    entries = [(name.encode(), payload, 8, crc, declared)]
    for extra_name, data in (extra or {}).items():
        entries.append((extra_name.encode(), data, 0, zlib.crc32(data), len(data)))
    for raw_name, data, method, entry_crc, decl in entries:
        local, central = _zip_entry(
            raw_name, data, method=method, crc=entry_crc, declared=decl, offset=offset
        )
        parts.append(local)
        centrals.append(central)
        offset += len(local)
    directory = b"".join(centrals)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), offset, 0
    )
    return b"".join(parts) + directory + end


# --- a ready-made PKI and packs ---------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    """The certificates pack tests need: one trusted root with an issuing CA, our bank's
    signing certificate, another bank's, an expired one, and one from an untrusted root."""

    root: TinyCA
    issuing: TinyCA
    bank: Issued
    other_bank: Issued
    expired: Issued
    untrusted_root: TinyCA
    untrusted: Issued
    seid1: Issued
    encryption_only: Issued


@functools.lru_cache(maxsize=1)
def shared_pki() -> PKI:
    root = TinyCA.create()
    issuing = root.intermediate()
    now = utcnow()
    untrusted_root = TinyCA.create("Not Bits' CA", key_index=2)
    return PKI(
        root=root,
        issuing=issuing,
        bank=issuing.issue(),
        other_bank=issuing.issue(OTHER_BANK_ORGNR, "Annenbank ASA", key_index=6),
        expired=issuing.issue(
            not_before=now - dt.timedelta(days=800), not_after=now - dt.timedelta(days=1)
        ),
        untrusted_root=untrusted_root,
        untrusted=untrusted_root.issue(key_index=7),
        seid1=issuing.issue(seid=1, key_usage="digital_signature"),
        encryption_only=issuing.issue(key_usage="key_encipherment"),
    )


def build_signed_pack(results_dir: Path, issued: Issued | None = None, **kwargs):
    """``build_pack`` with our bank's certificate unless another is given."""
    from conformance.pack.build import build_pack

    issued = issued or shared_pki().bank
    return build_pack(
        results_dir,
        certificate=issued.certificate,
        private_key=issued.private_key,
        chain=issued.chain,
        **kwargs,
    )


def resign(pack: bytes, issued: Issued, *, manifest: bytes | None = None) -> bytes:
    """The pack with its manifest (optionally replaced) signed again by ``issued``."""
    from conformance.pack.sign import sign_manifest

    entries = read_zip(pack)
    if manifest is not None:
        entries["manifest.json"] = manifest
    entries["manifest.json.p7s"] = sign_manifest(
        entries["manifest.json"], issued.certificate, issued.private_key, issued.chain
    )
    return write_zip(sorted(entries.items()))


# --- a local SMTP server ----------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class LocalSmtp:
    host: str
    port: int
    received: list[ReceivedMail]
    logins: list[str]


@contextlib.contextmanager
def smtp_server(*, user: str | None = None, password: str | None = None):
    """An aiosmtpd server on 127.0.0.1 that keeps what it receives. With ``user``, AUTH is
    required (over plain text: loopback only) and only that user/password is accepted."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[ReceivedMail] = []
    logins: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if ok:
            logins.append(user)
        return AuthResult(success=ok, handled=False)  # handled=False: answer 535 on failure

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {}
    if user:
        options = {
            "authenticator": authenticator,
            "auth_required": True,
            "auth_require_tls": False,
        }
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield LocalSmtp("127.0.0.1", port, received, logins)
    finally:
        controller.stop()
