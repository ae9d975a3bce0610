"""Asynchronous batch ingestion: a 201 means "valid", not "loaded" (KFR reads ~250 IDs/s).

One background thread per running sandbox reads pending batches from the database and
stores their relationships in chunks, at ``ingest_rate`` IDs per second (unlimited when
None or 0). Each chunk is one transaction together with the batch's progress mark, so a
restart resumes where it stopped and two processes on one data folder never store an
entry twice. A batch's entry list is read from the database a window at a time, never
whole: a 10 MB list as Python strings would take some 60 MB.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from conformance.errors import SandboxError
from conformance.sandbox.store import PendingBatch, Store

log = logging.getLogger("conformance.sandbox")

# Rows per transaction at an unlimited rate: big enough to be fast (fewer commits and
# checkpoints), short enough (~0.1 s) not to stall single requests waiting to write.
UNLIMITED_CHUNK = 10_000
RATE_TICK_S = 0.05
IDLE_POLL_S = 0.5  # also picks up batches accepted by another process on the same data folder
READ_WINDOW = 64 * 1024  # bytes of a batch's entry list read at a time


def _customer_id(row: tuple[str, str]) -> str:
    return row[0]


class _EntryReader:
    """One pending batch's entries, in order, read from the database a window at a time."""

    def __init__(self, store: Store, batch_id: int) -> None:
        self.store = store
        self.batch_id = batch_id
        self.position = 0  # entries handed out so far
        self._offset = 0  # bytes read so far
        self._ready: list[str] = []
        self._tail = b""  # an entry cut by the window's end
        self._exhausted = False

    def take(self, count: int) -> list[str]:
        while len(self._ready) < count and not self._exhausted:
            data = self.store.read_batch_entries(self.batch_id, self._offset, READ_WINDOW)
            if not data:
                self._exhausted = True
                if self._tail:
                    self._ready.append(self._tail.decode("utf-8"))
                    self._tail = b""
                break
            self._offset += len(data)
            pieces = (self._tail + data).split(b",")
            self._tail = pieces.pop()
            self._ready.extend(piece.decode("utf-8") for piece in pieces)
        taken = self._ready[:count]
        del self._ready[:count]
        self.position += len(taken)
        return taken

    def skip_to(self, position: int) -> None:
        """Resume after a restart: pass over the entries already stored."""
        while self.position < position and self.take(min(position - self.position, 10_000)):
            pass


class Ingester(threading.Thread):
    def __init__(self, store: Store, rate: float | None, wake: threading.Event) -> None:
        super().__init__(name="sandbox-ingest", daemon=True)
        self.store = store
        self.rate = rate or None
        self.wake = wake
        self._stop_event = threading.Event()
        self._readers: dict[int, _EntryReader] = {}

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self.wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            self.store.tune_for_bulk()
        except (SandboxError, sqlite3.Error) as exc:
            log.warning("batch ingestion cannot start: %s", exc)
            return
        while not self._stop_event.is_set():
            try:
                pending = self.store.pending_batches()
                for batch in pending:
                    if self._stop_event.is_set():
                        return
                    self._ingest(batch)
            except (SandboxError, sqlite3.Error) as exc:
                if self._stop_event.is_set():
                    return
                log.warning("batch ingestion paused: %s", exc)
                pending = []
            if not pending:
                self.wake.wait(IDLE_POLL_S)
                self.wake.clear()

    def _reader(self, batch: PendingBatch) -> _EntryReader:
        reader = self._readers.get(batch.id)
        if reader is None or reader.position != batch.done:
            reader = self._readers[batch.id] = _EntryReader(self.store, batch.id)
            reader.skip_to(batch.done)
        return reader

    def _ingest(self, batch: PendingBatch) -> None:
        reader = self._reader(batch)
        position = batch.done
        allowance = 0.0
        last = time.monotonic()
        try:
            while position < batch.total and not self._stop_event.is_set():
                if self.rate is None:
                    count = UNLIMITED_CHUNK
                else:
                    now = time.monotonic()
                    allowance = min(allowance + (now - last) * self.rate, max(self.rate, 1.0))
                    last = now
                    if allowance < 1:
                        self._stop_event.wait(min(RATE_TICK_S, (1 - allowance) / self.rate))
                        continue
                    count = int(allowance)
                    allowance -= count
                chunk = reader.take(min(count, batch.total - position))
                if not chunk:  # the stored list is shorter than its count: nothing more to read
                    log.warning("batch %s holds fewer entries than announced", batch.id)
                    self._readers.pop(batch.id, None)
                    return
                rows = []
                for item in chunk:
                    cid, _, day = item.partition("#")
                    rows.append((cid, day or batch.default_start))
                # In key order, each index page is touched once per chunk, so a small page
                # cache suffices. The sort is stable: of two entries for one customer in a
                # chunk the first still wins, as in file order.
                rows.sort(key=_customer_id)
                if not self.store.ingest_chunk(batch, position, rows):
                    self._readers.pop(batch.id, None)
                    return  # someone else moved this batch on: re-read it next round
                position += len(chunk)
                batch = PendingBatch(
                    batch.id, batch.fid, batch.total, position, batch.default_start
                )
        finally:
            if position >= batch.total or self._stop_event.is_set():
                self._readers.pop(batch.id, None)
