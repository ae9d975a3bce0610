"""Where the gateway's exchanges go: numbered, kept for the API, journalled on disk.

The proxy hands over each exchange (already redacted) on the event loop; numbering and
keeping it are a few dictionary operations. Writing it out happens on a writer thread that
group-commits: whatever has queued up is appended with one write and one fsync
(:meth:`conformance.evidence.Journal.append_many`), so a busy core system never waits for
the disk and nothing is lost — :meth:`close` drains the queue before it returns.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conformance.evidence import Journal

__all__ = ["JOURNAL_FILE", "GatewayRecorder"]

JOURNAL_FILE = "gateway.jsonl"
_STOP = object()

Listener = Callable[[dict[str, Any]], None]


class GatewayRecorder:
    def __init__(self, record_dir: Path | None, *, keep_in_memory: int = 100_000) -> None:
        self.journal = Journal(Path(record_dir) / JOURNAL_FILE) if record_dir else None
        self._kept: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_in_memory)
        self._changed = threading.Condition()
        self._seq = 0
        self._listeners: list[Listener] = []
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._written = 0
        self.write_error: str | None = None
        self._writer = threading.Thread(target=self._write_loop, name="gateway-journal", daemon=True)
        self._writer.start()

    @property
    def journal_path(self) -> Path | None:
        return self.journal.path if self.journal else None

    def add_listener(self, listener: Listener) -> None:
        """``listener(exchange)`` is called on the gateway's event loop for every exchange;
        it must be quick (printing a line is)."""
        self._listeners.append(listener)

    def record(self, exchange: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            self._seq += 1
            exchange["seq"] = self._seq
            self._kept.append(exchange)
            self._changed.notify_all()
        if self.journal is not None:
            self._queue.put(exchange)
        for listener in self._listeners:
            listener(exchange)
        return exchange

    @property
    def count(self) -> int:
        with self._changed:
            return self._seq

    def exchanges(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Exchanges with ``seq`` > ``since``, oldest first (those still kept in memory)."""
        with self._changed:
            items = [e for e in self._kept if e["seq"] > since]
        return items[:limit] if limit is not None else items

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> dict[str, Any] | None:
        """The first exchange after ``since`` that ``predicate`` accepts, waiting up to
        ``timeout`` seconds for it to happen; None when it does not."""
        deadline = time.monotonic() + timeout
        checked = since
        with self._changed:
            while True:
                for exchange in self._kept:
                    if exchange["seq"] > checked:
                        checked = exchange["seq"]
                        if predicate(exchange):
                            return exchange
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))

    def flush(self, timeout: float = 10.0) -> bool:
        """True once every recorded exchange is in the journal (fsynced)."""
        deadline = time.monotonic() + timeout
        while self.journal is not None and self._written < self.count:
            if time.monotonic() > deadline or not self._writer.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        if self.journal is not None:
            self.journal.close()

    # ---- the writer thread

    def _drain(self, first: Any) -> Iterator[Any]:
        yield first
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def _write_loop(self) -> None:
        while True:
            batch = list(self._drain(self._queue.get()))
            stop = any(item is _STOP for item in batch)
            exchanges = [item for item in batch if item is not _STOP]
            if exchanges and self.journal is not None:
                try:
                    self.journal.append_many(exchanges)
                    self._written += len(exchanges)
                except (OSError, ValueError) as exc:  # a full disk must not stop the gateway
                    self.write_error = f"{type(exc).__name__}: {exc}"
            if stop:
                return
