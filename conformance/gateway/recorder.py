"""Where the gateway's exchanges go: numbered, kept for the API, journalled on disk.

The proxy hands over each exchange (already redacted) before it passes the answer on;
numbering and keeping it are a few dictionary operations, so whoever drives the core
system finds the exchange as soon as the core system has its answer. After the answer is
out, the proxy encodes what was recorded (:meth:`GatewayRecorder.encode_pending`, on the
event loop: no lock handed to another thread per request). A writer thread wakes every few
milliseconds and appends whatever has been encoded with one write and one fsync
(:meth:`conformance.evidence.Journal.append_encoded`, which releases the GIL), so a busy
core system never waits for the disk; :meth:`close` writes everything before it returns.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.evidence import Journal, encode_exchange

__all__ = ["JOURNAL_FILE", "GatewayRecorder"]

JOURNAL_FILE = "gateway.jsonl"
WRITE_EVERY_S = 0.005   # how long an encoded exchange may wait for the writer

Listener = Callable[[dict[str, Any]], None]


class GatewayRecorder:
    def __init__(self, record_dir: Path | None, *, keep_in_memory: int = 100_000) -> None:
        self.journal = Journal(Path(record_dir) / JOURNAL_FILE) if record_dir else None
        self._kept: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_in_memory)
        self._changed = threading.Condition()
        self._seq = 0
        self._listeners: list[Listener] = []
        # Both deques are appended on one side and emptied on the other: thread-safe
        # without a lock, so recording never waits for the writer.
        self._unencoded: collections.deque[dict[str, Any]] = collections.deque()
        self._encoded: collections.deque[bytes] = collections.deque()
        self._written = 0
        self._closing = threading.Event()
        self.write_error: str | None = None
        self._writer = threading.Thread(target=self._write_loop, name="gateway-journal", daemon=True)
        if self.journal is not None:
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
            if self.journal is not None:
                self._unencoded.append(exchange)
            self._changed.notify_all()
        for listener in self._listeners:
            listener(exchange)
        return exchange

    def encode_pending(self) -> None:
        """Encode what was recorded for the writer (the proxy calls this once an answer is
        out; :meth:`flush` and :meth:`close` call it too)."""
        while True:
            try:
                exchange = self._unencoded.popleft()
            except IndexError:
                return
            self._encoded.append(encode_exchange(exchange))

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
        self.encode_pending()
        deadline = time.monotonic() + timeout
        while self.journal is not None and self._written < self.count:
            if time.monotonic() > deadline or not self._writer.is_alive():
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        self.encode_pending()
        self._closing.set()
        if self._writer.is_alive():
            self._writer.join(timeout=30)
        if self.journal is not None:
            self.journal.close()

    # ---- the writer thread

    def _write_loop(self) -> None:
        assert self.journal is not None
        while True:
            closing = self._closing.wait(WRITE_EVERY_S)
            chunks = []
            while True:
                try:
                    chunks.append(self._encoded.popleft())
                except IndexError:
                    break
            if chunks:
                try:
                    self.journal.append_encoded(b"".join(chunks))
                    self._written += len(chunks)
                except (OSError, ValueError) as exc:  # a full disk must not stop the gateway
                    self.write_error = f"{type(exc).__name__}: {exc}"
            if closing and not self._encoded:
                return
