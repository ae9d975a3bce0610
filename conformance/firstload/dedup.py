"""Duplicates among millions of IDs in bounded memory.

A first load can hold 5 million IDs and more; a Python set of them takes ~350 MB. Here
every ``(key, value)`` pair goes to one of P partitions (``key % P``), buffered in
``array('q')`` and spilled to a temporary file per partition when the buffers together
hold ``spill_at`` pairs. At the end each partition is read back on its own, so memory is
the buffers plus one partition's worth (total / P) at a time. Appending is a C-level
array operation; nothing is sorted or hashed until the end.

Keys are the IDs as integers: a valid 11-digit ID starts with a day of at least 01, so it
is ≥ 10^9 and can never equal a 9-digit organisation number.
"""

from __future__ import annotations

import shutil
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

__all__ = ["DuplicateFinder", "EarliestByKey", "partitions_for"]

DEFAULT_SPILL_AT = 1 << 20  # pairs held in memory before spilling (16 MiB of arrays)
PAIRS_PER_PARTITION = 200_000


def partitions_for(expected_pairs: int) -> int:
    """Enough partitions that each holds about PAIRS_PER_PARTITION pairs at the end."""
    return max(8, min(1024, expected_pairs // PAIRS_PER_PARTITION + 1))


class _PartitionedPairs:
    def __init__(
        self, *, partitions: int = 8, spill_at: int = DEFAULT_SPILL_AT, work_dir: Path | None = None
    ) -> None:
        self.partitions = partitions
        self.spill_at = spill_at
        self._work_dir = work_dir
        self._dir: Path | None = None
        self._keys = [array("q") for _ in range(partitions)]
        self._values = [array("q") for _ in range(partitions)]
        self._buffered = 0
        self.added = 0
        self.spills = 0

    def add_many(self, keys: Iterable[int], values: Iterable[int]) -> None:
        key_buffers, value_buffers, p = self._keys, self._values, self.partitions
        count = 0
        for key, value in zip(keys, values, strict=True):
            index = key % p
            key_buffers[index].append(key)
            value_buffers[index].append(value)
            count += 1
        self.added += count
        self._buffered += count
        if self._buffered >= self.spill_at:
            self._spill()

    def _spill(self) -> None:
        if self._dir is None:
            if self._work_dir is not None:
                self._work_dir.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".kfr-dedup-", dir=self._work_dir))
        for index in range(self.partitions):
            if not self._keys[index]:
                continue
            with open(self._dir / f"{index}.k", "ab") as handle:
                self._keys[index].tofile(handle)
            with open(self._dir / f"{index}.v", "ab") as handle:
                self._values[index].tofile(handle)
            self._keys[index] = array("q")
            self._values[index] = array("q")
        self._buffered = 0
        self.spills += 1

    def _partition(self, index: int) -> tuple[array, array]:
        keys, values = array("q"), array("q")
        if self._dir is not None:
            for suffix, target in (("k", keys), ("v", values)):
                path = self._dir / f"{index}.{suffix}"
                if path.exists():
                    with open(path, "rb") as handle:
                        target.frombytes(handle.read())
                    path.unlink()
        keys.extend(self._keys[index])
        values.extend(self._values[index])
        self._keys[index] = array("q")
        self._values[index] = array("q")
        return keys, values

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EarliestByKey(_PartitionedPairs):
    """Keeps the smallest value per key (the earliest start date per ID)."""

    def unique(self) -> Iterator[tuple[int, int]]:
        """Each key once with its smallest value; partitions in order, keys in the order
        they first came. Call once."""
        for index in range(self.partitions):
            keys, values = self._partition(index)
            earliest: dict[int, int] = {}
            get = earliest.get
            for key, value in zip(keys, values, strict=True):
                old = get(key)
                if old is None or value < old:
                    earliest[key] = value
            del keys, values
            yield from earliest.items()
        self.close()


class DuplicateFinder(_PartitionedPairs):
    """Counts keys added more than once. Only keys are kept (the values column stays
    empty): where each duplicate stands is found afterwards, for the few there are."""

    def add_keys(self, keys: Iterable[int]) -> None:
        buffers, p = self._keys, self.partitions
        count = 0
        for key in keys:
            buffers[key % p].append(key)
            count += 1
        self.added += count
        self._buffered += count
        if self._buffered >= self.spill_at:
            self._spill()

    def duplicates(self) -> Iterator[tuple[int, int]]:
        """``(key, times seen)`` for every key seen more than once."""
        for index in range(self.partitions):
            keys, _ = self._partition(index)
            if len(set(keys)) == len(keys):  # the common case, at C speed
                continue
            for key, seen in Counter(keys).items():
                if seen > 1:
                    yield key, seen
        self.close()
