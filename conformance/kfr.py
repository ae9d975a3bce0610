"""The bank's KFR client: every bank operation of KFR API v1.1.2 over httpx.

Each request gets a fresh CorrelationID (UUID4) unless the caller gives one, or ``OMIT``
to leave the header out. Answers with 4xx come back as :class:`KfrResponse` for the step
to compare with the sheet; an environment that fails (5xx, timeouts, dropped connections)
raises :class:`TargetEnvironmentError`, so the case becomes "error in environment" and
never "failed".

Retries are bounded, with exponential backoff, and only where repeating cannot change the
answer: a request that never reached the server (connect errors), and read-only lookups.
Adding, ending and batch uploads are never repeated once the server may have seen them —
a second add answers 200 instead of 201, a second end 404 instead of 204.

Integration tests write data, so :func:`refuse_production` stops any production URL
before a request is sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import ssl
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from conformance.errors import CredentialError, ProductionTargetError, TargetEnvironmentError
from conformance.tls import default_ssl_context

__all__ = [
    "OMIT",
    "TEST_BASE_URL",
    "TEST_MASKINPORTEN_ISSUER",
    "KfrClient",
    "KfrResponse",
    "batch_deadline_s",
    "build_batch_text",
    "make_http_client",
    "refuse_production",
]

TEST_BASE_URL = "https://preprod.api.bits.no/kar-ws/api/v1"
TEST_MASKINPORTEN_ISSUER = "https://test.maskinporten.no/"
PRODUCTION_KFR_HOSTS = frozenset({"api.bits.no"})
# ver2 was production until June 2024; refusing it too costs nothing.
PRODUCTION_MASKINPORTEN_HOSTS = frozenset({"maskinporten.no", "ver2.maskinporten.no"})
DSOPBANK = "DSOPBANK"
KFR_INGEST_RATE = 250.0  # relationships per second, from the KFR FAQ
PROGRESS_EVERY_S = 0.5  # how often wait_until_visible reports while it keeps finding ids
BATCH_READ_TIMEOUT_S = 120.0  # a 10 MB file is validated in full before KFR answers
FIRST_POLL_S = 0.015  # the first pause while waiting for ingestion; doubles up to poll_s


class _FreshCorrelation(str):
    """A CorrelationID this client made up, so it makes up a new one for each attempt."""


THROTTLE_BUDGET_S = 60.0  # how long one request may wait out 429s in total
MAX_RETRY_AFTER_S = 20.0  # a longer Retry-After is capped: the budget decides


def retry_after_s(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    import email.utils

    if value:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = default
        if seconds == seconds:  # not NaN
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return min(default, MAX_RETRY_AFTER_S)


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()  # sentinel: leave a header out entirely
_DEFAULT: Any = object()  # sentinel: the client's own auth


# ---------------------------------------------------------------- safety


def _host_of(url: str) -> str:
    text = (url or "").strip()
    if "://" not in text:
        text = "//" + text.lstrip("/")  # "api.bits.no/kar-ws" has no scheme but a host
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    # IDNA maps look-alike dots (e.g. "api。bits。no") to "." the way httpx will.
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    return host.rstrip(".").lower()


def refuse_production(url: str) -> None:
    """Raise ProductionTargetError for KFR or Maskinporten production; test hosts pass."""
    host = _host_of(url)
    if host in PRODUCTION_KFR_HOSTS:
        raise ProductionTargetError(
            f"{url} er KFRs produksjonsmiljø. Integrasjonstestene skriver data og kjøres "
            "aldri mot produksjon.",
            hint=f"Bruk testmiljøet {TEST_BASE_URL} (--kfr-env=test) eller sandkassen.",
        )
    if host in PRODUCTION_MASKINPORTEN_HOSTS:
        raise ProductionTargetError(
            f"{url} er Maskinportens produksjonsmiljø. Integrasjonstestene bruker "
            "Maskinportens testmiljø.",
            hint=f"Bruk {TEST_MASKINPORTEN_ISSUER} (--maskinporten-url).",
        )


# ---------------------------------------------------------------- HTTP client


_LOOPBACK_MOUNTS = ("all://127.0.0.1", "all://localhost", "all://[::1]")


def _proxy_mounts(transport_factory: Callable[[str | None], httpx.BaseTransport]) -> dict:
    """httpx mounts for the proxies in the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    NO_PROXY). Loopback is never proxied: the embedded sandbox runs there."""
    env = urllib.request.getproxies_environment()
    no_proxy = [h.strip() for h in env.get("no", "").split(",") if h.strip()]
    if "*" in no_proxy:
        return {}
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        proxy = env.get(scheme)
        if proxy:
            proxy_url = proxy if "://" in proxy else f"http://{proxy}"
            mounts[f"{scheme}://"] = transport_factory(proxy_url)
    if not mounts:
        return {}
    for host in no_proxy:
        if "://" in host:
            mounts[host] = None
        elif ":" in host and not host.startswith("["):
            mounts[f"all://[{host}]"] = None  # IPv6 literal
        elif host[0].isdigit() or host.lower() == "localhost":
            mounts[f"all://{host}"] = None
        else:
            mounts[f"all://*{host.lstrip('.')}"] = None
    for pattern in _LOOPBACK_MOUNTS:
        mounts[pattern] = None
    return mounts


def _ssl_context(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        return default_ssl_context()  # httpx's default, made once per process
    path = Path(ca_bundle)
    if not path.is_file():
        raise CredentialError(f"CA-bundelen {path} finnes ikke (--ca-bundle).")
    # The system's trust store plus the bank's bundle (e.g. its TLS-inspecting proxy's CA).
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise CredentialError(
            f"CA-bundelen {path} kan ikke leses som PEM-sertifikater (--ca-bundle)."
        ) from exc
    return context


def make_http_client(
    *,
    ca_bundle: Path | None = None,
    timeout_s: float = 15.0,
    transport: httpx.BaseTransport | None = None,
    wrap: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
) -> httpx.Client:
    """The HTTP client both clients share: honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY and a CA
    bundle. ``transport`` replaces the direct transport (proxies from the environment are
    then not used, as in httpx). ``wrap`` is applied to every transport, direct and proxied
    — pass ``lambda t: RecordingTransport(t, recorder)`` to record every exchange."""
    verify = _ssl_context(ca_bundle)
    wrap = wrap or (lambda t: t)

    def build(proxy: str | None) -> httpx.BaseTransport:
        return wrap(httpx.HTTPTransport(verify=verify, proxy=proxy, trust_env=True))

    direct = wrap(transport) if transport is not None else build(None)
    mounts = {} if transport is not None else _proxy_mounts(build)
    return httpx.Client(
        transport=direct,
        mounts=mounts,
        timeout=httpx.Timeout(timeout_s),
        trust_env=False,  # proxies are in ``mounts`` already; the bundle is in ``verify``
        headers={"User-Agent": f"kfr-conformance/{_version()}"},
    )


def _version() -> str:
    try:
        from conformance import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - only while the package is half-built
        return "0"


def describe_transport_error(exc: httpx.TransportError) -> tuple[str, str | None, bool]:
    """A plain description of a network failure, advice when there is an obvious one, and
    whether trying again could help (a certificate the client distrusts stays distrusted)."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS-sertifikatet til serveren kunne ikke verifiseres ({text})",
            "Står maskinen bak en TLS-inspiserende proxy, oppgi proxyens CA med --ca-bundle FIL.",
            False,
        )
    if isinstance(exc, httpx.ProxyError):
        return f"proxyen avviste forbindelsen ({text})", "Kontroller HTTPS_PROXY og NO_PROXY.", True
    return f"{type(exc).__name__}: {text}", None, True


# ---------------------------------------------------------------- batch helpers


def build_batch_text(entries: Iterable[tuple[str, dt.date | None]]) -> str:
    """The batch ``customers`` text: ``id#YYYY-MM-DD,id,…`` (no date = start today)."""
    return ",".join(
        f"{customer}#{start.isoformat()}" if start is not None else customer
        for customer, start in entries
    )


def batch_deadline_s(n_ids: int, rate: float = KFR_INGEST_RATE) -> float:
    """How long to wait for ``n_ids`` to become visible: KFR reads ``rate`` IDs per second;
    allow 50 % on top and 10 s for the queue to pick the file up."""
    return max(0, n_ids) / rate * 1.5 + 10.0


# ---------------------------------------------------------------- the client


@dataclass
class KfrResponse:
    operation: str
    status: int
    correlation_id: str | None
    headers: httpx.Headers
    body: bytes
    json: Any | None
    error_code: str | None
    error_message: str | None
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _date_param(value: dt.date | str | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


class KfrClient:
    """KFR's bank operations for one financial institution (``fid``)."""

    def __init__(
        self,
        base_url: str,
        fid: str,
        *,
        http: httpx.Client,
        auth: httpx.Auth | None,
        retries: int = 3,
        backoff_s: float = 0.2,
        ingest_rate: float = KFR_INGEST_RATE,
    ) -> None:
        refuse_production(base_url)
        self.base_url = base_url.rstrip("/")
        self.fid = fid
        self.http = http
        self.auth = auth
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.ingest_rate = ingest_rate
        self._backlog_until = 0.0
        self._backlog_note = ""

    def __repr__(self) -> str:
        return f"KfrClient(base_url={self.base_url!r}, fid={self.fid!r})"

    def note_backlog(self, ids: int, note: str) -> None:
        """KFR's queue holds ``ids`` more IDs (an accepted oversize file): waits for ingestion
        are extended by the time KFR needs to read them, and say why."""
        self._backlog_until = max(self._backlog_until, time.monotonic()) + ids / self.ingest_rate
        self._backlog_note = note

    def backlog_s(self) -> float:
        """Seconds KFR still needs for a known backlog queued ahead of new batches."""
        return max(0.0, self._backlog_until - time.monotonic())

    def backlog_note(self) -> str:
        behind = self.backlog_s()
        return f"{self._backlog_note}; venter inntil {behind / 60:.0f} min ekstra" if behind else ""

    # ---- bank operations

    def add(
        self,
        customer_id: str,
        *,
        rel_type: str = DSOPBANK,
        correlation_id: Any = None,
        fid: str | None = None,
        auth: Any = _DEFAULT,
        role: str = "main",
    ) -> KfrResponse:
        """POST one relationship: 201 added, 200 already there."""
        return self._send(
            "add",
            "POST",
            self._relationship_path(fid, rel_type),
            headers=self._headers(correlation_id, CustomerID=customer_id),
            auth=auth,
            idempotent=False,
            role=role,
        )

    def end(
        self,
        customer_id: str,
        *,
        rel_type: str = DSOPBANK,
        correlation_id: Any = None,
        fid: str | None = None,
        auth: Any = _DEFAULT,
        role: str = "main",
    ) -> KfrResponse:
        """DELETE one relationship: 204 ended, 404 KFR-008 when there is none."""
        return self._send(
            "end",
            "DELETE",
            self._relationship_path(fid, rel_type),
            headers=self._headers(correlation_id, CustomerID=customer_id),
            auth=auth,
            idempotent=False,
            role=role,
        )

    def lookup(
        self,
        customer_id: str,
        *,
        from_date: dt.date | str | None = None,
        to_date: dt.date | str | None = None,
        correlation_id: Any = None,
        fid: str | None = None,
        auth: Any = _DEFAULT,
        role: str = "main",
    ) -> KfrResponse:
        """GET the own bank's relationship with a customer for a period (default today)."""
        return self._send(
            "lookup",
            "GET",
            f"/customers/financialInstitutions/{fid or self.fid}/",
            headers=self._headers(correlation_id, CustomerID=customer_id),
            params=self._period(from_date, to_date),
            auth=auth,
            idempotent=True,
            role=role,
        )

    def batch(
        self,
        customers: str | bytes,
        *,
        customer_type: str = DSOPBANK,
        boundary: str | None = None,
        quote_boundary: bool = False,
        header_boundary: str | None = None,
        correlation_id: Any = None,
        fid: str | None = None,
        auth: Any = _DEFAULT,
        role: str = "main",
        retry: bool = True,
    ) -> KfrResponse:
        """POST a file of relationships as multipart/form-data, built by hand as the KFR FAQ
        shows: the boundary in the Content-Type header is unquoted. ``quote_boundary`` and
        ``header_boundary`` (a different boundary in the header than in the body) provoke
        the 403 KFR gives for a wrongly defined boundary."""
        boundary = boundary or "".join(secrets.choice("0123456789") for _ in range(24))
        in_header = header_boundary or boundary
        if quote_boundary:
            in_header = f'"{in_header}"'
        headers = self._headers(correlation_id)
        headers["Content-Type"] = f"multipart/form-data; boundary={in_header}"
        return self._send(
            "batch",
            "POST",
            f"/customers/financialInstitutions/{fid or self.fid}/batch",
            headers=headers,
            content=build_multipart(boundary, customer_type, customers),
            auth=auth,
            idempotent=False,
            role=role,
            retry=retry,
            # KFR validates the whole file before it answers 201: allow it time.
            read_timeout_s=BATCH_READ_TIMEOUT_S,
        )

    # ---- agency operations (other scopes; used to show the bank's token is refused there)

    def customer_relationships(
        self,
        customer_id: str,
        *,
        from_date: dt.date | str | None = None,
        to_date: dt.date | str | None = None,
        correlation_id: Any = None,
        auth: Any = _DEFAULT,
        role: str = "main",
    ) -> KfrResponse:
        return self._send(
            "agency_lookup",
            "GET",
            "/customers/customerRelationships",
            headers=self._headers(correlation_id, CustomerID=customer_id),
            params=self._period(from_date, to_date),
            auth=auth,
            idempotent=True,
            role=role,
        )

    def account_servicing_provider(
        self, account_id: str, *, correlation_id: Any = None, auth: Any = _DEFAULT,
        role: str = "main",
    ) -> KfrResponse:
        return self._send(
            "account_lookup",
            "GET",
            "/customers/accountServicingProvider",
            headers=self._headers(correlation_id, AccountID=account_id),
            auth=auth,
            idempotent=True,
            role=role,
        )

    # ---- waiting for a batch to be read

    def wait_until_visible(
        self,
        customer_ids: Sequence[str],
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_progress: Callable[[int, int], None] | None = None,
        from_date: dt.date | str | None = None,
    ) -> list[str]:
        """Poll lookups until every id shows the own bank, or the deadline passes.

        Returns the ids still missing. KFR reads batches in the background at about
        250 IDs/s, so the default deadline follows the batch size. Each round checks the
        missing ids in order and stops at the first one not yet visible, so waiting costs
        one lookup per id plus one per round; the round after the deadline checks them all.
        ``on_progress(visible, total)`` is called after each round, and every
        ``PROGRESS_EVERY_S`` while a round keeps finding ids.
        """
        missing = list(dict.fromkeys(customer_ids))
        total = len(missing)
        behind = self.backlog_s()
        deadline = time.monotonic() + behind + (
            timeout_s if timeout_s is not None else batch_deadline_s(total, self.ingest_rate)
        )
        last_report = time.monotonic()
        delay = FIRST_POLL_S
        while missing:
            final = time.monotonic() >= deadline
            still: list[str] = []
            for index, customer in enumerate(missing):
                if not self._visible(customer, from_date):
                    still.append(customer)
                    if not final:
                        still.extend(missing[index + 1 :])
                        break
                elif on_progress is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    on_progress(total - (len(missing) - index - 1) - len(still), total)
                    last_report = time.monotonic()
            missing = still
            if on_progress is not None:
                on_progress(total - len(missing), total)
                last_report = time.monotonic()
            if final or not missing:
                break
            # A few IDs are readable within milliseconds; a big file takes minutes. Start
            # polling fast and back off to ``poll_s``.
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, poll_s)
        return missing

    def _visible(self, customer: str, from_date: dt.date | str | None) -> bool:
        response = self.lookup(customer, from_date=from_date, role="poll")
        if response.status != 200 or not isinstance(response.json, dict):
            return False
        banks = response.json.get("banks") or []
        return any(isinstance(b, dict) and b.get("organizationID") == self.fid for b in banks)

    # ---- plumbing

    def _relationship_path(self, fid: str | None, rel_type: str) -> str:
        return f"/customers/financialInstitutions/{fid or self.fid}/relationshipType/{rel_type}"

    @staticmethod
    def _headers(correlation_id: Any, **fields: Any) -> dict[str, str]:
        headers = {name: str(value) for name, value in fields.items() if value is not OMIT}
        if correlation_id is None:
            headers["CorrelationID"] = _FreshCorrelation(uuid.uuid4())
        elif correlation_id is not OMIT:
            headers["CorrelationID"] = str(correlation_id)
        return headers

    @staticmethod
    def _period(from_date: dt.date | str | None, to_date: dt.date | str | None) -> dict[str, str]:
        params = {"fromDate": _date_param(from_date), "toDate": _date_param(to_date)}
        return {k: v for k, v in params.items() if v is not None}

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        auth: Any,
        idempotent: bool,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        role: str = "main",
        retry: bool = True,
        read_timeout_s: float | None = None,
    ) -> KfrResponse:
        """Send with bounded retries. Every attempt is a new request with a new CorrelationID
        (unless the caller fixed one): KFR and Bits' logs see each attempt as what it is, and
        no ID is ever used twice. A 429 is the gateway refusing before KFR saw the request, so
        it is repeated for every operation after ``Retry-After``, within ``THROTTLE_BUDGET_S``;
        a 5xx or a broken connection is repeated only for reads."""
        url = self.base_url + path
        request_auth = self.auth if auth is _DEFAULT else auth
        attempts = self.retries + 1 if retry else 1
        problem, hint = "", None
        correlation = headers.get("CorrelationID")
        throttled_s = 0.0
        attempt = 0
        tried = 0
        while attempt < attempts:
            if tried:
                headers = self._renewed(headers)
                correlation = headers.get("CorrelationID")
            tried += 1
            started = time.perf_counter()
            try:
                response = self.http.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    content=content,
                    auth=request_auth,
                    extensions={"kfr_role": role},
                    **({"timeout": httpx.Timeout(self.http.timeout.connect, read=read_timeout_s)}
                       if read_timeout_s else {}),
                )
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.ProxyError,
            ) as exc:
                # The request never reached KFR: repeating it is always safe.
                problem, hint, worth_retrying = describe_transport_error(exc)
                attempt += 1
                if not worth_retrying:
                    break
                self._pause(attempt)
                continue
            except httpx.TransportError as exc:
                problem, hint, _ = describe_transport_error(exc)
                attempt += 1
                if idempotent and retry:
                    self._pause(attempt)
                    continue
                raise self._environment_error(
                    operation, problem, correlation, hint, repeated=False
                ) from exc
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            # A 429 is the gateway refusing before KFR saw the request: waiting it out is safe
            # even for a request that must never be repeated once KFR may have seen it.
            if response.status_code == 429:
                wait = retry_after_s(response.headers.get("Retry-After"), self.backoff_s * 2 ** min(tried, 6))
                if throttled_s + wait > THROTTLE_BUDGET_S:
                    raise TargetEnvironmentError(
                        f"Testmiljøet struper forespørslene (HTTP 429) for KFR ({operation}); "
                        f"ventet {throttled_s:.0f} s uten å slippe til.",
                        hint="Kjør igjen senere, eller med færre parallelle arbeidere (-n).",
                    )
                throttled_s += wait
                time.sleep(wait)
                continue  # throttling is not a failed attempt
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}{_error_suffix(response)}"
                attempt += 1
                if idempotent and retry:
                    self._pause(attempt)
                    continue
                raise self._environment_error(operation, problem, correlation, None, repeated=False)
            return _to_kfr_response(operation, response, elapsed_ms, correlation)
        raise self._environment_error(operation, problem, correlation, hint, attempts=tried)

    def _pause(self, attempt: int) -> None:
        time.sleep(self.backoff_s * 2 ** (attempt - 1))

    @staticmethod
    def _renewed(headers: dict[str, str]) -> dict[str, str]:
        value = headers.get("CorrelationID")
        if isinstance(value, _FreshCorrelation):
            return {**headers, "CorrelationID": _FreshCorrelation(uuid.uuid4())}
        return headers

    def _environment_error(
        self,
        operation: str,
        problem: str,
        correlation: str | None,
        hint: str | None,
        *,
        attempts: int | None = None,
        repeated: bool = True,
    ) -> TargetEnvironmentError:
        where = f"KFR ({operation}, CorrelationID {correlation or 'ingen'})"
        if not repeated:
            message = (
                f"{where} svarte ikke riktig: {problem}. Forespørselen endrer data og er "
                "derfor ikke sendt på nytt."
            )
        else:
            message = f"{where} svarte ikke etter {attempts} forsøk: {problem}."
        return TargetEnvironmentError(message, hint=hint)


def _error_suffix(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and body.get("errorCode"):
        return f" {body['errorCode']}"
    return ""


def _to_kfr_response(
    operation: str, response: httpx.Response, elapsed_ms: float, sent_correlation: str | None
) -> KfrResponse:
    body = response.content
    parsed: Any | None = None
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    error_code = error_message = None
    if isinstance(parsed, dict):
        error_code = parsed.get("errorCode") or None
        error_message = parsed.get("errorMessage") or None
    return KfrResponse(
        operation=operation,
        status=response.status_code,
        correlation_id=response.headers.get("CorrelationID") or sent_correlation,
        headers=response.headers,
        body=body,
        json=parsed,
        error_code=str(error_code) if error_code is not None else None,
        error_message=str(error_message) if error_message is not None else None,
        elapsed_ms=round(elapsed_ms, 3),
    )


def build_multipart(boundary: str, customer_type: str, customers: str | bytes) -> bytes:
    """The batch body exactly as the KFR FAQ example: two form fields, CRLF line ends."""
    data = customers.encode("utf-8") if isinstance(customers, str) else customers
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="customer_type"\r\n'
        "\r\n"
        f"{customer_type}\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="customers"; filename="customers.txt"\r\n'
        "Content-Type: text/plain\r\n"
        "\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()
