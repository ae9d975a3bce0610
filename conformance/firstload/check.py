"""``batch check``: files someone else produced, judged by the rules ``build`` follows.

Per file: not empty, within the size limit, ASCII, every element ``ID`` or
``ID#YYYY-MM-DD`` without spaces, every ID valid (and not synthetic unless allowed), every
start date a real date no later than today. Across all files: no ID twice. A trailing
line break or comma is only a warning: the sandbox and, as far as is known, KFR tolerate
it, but nothing requires it.

Speed (≥ 200 000 IDs/s, ``benchmarks/bench_batch.py``): files are read in 1 MiB pieces,
IDs go through :func:`conformance.ids.classify_fast`, dates are judged once per distinct
text, and duplicates are found by :class:`DuplicateFinder` at the end, in bounded memory.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conformance.errors import UsageError
from conformance.firstload.batchfile import READ_CHUNK, iter_elements, sha256_of
from conformance.firstload.dedup import DuplicateFinder, partitions_for
from conformance.firstload.rules import (
    MAX_CUSTOMERS_BYTES,
    StartDates,
    format_count,
    id_problem,
    oslo_today,
)
from conformance.ids import IdKind, classify_fast_many, is_synthetic

__all__ = ["CheckReport", "FileCheck", "Problem", "check_files"]

PROBLEMS_KEPT = 1000
DUPLICATES_LOCATED = 100_000  # beyond this many duplicated IDs, only counted


@dataclass(frozen=True)
class Problem:
    file: str
    element: int          # 1-based position in the file; 0 = the file as a whole
    reason: str
    value: str = ""
    warning: bool = False

    def where(self) -> str:
        return f"{self.file} element {self.element}" if self.element else self.file


@dataclass
class FileCheck:
    path: Path
    bytes: int = 0
    sha256: str = ""
    ids: int = 0                  # valid IDs
    elements: int = 0
    errors: int = 0
    by_kind: Counter = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class CheckReport:
    files: list[FileCheck]
    problems: list[Problem]       # the first PROBLEMS_KEPT, errors and warnings
    errors: int = 0
    warnings: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)
    max_bytes: int = MAX_CUSTOMERS_BYTES

    @property
    def ok(self) -> bool:
        return self.errors == 0 and bool(self.files)

    @property
    def ids(self) -> int:
        return sum(f.ids for f in self.files)

    @property
    def by_kind(self) -> Counter:
        total: Counter = Counter()
        for f in self.files:
            total.update(f.by_kind)
        return total


class _Collector:
    def __init__(self, report: CheckReport, sink: Callable[[Problem], None] | None) -> None:
        self.report = report
        self.sink = sink

    def __call__(self, problem: Problem, category: str) -> None:
        report = self.report
        if problem.warning:
            report.warnings += 1
        else:
            report.errors += 1
        report.reasons[category] += 1
        if len(report.problems) < PROBLEMS_KEPT:
            report.problems.append(problem)
        if self.sink is not None:
            self.sink(problem)


def check_files(
    paths: Sequence[Path],
    *,
    allow_synthetic: bool = False,
    today: dt.date | None = None,
    max_bytes: int = MAX_CUSTOMERS_BYTES,
    on_problem: Callable[[Problem], None] | None = None,
    work_dir: Path | None = None,
) -> CheckReport:
    """Check ``paths`` (batch files) and return what was found; ``on_problem`` sees every
    problem, also beyond the first PROBLEMS_KEPT kept in the report."""
    report = CheckReport(files=[], problems=[], max_bytes=max_bytes)
    collect = _Collector(report, on_problem)
    dates = StartDates(today or oslo_today())
    try:
        total_bytes = sum(Path(p).stat().st_size for p in paths)
    except OSError as exc:
        raise UsageError(f"Kan ikke lese {exc.filename}: {exc.strerror}") from exc
    finder = DuplicateFinder(partitions=partitions_for(total_bytes // 10), work_dir=work_dir)
    try:
        for path in paths:
            report.files.append(_check_one(Path(path), allow_synthetic, dates, finder, collect, max_bytes))
        repeated: dict[str, int] = {}
        for key, seen in finder.duplicates():
            report.duplicates += seen - 1
            if len(repeated) < DUPLICATES_LOCATED:
                repeated[f"{key:011d}" if key >= 1_000_000_000 else f"{key:09d}"] = seen
    finally:
        finder.close()
    if repeated:
        _locate_duplicates(report, repeated, dates, collect)
    unlocated = report.duplicates - sum(seen - 1 for seen in repeated.values())
    if unlocated:
        report.errors += unlocated
        report.reasons["duplikat"] += unlocated
    return report


def _locate_duplicates(
    report: CheckReport, repeated: dict[str, int], dates: StartDates, collect: _Collector
) -> None:
    """A second pass for the duplicated IDs only: where each stands, first one named.
    Elements refused for their date were not counted in the first pass and are skipped."""
    first_seen: dict[str, tuple[str, int]] = {}
    for file in report.files:
        number = 0
        for element in _elements(file.path):
            number += 1
            customer, sep, day = element.partition("#")
            if customer not in repeated or (sep and dates.check(day).__class__ is not int):
                continue
            earlier = first_seen.get(customer)
            if earlier is None:
                first_seen[customer] = (file.name, number)
                continue
            same = " i samme fil" if earlier[0] == file.name else f" i {earlier[0]}"
            file.errors += 1
            collect(Problem(file.name, number,
                            f"duplikat: står også som element {earlier[1]}{same}", customer),
                    "duplikat")


def _elements(path: Path) -> Iterator[str]:
    """The elements as the checks saw them (the last one without trailing whitespace)."""
    previous: str | None = None
    for element in iter_elements(path):
        if previous is not None:
            yield previous
        previous = element
    if previous is not None and previous.rstrip():
        yield previous.rstrip()


def _check_one(
    path: Path,
    allow_synthetic: bool,
    dates: StartDates,
    finder: DuplicateFinder,
    collect: _Collector,
    max_bytes: int,
) -> FileCheck:
    result = FileCheck(path)
    name = path.name
    try:
        result.bytes = path.stat().st_size
        result.sha256 = sha256_of(path)
    except OSError as exc:
        raise UsageError(f"Kan ikke lese {path}: {exc.strerror or exc}") from exc
    if result.bytes == 0:
        result.errors += 1
        collect(Problem(name, 0, "filen er tom"), "tom fil")
        return result
    if result.bytes > max_bytes:
        result.errors += 1
        collect(
            Problem(name, 0, f"filen er {format_count(result.bytes)} byte; høyst "
                    f"{format_count(max_bytes)} får plass i 10 MB med multipart-konvolutten"),
            "for stor fil",
        )
    counts = {IdKind.FODSELSNUMMER: 0, IdKind.D_NUMMER: 0, IdKind.ORGNR: 0}
    scan = _Scanner(name, allow_synthetic, dates, finder, collect, result, counts)
    try:
        with open(path, "rb") as handle:
            carry = ""
            while chunk := handle.read(READ_CHUNK):
                parts = (carry + chunk.decode("latin-1")).split(",")
                carry = parts.pop()
                scan(parts)
    except OSError as exc:
        raise UsageError(f"Kan ikke lese {path}: {exc.strerror or exc}") from exc
    tail = carry.rstrip()
    if tail != carry or not tail:
        if scan.number == 0 and not tail:
            result.errors += 1
            collect(Problem(name, 0, "filen har ingen ID-er"), "tom fil")
        else:
            ending = ("komma" if not carry else "komma og linjeskift") if not tail else "linjeskift eller mellomrom"
            collect(Problem(name, scan.number + 1, f"filen slutter med {ending}; "
                            "KFR-formatet trenger det ikke", warning=True), "avsluttende tegn")
    if tail:
        scan([tail])
    result.elements = scan.number
    result.ids = sum(counts.values())
    result.by_kind.update({k: v for k, v in counts.items() if v})
    return result


class _Scanner:
    """The hot loop: judges elements and hands valid IDs to the duplicate finder. IDs are
    classified a chunk at a time (:func:`classify_fast_many`), so the loop here does only
    dates, counting and bookkeeping."""

    def __init__(self, name: str, allow_synthetic: bool, dates: StartDates,
                 finder: DuplicateFinder, collect: _Collector, result: FileCheck,
                 counts: dict[IdKind, int]) -> None:
        self.name, self.allow_synthetic = name, allow_synthetic
        self.dates, self.finder, self.collect, self.result, self.counts = dates, finder, collect, result, counts
        self.number = 0

    def __call__(self, elements: list[str]) -> None:
        number, counts = self.number, self.counts
        allow_synthetic = self.allow_synthetic
        known_dates, check_date = self.dates.known, self.dates.check
        parts = [element.partition("#") for element in elements]
        kinds = classify_fast_many([part[0] for part in parts])
        keys: list[int] = []
        append = keys.append
        for (customer, sep, day), kind in zip(parts, kinds, strict=True):
            number += 1
            if kind is None or (not allow_synthetic and is_synthetic(customer)):
                if kind is not None:
                    counts[kind] -= 1  # valid, but refused: not counted below
                self._element_problem(number, customer + sep + day)
                continue
            if sep:
                verdict = known_dates.get(day)
                if verdict is None:
                    verdict = check_date(day)
                if verdict.__class__ is not int:
                    counts[kind] -= 1
                    self.result.errors += 1
                    self.collect(Problem(self.name, number, str(verdict), (customer + sep + day)[:40]),
                                 "startdato etter i dag" if "etter i dag" in str(verdict) else "ugyldig startdato")
                    continue
            append(int(customer))
        # Counted per chunk with list.count (identity comparisons in C): hashing an enum
        # member per ID, as a dict of counters would, costs more than the rest of the loop.
        for kind in counts:
            counts[kind] += kinds.count(kind)
        self.number = number
        self.finder.add_keys(keys)

    def _element_problem(self, number: int, element: str) -> None:
        """Say what is wrong with an element whose ID did not pass (the slow path)."""
        self.result.errors += 1
        stripped = element.strip()
        if not stripped:
            self.collect(Problem(self.name, number, "tomt element (to komma etter hverandre)"),
                         "tomt element")
        elif stripped != element:
            self.collect(Problem(self.name, number, "mellomrom eller linjeskift i elementet",
                                 element.strip()[:40]), "mellomrom")
        else:
            customer = element.partition("#")[0]
            _, reason = id_problem(customer, allow_synthetic=self.allow_synthetic)
            category = "syntetisk test-ID" if (reason or "").startswith("syntetisk") else "ugyldig ID"
            self.collect(Problem(self.name, number, reason or "ugyldig element", customer[:40]),
                         category)
