"""Packs for the archive tests: real signed packs from the pack engineer's builder.

A ``PackSet`` holds a few banks' packs as Bits would receive them: valid ones from the
test environment, one sandbox run (refused unless ``--allow-sandbox``), one tampered after
signing, and a C-3 e-mail. Everything is synthetic (``synthetic_orgnr``), and built once
per session because RSA keys and signatures take a moment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import shutil
import uuid
from collections.abc import Callable
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
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    prepare: Callable[[Path], None] | None = None,
) -> Path:
    """Build one real signed pack; returns the zip (or the C-3 e-mail with ``with_email``).
    ``prepare`` may change the results folder before it is signed."""
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
    restamp_kfr_answers(folder)
    if prepare is not None:
        prepare(folder)
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


_PACK_OUTPUTS = ("manifest.json", "manifest.json.p7s", "c3-epost.eml")


def _text_files(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".json", ".jsonl", ".html") and p.name not in _PACK_OUTPUTS
    ]


def _rewrite_exchanges(folder: Path, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to every exchange, in the evidence files and the journal alike."""
    for path in sorted((folder / "evidence").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for exchange in document["exchanges"]:
            change(exchange)
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    for journal in sorted(folder.glob("journal*.jsonl")):
        lines = [json.loads(line) for line in journal.read_text().splitlines() if line]
        for exchange in lines:
            change(exchange)
        journal.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in lines))


def _timestamped(body: object) -> dict | None:
    if not isinstance(body, str) or '"timestamp"' not in body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "timestamp" in parsed else None


def restamp_kfr_answers(folder: Path, *, shift: dt.timedelta = dt.timedelta(0)) -> None:
    """KFR stamps its error answers with the time it answered. A results folder relabelled
    from another run (as ``make_results_dir`` may make them) keeps that run's stamps, which
    makes it a replay of that run's answers; restamp each answer with its own exchange's
    time (plus ``shift``), as KFR would have."""

    def restamp(exchange: dict) -> None:
        response = exchange.get("response") or {}
        parsed = _timestamped(response.get("body"))
        if parsed is None:
            return
        moment = dt.datetime.fromisoformat(exchange["started_at"].replace("Z", "+00:00"))
        parsed["timestamp"] = (moment + shift).strftime("%Y-%m-%dT%H:%M:%SZ")
        response["body"] = json.dumps(parsed, ensure_ascii=False)

    _rewrite_exchanges(folder, restamp)


def with_kfr_answers(folder: Path, seed: int = 1) -> None:
    """Make sure the run has distinctive KFR answers: its error answers restamped at a
    moment of its own or, in a folder whose exchanges carry no answer bodies at all, a
    timestamped answer for every KFR exchange."""
    rng = random.Random(seed)
    found = []
    _rewrite_exchanges(
        folder, lambda e: found.append(_timestamped((e.get("response") or {}).get("body")))
    )
    if any(found):
        restamp_kfr_answers(folder, shift=dt.timedelta(seconds=rng.randrange(1, 10**6)))
        return
    answers: dict[tuple[str, int], str] = {}

    def answer(exchange: dict) -> None:
        if exchange.get("operation") == "token":
            return
        key = (exchange["case_id"], exchange["seq"])
        if key not in answers:
            moment = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(
                seconds=rng.randrange(10**7)
            )
            answers[key] = json.dumps(
                {
                    "errorCode": f"KFR-{rng.randrange(1, 20):03d}",
                    "errorMessage": "Svar fra KFR i testmiljøet",
                    "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        exchange["response"]["body"] = answers[key]

    _rewrite_exchanges(folder, answer)


def rewrite_run(
    source: Path, orgnr: str, name: str, work: Path, *, fresh_correlation_ids: bool = False
) -> Path:
    """A copy of the results folder ``source`` passed off as bank ``orgnr``'s: its orgnr
    and bank name rewritten everywhere (so every fid in the evidence is the new bank's),
    pack outputs left out. With ``fresh_correlation_ids`` every CorrelationID is replaced
    too, so only KFR's answers are left the same. Returns the new folder, unsigned."""
    run = json.loads((source / "run.json").read_text(encoding="utf-8"))
    old_orgnr, old_name = run["bank"]["orgnr"], run["bank"]["name"]
    target = work / orgnr / f"{source.name}-replay"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.zip", *_PACK_OUTPUTS))
    mapping = {old_orgnr: orgnr, json.dumps(old_name)[1:-1]: json.dumps(name)[1:-1]}
    if fresh_correlation_ids:
        for path in _text_files(target):
            for value in _UUID.findall(path.read_text(encoding="utf-8")):
                mapping.setdefault(value, str(uuid.uuid4()))
    for path in _text_files(target):
        text = path.read_text(encoding="utf-8")
        for old, new in mapping.items():
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return target


def replay_as(
    source_zip: Path,
    bank: Bank,
    ca: TinyCA,
    work: Path,
    *,
    fresh_correlation_ids: bool = False,
) -> Path:
    """Another run's evidence re-signed with ``bank``'s own key (see ``rewrite_run``): a
    pack the verifier accepts. Returns the new zip."""
    target = rewrite_run(
        source_zip.parent, bank.orgnr, bank.name, work, fresh_correlation_ids=fresh_correlation_ids
    )
    issued = ca.issue(bank.orgnr, bank.name, key_index=bank.key_index)
    result = build_pack(
        target,
        certificate=issued.certificate,
        private_key=issued.private_key,
        chain=issued.chain,
        contact="kontakt@example.invalid",
    )
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
