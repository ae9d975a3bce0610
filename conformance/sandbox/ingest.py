"""Asynchronous batch ingestion: a 201 means "valid", not "loaded" (KFR reads ~250 IDs/s).

One background thread per running sandbox reads pending batches from the database and
stores their relationships in chunks, at ``ingest_rate`` IDs per second (unlimited when
None or 0). Each chunk is one transaction together with the batch's progress mark, so a
restart resumes where it stopped and two processes on one data folder never store an
entry twice.
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


class Ingester(threading.Thread):
    def __init__(self, store: Store, rate: float | None, wake: threading.Event) -> None:
        super().__init__(name="sandbox-ingest", daemon=True)
        self.store = store
        self.rate = rate or None
        self.wake = wake
        self._stop_event = threading.Event()
        self._entries: dict[int, list[str]] = {}

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

    def _load(self, batch: PendingBatch) -> list[str]:
        entries = self._entries.get(batch.id)
        if entries is None:
            text = self.store.batch_entries(batch.id) or ""
            entries = self._entries[batch.id] = text.split(",") if text else []
        return entries

    def _ingest(self, batch: PendingBatch) -> None:
        entries = self._load(batch)
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
                chunk = entries[position : position + count]
                if not chunk:  # the stored list is shorter than its count: nothing more to read
                    log.warning("batch %s holds fewer entries than announced", batch.id)
                    return
                rows = []
                for item in chunk:
                    cid, _, day = item.partition("#")
                    rows.append((cid, day or batch.default_start))
                if not self.store.ingest_chunk(batch, position, rows):
                    return  # someone else moved this batch on: re-read it next round
                position += len(chunk)
                batch = PendingBatch(
                    batch.id, batch.fid, batch.total, position, batch.default_start
                )
        finally:
            if position >= batch.total or self._stop_event.is_set():
                self._entries.pop(batch.id, None)
