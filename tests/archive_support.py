"""Packs for the archive tests: real signed packs from the pack engineer's builder.

A ``PackSet`` holds a few banks' packs as Bits would receive them: valid ones from the
test environment, one sandbox run (refused unless ``--allow-sandbox``), one tampered after
signing, and a C-3 e-mail. Everything is synthetic (``synthetic_orgnr``), and built once
per session because RSA keys and signatures take a moment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pack_support import TinyCA, make_results_dir, read_zip, write_zip

from conformance.ids import synthetic_orgnr
from conformance.pack.build import build_pack
from conformance.pack.verify import VerificationPolicy

SANDBOX_KFR_BASE_URL = "http://127.0.0.1:5000/kar-ws/api/v1"
SANDBOX_ISSUER = "http://127.0.0.1:5000/maskinporten/"
# A bank name with markup: every page of the site must show it as text.
HOSTILE_NAME = 'Skurk <script>alert("x")</script> & Co AS'


@dataclass(frozen=True)
class Bank:
    orgnr: str
    name: str
    key_index: int


BANKS = (
    Bank(synthetic_orgnr(random.Random(6101)), "Fjordbanken AS", 11),
    Bank(synthetic_orgnr(random.Random(6102)), "Nordlys Sparebank", 12),
    Bank(synthetic_orgnr(random.Random(6103)), HOSTILE_NAME, 13),
)


@dataclass
class PackSet:
    """Named packs (zip paths) plus the CA a verifier must trust for them."""

    ca_pem: Path
    ca: TinyCA
    packs: dict[str, Path] = field(default_factory=dict)

    def policy(self, **overrides) -> VerificationPolicy:
        return VerificationPolicy(**{"trust_roots": (self.ca.certificate,), **overrides})

    def copy_to(self, folder: Path) -> dict[str, Path]:
        """Fresh copies (tests may damage them), same file names."""
        out = {}
        for name, path in self.packs.items():
            target = folder / name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            out[name] = target
        return out


def make_pack(
    work: Path,
    ca: TinyCA,
    bank: Bank,
    *,
    started_at: dt.datetime,
    environment: str = "test",
    seed: int = 1,
    with_email: bool = False,
) -> Path:
    """Build one real signed pack; returns the zip (or the C-3 e-mail with ``with_email``)."""
    extra = {}
    if environment == "sandbox":
        extra = {"kfr_base_url": SANDBOX_KFR_BASE_URL, "maskinporten_issuer": SANDBOX_ISSUER}
    folder = make_results_dir(
        work,
        orgnr=bank.orgnr,
        name=bank.name,
        environment=environment,
        started_at=started_at,
        seed=seed,
        **extra,
    )
    issued = ca.issue(bank.orgnr, bank.name, key_index=bank.key_index)
    result = build_pack(
        folder,
        certificate=issued.certificate,
        private_key=issued.private_key,
        chain=issued.chain,
        contact="kontakt@example.invalid",
    )
    if with_email:
        assert result.email_path is not None, result.blockers
        return result.email_path
    return result.zip_path


def tamper(zip_path: Path, target: Path, member: str = "report.html") -> Path:
    """The same pack with one member changed after signing (same file name, new bytes)."""
    entries = read_zip(zip_path.read_bytes())
    entries[member] = entries[member] + b"<!-- endret etter signering -->"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(write_zip(entries))
    return target


def build_pack_set(work: Path) -> PackSet:
    """The standard set: three banks, five packs, one tampered, one sandbox, one e-mail."""
    ca = TinyCA.create("KFR Arkiv Test Root CA", key_index=10)
    ca_pem = ca.write_pem(work / "trust" / "ca.pem")
    base = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
    fjord, nordlys, hostile = BANKS
    packs = PackSet(ca_pem, ca)
    packs.packs["fjord-1"] = make_pack(work / "runs", ca, fjord, started_at=base, seed=1)
    packs.packs["fjord-2"] = make_pack(
        work / "runs", ca, fjord, started_at=base + dt.timedelta(days=30), seed=2
    )
    packs.packs["nordlys-1"] = make_pack(
        work / "runs", ca, nordlys, started_at=base + dt.timedelta(days=10), seed=3
    )
    packs.packs["hostile-sandbox"] = make_pack(
        work / "runs",
        ca,
        hostile,
        started_at=base + dt.timedelta(days=20),
        seed=4,
        environment="sandbox",
    )
    packs.packs["nordlys-tampered"] = tamper(
        packs.packs["nordlys-1"], work / "tampered" / packs.packs["nordlys-1"].name
    )
    packs.packs["fjord-3-email"] = make_pack(
        work / "runs", ca, fjord, started_at=base + dt.timedelta(days=45), seed=5, with_email=True
    )
    return packs


_CACHE: dict[str, PackSet] = {}


def cached_pack_set(tmp_path_factory) -> PackSet:
    """One ``PackSet`` per test session (use from a session-scoped fixture)."""
    if "standard" not in _CACHE:
        _CACHE["standard"] = build_pack_set(tmp_path_factory.mktemp("archive-packs"))
    return _CACHE["standard"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def overwrite(path: Path, data: bytes) -> None:
    """Change an archived file the way a person with write access would: archived packs
    are read-only (0444), so make it writable first."""
    path.chmod(0o644)
    path.write_bytes(data)
