"""Bank-supplied test identities (``--test-ids FILE``): for environments that only accept
identities from the bank's own test data or from Tenor.

The file holds one identity per line (fødselsnummer, D-nummer or organisasjonsnummer; a CSV
with the identity in its first column works too; ``#`` starts a comment). Every line is
validated before the run starts; a bad line stops the run with its line number. Each row
takes fresh identities of the kind it needs; an identity is used once, across runs too (a
ledger under ``$KFR_CONFORMANCE_HOME/test-ids/`` remembers which were sent), because a
second registration of the same customer answers 200, not 201. Under ``pytest -n`` each
worker takes its own share of the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.errors import UsageError
from conformance.ids import IdKind, classify

__all__ = ["TestIdentities", "load_test_ids"]

KIND_NB = {IdKind.FODSELSNUMMER: "fødselsnummer", IdKind.D_NUMMER: "D-nummer",
           IdKind.ORGNR: "organisasjonsnummer"}


@dataclass
class TestIdentities:
    """Pools of fresh identities per kind, and the ledger of those already used."""

    __test__ = False  # not a pytest test class, whatever its name says

    pools: dict[IdKind, list[str]]
    ledger: Path | None = None
    source: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, kind: IdKind | str) -> str:
        kind = IdKind(kind)
        with self._lock:
            pool = self.pools.get(kind, [])
            if not pool:
                raise UsageError(
                    f"Det er ikke flere ubrukte {KIND_NB[kind]} igjen i {self.source or '--test-ids'}.",
                    hint="Legg til flere testidentiteter fra bankens testdata eller Tenor; hver "
                    "identitet brukes bare én gang.",
                )
            value = pool.pop(0)
            if self.ledger is not None:
                self.ledger.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (value + "\n").encode())
                finally:
                    os.close(fd)
            return value

    def counts(self) -> dict[str, int]:
        return {KIND_NB[k]: len(v) for k, v in self.pools.items()}

    def share(self, index: int, count: int) -> TestIdentities:
        """Worker ``index`` of ``count``'s part of every pool (``pytest -n``)."""
        pools = {kind: values[index::count] for kind, values in self.pools.items()}
        return TestIdentities(pools, self.ledger, self.source)


def _parse(lines: Iterable[str], source: str) -> tuple[dict[IdKind, list[str]], list[str]]:
    pools: dict[IdKind, list[str]] = {kind: [] for kind in IdKind}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        value = text.replace(";", ",").split(",")[0].strip().strip('"').replace(" ", "")
        if number == 1 and not value.isdigit():
            continue  # a CSV header
        kind = classify(value)
        if kind is None:
            problems.append(f"linje {number}: «{value[:20]}» er ikke et gyldig fødselsnummer, D-nummer eller organisasjonsnummer")
            continue
        if value in seen:
            problems.append(f"linje {number}: {value} står også på linje {seen[value]}")
            continue
        seen[value] = number
        pools[kind].append(value)
    return pools, problems


def load_test_ids(path: Path, *, ledger: Path | None = None) -> TestIdentities:
    """Read and validate ``path``; identities already in ``ledger`` are left out."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise UsageError(f"Finner ikke --test-ids-filen {path}.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Kan ikke lese --test-ids-filen {path}: {exc}") from exc
    pools, problems = _parse(text.splitlines(), str(path))
    if problems:
        shown = "\n  - ".join(problems[:20]) + (f"\n  … og {len(problems) - 20} til" if len(problems) > 20 else "")
        raise UsageError(f"--test-ids-filen {path} har ugyldige linjer:\n  - {shown}")
    used: set[str] = set()
    if ledger is not None and ledger.is_file():
        used = {line.strip() for line in ledger.read_text(encoding="utf-8").splitlines() if line.strip()}
    pools = {kind: [v for v in values if v not in used] for kind, values in pools.items()}
    return TestIdentities(pools, ledger, str(path))
