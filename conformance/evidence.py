"""Evidence: every HTTP exchange of a run, recorded as it happens and already redacted.

:class:`RecordingTransport` sits under the ``httpx.Client`` (and so under
``MaskinportenAuth``): it sees the Maskinporten token request and every KFR call exactly as
sent and received. Each exchange is redacted at once — Authorization headers, the
``assertion`` form field, ``access_token`` values, any JWT in any text, private keys and
passwords — then kept per case by :class:`EvidenceRecorder` and appended to the run's
:class:`Journal`, one line per exchange, flushed and fsynced, so an interrupted run keeps
what it did.

The response body is recorded as the caller reads it (the transport wraps the stream and
never reads ahead), so streaming keeps working and nothing is read twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "MAX_INLINE_BODY",
    "REDACTED",
    "BodyCapture",
    "EvidenceRecorder",
    "Journal",
    "RecordingTransport",
    "body_record",
    "encode_exchange",
    "operation_for",
    "redact_headers",
    "redact_text",
    "token_claims",
    "token_fingerprint",
]

REDACTED = "[REDACTED]"
MAX_INLINE_BODY = 64 * 1024  # larger bodies are recorded as size + SHA-256 + first lines
HEAD_LINES = 20
HEAD_CHARS = 2048

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
# Field names whose values are secrets, in forms, query strings and JSON alike.
_SECRET_FIELDS = (
    r"access_token|refresh_token|id_token|assertion|client_assertion|client_secret"
    r"|password|passwd|passphrase|pwd|secret"
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,3}")
_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_JSON_FIELD = re.compile(rf'("(?:{_SECRET_FIELDS})"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_FORM_FIELD = re.compile(rf"(?<![A-Za-z0-9_])((?:{_SECRET_FIELDS})=)[^&\s\"']*", re.IGNORECASE)
_BEARER = re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Every pattern above needs one of these: text without any (a UUID, a number, a host name —
# most header values) skips the five substitutions. Keeps the recording gateway fast.
_MAYBE_SECRET = re.compile(r'-----BEGIN|eyJ|["=]|\b(?:bearer|basic)\s', re.IGNORECASE)


def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """``text`` with JWTs, PEM private keys, bearer tokens and the values of secret fields
    (``access_token``, ``assertion``, ``password`` …) replaced by ``[REDACTED]``."""
    if not text:
        return text
    if _MAYBE_SECRET.search(text) is not None:
        text = _redact_patterns(text)
    for secret in extra_secrets:
        if secret and len(secret) >= 4:  # a 1-3 character "secret" would blank out prose
            text = text.replace(secret, REDACTED)
    return text


def _redact_patterns(text: str) -> str:
    text = _PEM_KEY.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _JSON_FIELD.sub(rf'\1"{REDACTED}"', text)
    text = _FORM_FIELD.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return text


def redact_headers(
    headers: httpx.Headers | Mapping[str, str] | Iterable[tuple[str, str]],
    extra_secrets: Iterable[str] = (),
) -> dict[str, str]:
    """Headers as a plain dict (original spelling, repeated headers joined with ", "), with
    credentials replaced by ``[REDACTED]`` and every value passed through :func:`redact_text`."""
    if isinstance(headers, httpx.Headers):
        pairs: Iterable[tuple[Any, Any]] = headers.raw
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    extra = tuple(extra_secrets)
    result: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else str(raw_name)
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else str(raw_value)
        value = REDACTED if name.lower() in _SECRET_HEADERS else redact_text(value, extra)
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


# ---------------------------------------------------------------- tokens, without the secret

# Claims of an access token that identify it but cannot be used as it: the judge and verify
# read the issuer, scope and consumer from them; the token itself is never kept.
TOKEN_CLAIMS = ("iss", "client_id", "client_amr", "consumer", "scope", "token_type", "iat",
                "exp", "jti", "aud")


def token_fingerprint(token: str) -> str:
    """A short SHA-256 of a bearer token: links a request to the token exchange that issued
    the token without keeping anything that could be replayed."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]


def token_claims(token: str) -> dict[str, Any] | None:
    """The identifying claims of a JWT access token, decoded but not verified (who issued it
    is checked against the environment, not trusted); None when it is not a JWT."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    if not isinstance(claims, dict):
        return None
    return {key: claims[key] for key in TOKEN_CLAIMS if key in claims}


def _bearer(headers: httpx.Headers) -> str | None:
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# ---------------------------------------------------------------- operations


_OPERATIONS: tuple[tuple[str | None, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/token/?$"), "token"),
    (
        "POST",
        re.compile(r"/customers/financialInstitutions/[^/]*/relationshipType/[^/]*/?$"),
        "add",
    ),
    (
        "DELETE",
        re.compile(r"/customers/financialInstitutions/[^/]*/relationshipType/[^/]*/?$"),
        "end",
    ),
    ("POST", re.compile(r"/customers/financialInstitutions/[^/]*/batch/?$"), "batch"),
    ("GET", re.compile(r"/customers/financialInstitutions/[^/]*/?$"), "lookup"),
    (None, re.compile(r"/customers/customerRelationships/?$"), "agency_lookup"),
    (None, re.compile(r"/customers/accountServicingProvider/?$"), "account_lookup"),
)


def operation_for(method: str, path: str) -> str:
    """The KFR/Maskinporten operation a request is, from its method and path."""
    for wanted, pattern, operation in _OPERATIONS:
        if (wanted is None or method.upper() == wanted) and pattern.search(path):
            return operation
    return "other"


# ---------------------------------------------------------------- journal


def encode_exchange(exchange: dict) -> bytes:
    """One journal line."""
    return (json.dumps(exchange, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class Journal:
    """Append-only JSON Lines: one exchange per line, written with one ``write`` on an
    ``O_APPEND`` descriptor, flushed and fsynced before :meth:`append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # A run cut off mid-write leaves a torn last line; start on a fresh line after it.
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def append(self, exchange: dict) -> None:
        self.append_encoded(encode_exchange(exchange))

    def append_many(self, exchanges: list[dict]) -> None:
        """Append several exchanges with one write and one fsync (a group commit)."""
        self.append_encoded(b"".join(encode_exchange(e) for e in exchanges))

    def append_encoded(self, data: bytes) -> None:
        """Append lines made by :func:`encode_exchange`, with one write and one fsync. The
        recording gateway encodes on its event loop and leaves only this (which releases
        the GIL) to its writer thread, grouping what queued up while the disk was busy."""
        if not data:
            return
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"journal {self.path} is closed")
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @staticmethod
    def read(path: Path) -> list[dict]:
        """Every complete exchange in the journal; a torn line (an interrupted write) is
        skipped, so what was recorded before it is never lost."""
        exchanges: list[dict] = []
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return exchanges
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict):
                exchanges.append(item)
        return exchanges


# ---------------------------------------------------------------- recorder


class EvidenceRecorder:
    """Keeps each case's exchanges and appends every one to the journal as it happens.

    The runner names the current case with ``with recorder.case(case_id):`` (or by setting
    ``recorder.case_id``); the value lives in a context variable, so threads and tasks do
    not mix their cases up.
    """

    def __init__(self, journal: Journal | None = None, *, secrets: Iterable[str] = (),
                 session: int = 1) -> None:
        self.journal = journal
        # A run continued with --resume records its exchanges as session 2, 3, …
        self.session = session
        self._current: ContextVar[str | None] = ContextVar(f"kfr_case_{id(self)}", default=None)
        self._attempt: ContextVar[int] = ContextVar(f"kfr_attempt_{id(self)}", default=1)
        self._lock = threading.Lock()
        self._by_case: dict[str | None, list[dict]] = {}
        self._secrets: list[str] = [s for s in secrets if s]

    @property
    def case_id(self) -> str | None:
        return self._current.get()

    @case_id.setter
    def case_id(self, value: str | None) -> None:
        self._current.set(value)

    @contextlib.contextmanager
    def case(self, case_id: str | None) -> Iterator[EvidenceRecorder]:
        token = self._current.set(case_id)
        try:
            yield self
        finally:
            self._current.reset(token)

    @contextlib.contextmanager
    def attempt(self, number: int) -> Iterator[EvidenceRecorder]:
        """Exchanges recorded inside are the ``number``-th attempt at the current case (a row
        is tried again, with fresh customers, only after the environment failed)."""
        token = self._attempt.set(number)
        try:
            yield self
        finally:
            self._attempt.reset(token)

    @property
    def attempt_number(self) -> int:
        return self._attempt.get()

    def add_secret(self, value: str | bytes | None) -> None:
        """A value (e.g. a certificate password) to scrub from everything recorded."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value:
            with self._lock:
                self._secrets.append(value)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def record(self, exchange: dict) -> dict:
        """Store an (already redacted) exchange under the current case and journal it."""
        with self._lock:
            case_id = self._current.get()
            items = self._by_case.setdefault(case_id, [])
            exchange = {"case_id": case_id, "session": self.session, "seq": len(items) + 1,
                        "attempt": exchange.pop("attempt", None) or self._attempt.get(), **exchange}
            items.append(exchange)
            # Journal inside the lock so the file's order is the recorded order.
            if self.journal is not None:
                self.journal.append(exchange)
        return exchange

    def exchanges(self, case_id: str | None) -> list[dict]:
        with self._lock:
            return list(self._by_case.get(case_id, ()))

    def case_ids(self) -> list[str]:
        with self._lock:
            return [c for c in self._by_case if c is not None]

    def discard(self, case_id: str | None) -> None:
        """Forget a case's exchanges (after its file is written; the journal keeps them)."""
        with self._lock:
            self._by_case.pop(case_id, None)

    def write_case_file(self, case_id: str, path: Path, earlier: Iterable[dict] = ()) -> None:
        """``{"case_id": …, "exchanges": […]}``, written atomically; ``earlier`` are the
        case's exchanges from earlier sessions of a resumed run, kept before this one's."""
        from conformance.atomic import atomic_write_bytes

        data = {"case_id": case_id, "exchanges": [*earlier, *self.exchanges(case_id)]}
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(Path(path), text.encode("utf-8"))


# ---------------------------------------------------------------- transport


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _BodyCapture:
    """Keeps the first MAX_INLINE_BODY bytes and a running SHA-256 of the whole body."""

    def __init__(self) -> None:
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.head = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha256.update(chunk)
        room = MAX_INLINE_BODY + 1 - len(self.head)
        if room > 0:
            self.head += chunk[:room]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _body_record(capture: _BodyCapture, secrets: tuple[str, ...], encoding: str = "") -> Any:
    if capture.size == 0:
        return None
    raw = bytes(capture.head)
    if encoding and encoding.lower() not in ("identity", ""):
        raw = _decoded(raw, encoding)
    if capture.size <= MAX_INLINE_BODY:
        return redact_text(_text(raw), secrets)
    head = "\n".join(_text(raw[: HEAD_CHARS * 4]).splitlines()[:HEAD_LINES])[:HEAD_CHARS]
    return {
        "size": capture.size,
        "sha256": capture.sha256.hexdigest(),
        "head": redact_text(head, secrets),
    }


# Public names for the recording gateway, which captures bodies the same way.
BodyCapture = _BodyCapture
body_record = _body_record


def _decoded(raw: bytes, encoding: str) -> bytes:
    """Decode gzip/deflate/br as the caller will see it; keep raw bytes when that fails."""
    try:
        response = httpx.Response(200, headers={"Content-Encoding": encoding}, content=raw)
        return response.read()
    except Exception:
        return raw


def _issued_token(capture: _BodyCapture) -> str | None:
    if capture.size > MAX_INLINE_BODY:
        return None
    try:
        body = json.loads(bytes(capture.head))
    except ValueError:
        return None
    token = body.get("access_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


class _RecordingStream(httpx.SyncByteStream):
    """Passes the response body through to the caller and records the exchange on close."""

    def __init__(self, inner: httpx.SyncByteStream, finish: Any) -> None:
        self._inner = inner
        self._finish = finish
        self.capture = _BodyCapture()
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                self.capture.feed(chunk)
                yield chunk
        except Exception as exc:
            self._complete(f"{type(exc).__name__}: {exc}")
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._complete(None)

    def _complete(self, error: str | None) -> None:
        if not self._done:
            self._done = True
            self._finish(self.capture, error)


class RecordingTransport(httpx.BaseTransport):
    """Records every exchange through ``inner`` into ``recorder``, redacted."""

    def __init__(self, inner: httpx.BaseTransport, recorder: EvidenceRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        secrets = self.recorder.secrets
        started_at = _utc_now()
        t0 = time.perf_counter()
        request_record = {
            "method": request.method,
            "url": redact_text(str(request.url), secrets),
            "headers": redact_headers(request.headers, secrets),
            "body": self._request_body(request, secrets),
        }
        operation = operation_for(request.method, request.url.path)
        base = {
            "operation": operation,
            # What the request is for in its row: "main", "setup", "control", "poll", …
            "role": request.extensions.get("kfr_role") or ("token" if operation == "token" else "main"),
            "correlation_id": request.headers.get("CorrelationID"),
            "started_at": started_at,
        }
        bearer = _bearer(request.headers)
        if bearer is not None:
            request_record["token_sha256"] = token_fingerprint(bearer)
        # Record under the case (and attempt) that sent the request, even if the body is
        # read elsewhere.
        case_token = self.recorder.case_id
        base["attempt"] = self.recorder.attempt_number
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            self._record(case_token, base, t0, request_record, None, f"{type(exc).__name__}: {exc}")
            raise

        def finish(capture: _BodyCapture, error: str | None) -> None:
            response_record = {
                "status": response.status_code,
                "headers": redact_headers(response.headers, secrets),
                "body": _body_record(
                    capture, secrets, response.headers.get("Content-Encoding", "")
                ),
            }
            if base["correlation_id"] is None:
                base["correlation_id"] = response.headers.get("CorrelationID")
            if operation == "token" and response.status_code == 200:
                issued = _issued_token(capture)
                if issued is not None:
                    response_record["token_sha256"] = token_fingerprint(issued)
                    response_record["token_claims"] = token_claims(issued)
            self._record(case_token, base, t0, request_record, response_record, error)

        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # a sync transport gives a sync stream
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_RecordingStream(stream, finish),
            extensions=response.extensions,
            request=request,
        )

    def _record(
        self,
        case_id: str | None,
        base: dict,
        t0: float,
        request_record: dict,
        response_record: dict | None,
        error: str | None,
    ) -> None:
        exchange = {
            **base,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000.0, 3),
            "request": request_record,
            "response": response_record,
            "error": redact_text(error, self.recorder.secrets) if error else None,
        }
        if case_id == self.recorder.case_id:
            self.recorder.record(exchange)
        else:
            with self.recorder.case(case_id):
                self.recorder.record(exchange)

    @staticmethod
    def _request_body(request: httpx.Request, secrets: tuple[str, ...]) -> Any:
        try:
            content = request.content
        except httpx.RequestNotRead:
            return {"streamed": True}  # a streaming upload: never read it here
        capture = _BodyCapture()
        capture.feed(content)
        return _body_record(capture, secrets)

    def close(self) -> None:
        self.inner.close()
