"""The sandbox's request log: every KFR request with the contract's verdicts on it.

For a core system under development: point it at ``sandbox serve`` and read, request by
request, what KFR's contract says about it — the same rules, applied by the same
:class:`conformance.contract.ContractSession`, as the recording gateway and the judge.

Each entry has ``contract`` (the failed verdicts in full) and ``passed`` (the ids of the
rules that passed). The log lives in memory (the last :data:`KEEP` entries, for the page
``/_sandbox/log``) and in ``<data dir>/request-log.jsonl`` (for ``kfr-conformance sandbox
log [--follow]``, from another process). It is a developer's view, not evidence: lines are written without
fsync, and the file is rotated to ``request-log.1.jsonl`` when it grows past
:data:`ROTATE_BYTES`. Tokens are never logged, only their non-secret claims.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conformance.contract import (
    BatchBodyReader,
    ContractSession,
    RequestFacts,
    ResponseFacts,
    Verdict,
)
from conformance.sandbox.context import KFR_PREFIX, SandboxContext
from conformance.sandbox.settings import is_loopback_host

__all__ = ["LOG_FILE", "RequestLog", "RequestLogMiddleware", "follow_log", "format_entry", "read_log"]

LOG_FILE = "request-log.jsonl"
KEEP = 5000
ROTATE_BYTES = 20 * 1024 * 1024
PAGE_PATH = "/_sandbox/log"
_SKIP = (KFR_PREFIX + "/openapi.yaml",)


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestLog:
    """The entries of one sandbox: kept in memory and appended to the log file."""

    def __init__(self, data_dir: Path, issuer: str) -> None:
        self.path = Path(data_dir) / LOG_FILE
        self.issuer = issuer
        # (bank, the entry's JSON line): a line is a fifth of what the entry takes as dicts,
        # which kept 5 000 entries from costing the sandbox ~15 MB of its memory goal.
        self._entries: collections.deque[tuple[str | None, bytes]] = collections.deque(maxlen=KEEP)
        self._sessions: dict[str, ContractSession] = {}
        self._lock = threading.Lock()
        self._lines = 0
        self._fd = -1
        self.write_error: str | None = None

    def session(self, bank: str) -> ContractSession:
        with self._lock:
            session = self._sessions.get(bank)
            if session is None:
                # The sandbox has no pace of its own to enforce: rate findings come from
                # the shared default, as at the gateway.
                session = self._sessions[bank] = ContractSession(bank, issuer=self.issuer)
            return session

    def add(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self._entries.append((entry.get("bank"), line))
            self._lines += 1
            try:
                if self._lines % 1000 == 0 and os.fstat(self._fd).st_size > ROTATE_BYTES:
                    os.replace(self.path, self.path.with_name("request-log.1.jsonl"))
                    self.close()
                if self._fd < 0:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.write(self._fd, line)
            except OSError as exc:  # a full disk must not break the sandbox: keep it in memory
                self.write_error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def entries(self, bank: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock:
            lines = [line for owner, line in self._entries if bank is None or owner == bank]
        return [json.loads(line) for line in lines[-limit:]]


def _bank_of(facts: RequestFacts) -> str | None:
    """Whose request this is: the token's consumer, else the fid in the path."""
    consumer = (facts.claims or {}).get("consumer")
    ident = consumer.get("ID") if isinstance(consumer, Mapping) else None
    if isinstance(ident, str) and ident.startswith("0192:") and ident[5:].isdigit():
        return ident[5:]
    fid = facts.fid
    return fid if fid and fid.isdigit() and len(fid) == 9 else None


class RequestLogMiddleware:
    """Logs every KFR request with its verdicts, and serves the log page (loopback only)."""

    def __init__(self, app: ASGIApp, ctx: SandboxContext) -> None:
        self.app = app
        self.ctx = ctx
        self.log = RequestLog(ctx.data_dir, ctx.issuer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in (PAGE_PATH, PAGE_PATH + ".json"):
            await self._page(scope, receive, send)
            return
        if not path.startswith(KFR_PREFIX + "/") or path in _SKIP:
            await self.app(scope, receive, send)
            return
        await self._logged(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        at = time.time()
        t0 = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        facts = RequestFacts.from_headers(scope["method"], scope["path"], headers, at)
        is_batch = facts.operation == "batch"
        limit = self.ctx.settings.max_batch_bytes
        digest = hashlib.sha256()
        size = 0
        verdicts: list[Verdict] = []
        bank = _bank_of(facts)
        session = self.log.session(bank) if bank else None
        # A batch is judged as it passes (never held: up to 10 MB a request).
        reader = BatchBodyReader(facts.content_type) if is_batch and session is not None else None
        if session is not None and not is_batch:
            verdicts = session.check_request(facts)

        async def teed() -> Message:
            nonlocal size
            message = await receive()
            if is_batch and message["type"] == "http.request":
                chunk = message.get("body", b"")
                if reader is not None and size <= limit:
                    reader.feed(chunk[: limit + 1 - size])
                size += len(chunk)
                digest.update(chunk)
            return message

        status: list[int | None] = [None]
        retry_after: list[str | None] = [None]
        done = [False]

        async def finish() -> None:
            if done[0]:
                return
            done[0] = True
            nonlocal facts, verdicts
            if session is not None and is_batch:
                facts = dataclasses.replace(
                    facts, body_reader=reader, body_size=size, body_sha256=digest.hexdigest()
                )
                verdicts = session.check_request(facts)
            if session is not None:
                session.observe_response(facts, ResponseFacts(status[0], time.time(), retry_after[0]))
            claims = facts.claims
            self.log.add({
                "at": _iso(at),
                "sandbox": self.ctx.base_url,
                "bank": bank,
                "method": facts.method,
                "path": facts.path,
                "operation": facts.operation,
                "status": status[0],
                "correlation_id": facts.correlation_id,
                "customer_id": facts.customer_id,
                "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
                "token_claims": dict(claims) if claims else None,
                # Kept small (the sandbox's own speed matters): the findings in full, the
                # rules that passed by id.
                "contract": [v.to_dict() for v in verdicts if not v.ok],
                "passed": [v.rule.id for v in verdicts if v.ok],
            })

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"retry-after":
                        retry_after[0] = value.decode("latin-1")
                # Logged before the answer leaves: a client that has its answer finds the
                # request in the log (an empty answer is complete with its headers).
                await finish()
            await send(message)

        try:
            await self.app(scope, teed, watched)
        finally:
            await finish()

    async def _page(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client is None or not is_loopback_host(client[0]):
            await Response("Kun tilgjengelig fra loopback.", 403)(scope, receive, send)
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        bank = (query.get("bank") or [""])[0] or None
        entries = self.log.entries(bank)
        if scope["path"].endswith(".json"):
            body = json.dumps(entries, ensure_ascii=False).encode()
            await Response(body, media_type="application/json")(scope, receive, send)
            return
        html = _PAGE.render(entries=list(reversed(entries)), bank=bank, sandbox=self.ctx.base_url)
        await HTMLResponse(html)(scope, receive, send)


_PAGE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="nb"><head><meta charset="utf-8"><title>Sandkassens forespørselslogg</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.funn{color:#a4000f}.ok{color:#1b6e20}code{font-size:.85rem}
</style></head><body>
<h1>Forespørselslogg – sandkasse</h1>
<p>{{ sandbox }}{% if bank %} · bank {{ bank }}{% endif %} · nyeste først · ikke Bits' testmiljø.
Hver forespørsel er kontrollert mot KFRs kontrakt med de samme reglene som opptaksgatewayen.</p>
<table><thead><tr><th>Tid (UTC)</th><th>Bank</th><th>Forespørsel</th><th>Svar</th><th>CorrelationID</th><th>Kontrakt</th></tr></thead><tbody>
{% for e in entries %}<tr>
<td>{{ e.at[11:23] }}</td><td>{{ e.bank or "–" }}</td>
<td>{{ e.method }} {{ e.operation }}{% if e.customer_id %} <code>{{ e.customer_id }}</code>{% endif %}</td>
<td>{{ e.status if e.status is not none else "–" }}</td><td><code>{{ e.correlation_id or "–" }}</code></td>
<td>{% if e.contract %}{% for v in e.contract %}<div class="funn">[{{ v.rule }}] {{ v.reason }}</div>{% endfor %}{% elif e.passed %}<span class="ok">OK ({{ e.passed | length }} regler)</span>{% else %}–{% endif %}</td>
</tr>{% else %}<tr><td colspan="6">Ingen forespørsler ennå.</td></tr>{% endfor %}
</tbody></table></body></html>
""")


# ---------------------------------------------------------------- reading (sandbox log)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        item = json.loads(line)
    except ValueError:
        return None   # a line cut off mid-write
    return item if isinstance(item, dict) else None


def read_log(data_dir: Path, bank: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The entries in the log file (for ``bank`` only, when given) and the position where
    :func:`follow_log` continues."""
    path = Path(data_dir) / LOG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    complete = data[: data.rfind(b"\n") + 1]
    items = (_parse(line) for line in complete.splitlines() if line.strip())
    entries = [e for e in items if e is not None and (bank is None or e.get("bank") == bank)]
    return entries, len(complete)


def follow_log(
    data_dir: Path, bank: str | None, stop: threading.Event, start: int = 0, poll_s: float = 0.3
) -> Iterator[dict[str, Any]]:
    """Entries written after ``start`` (a position from :func:`read_log`), as they come,
    until ``stop`` is set; after a rotation it reads the new file from the top."""
    path = Path(data_dir) / LOG_FILE
    position, inode = start, None
    while not stop.is_set():
        try:
            stat = path.stat()
        except FileNotFoundError:
            position, inode = 0, None
            stop.wait(poll_s)
            continue
        if inode is None:
            inode = stat.st_ino
        elif stat.st_ino != inode or stat.st_size < position:
            inode, position = stat.st_ino, 0
        if stat.st_size > position:
            with open(path, "rb") as fh:
                fh.seek(position)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            position += len(complete)
            for line in complete.splitlines():
                entry = _parse(line) if line.strip() else None
                if entry is not None and (bank is None or entry.get("bank") == bank):
                    yield entry
            if complete:
                continue
        stop.wait(poll_s)


def format_entry(entry: Mapping[str, Any]) -> str:
    """One line per request, then one line per finding, in Norwegian."""
    at = str(entry.get("at", ""))
    when = f"{at[:10]} {at[11:23]}" if len(at) >= 23 else at
    customer = f" {entry['customer_id']}" if entry.get("customer_id") else ""
    status = entry.get("status") if entry.get("status") is not None else "–"
    failed = [v for v in entry.get("contract") or [] if not v.get("ok")]
    outcome = f"{len(failed)} funn" if failed else ("OK" if entry.get("passed") else "ikke kontrollert")
    line = (
        f"{when} {entry.get('bank') or '–'} {entry.get('method')} {entry.get('operation')}{customer}"
        f" → {status}  CorrelationID={entry.get('correlation_id') or '–'}  {outcome}"
    )
    return "\n".join([line, *(f"    FUNN [{v.get('rule')}] {v.get('reason')}" for v in failed)])
