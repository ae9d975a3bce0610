"""KFR's contract as small named rules, each citing where it comes from.

One rule, one function: it takes plain values (a header, a path segment, decoded token
claims) and returns a :class:`Verdict` with a Norwegian reason and the rule it enforced.
The judge, ``verify``, the sandbox and the recording gateway all apply these functions, so
no place keeps a private copy of a rule; the report, ``verify`` and the gateway log show
the rule's id and source next to each verdict, so a bank's developer can look it up.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RULES",
    "ContractSession",
    "RequestFacts",
    "ResponseFacts",
    "Rule",
    "Verdict",
    "already_exists_accepted",
    "batch_customer_lines",
    "batch_customer_type",
    "batch_multipart_shape",
    "batch_size_within",
    "boundary_unquoted",
    "correlation_id_is_uuid",
    "correlation_id_unique",
    "customer_id_is_valid",
    "daily_volume_within",
    "delete_waits_for_batch",
    "expected_request_seen",
    "fid_is_bank",
    "first_load_without_ended",
    "no_retry_loop",
    "nothing_lost",
    "relationship_state_is",
    "request_rate_within",
    "retry_after_respected",
    "retry_backs_off",
    "rule",
    "token_claims",
    "token_client_id_is",
    "token_consumer_is_bank",
    "token_has_scope",
    "token_is_bearer_jwt",
    "token_issuer_is",
    "token_not_expired",
    "token_renewed_after_401",
    "token_reused",
]


@dataclass(frozen=True)
class Rule:
    id: str          # stable, kebab-case: "correlation-id-uuid"
    title: str       # Norwegian, one line
    source: str      # where the rule is written down


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    ok: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.id, "ok": self.ok, "reason": self.reason,
                "source": self.rule.source}


RULES: dict[str, Rule] = {}


def rule(id: str, title: str, source: str) -> Rule:
    """Register a rule once; its id is its name in reports and logs."""
    if id in RULES:
        raise ValueError(f"rule {id!r} defined twice")
    RULES[id] = Rule(id, title, source)
    return RULES[id]


KFR_API = "KFR API 1.1.2"
KFR_FAQ = "KFR FAQ"
MASKINPORTEN = "Maskinporten (Digdir): JWT grant og access token"

R_CORRELATION = rule("correlation-id-uuid", "CorrelationID er en UUID", f"{KFR_API}: header CorrelationID (uuid)")
R_FID = rule("fid-is-bank", "fid i stien er bankens eget organisasjonsnummer", f"{KFR_API}: path fid")
R_CUSTOMER = rule("customer-id-valid", "CustomerID er et gyldig fødselsnummer, D-nummer eller organisasjonsnummer", f"{KFR_API}: header CustomerID")
R_BOUNDARY = rule("boundary-unquoted", "boundary i Content-Type står uten anførselstegn", f"{KFR_FAQ}: batch-opplasting")
R_TOKEN_ISSUER = rule("token-issuer", "tokenet er utstedt av miljøets Maskinporten", MASKINPORTEN)
R_TOKEN_CONSUMER = rule("token-consumer", "tokenets consumer er 0192:<bankens orgnr>", MASKINPORTEN)
R_TOKEN_SCOPE = rule("token-scope", "tokenet har scopet operasjonen krever", f"{KFR_API}: security scopes")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def correlation_id_is_uuid(value: str | None) -> Verdict:
    if not value:
        return Verdict(R_CORRELATION, False, "CorrelationID mangler")
    if not _UUID.match(value):
        return Verdict(R_CORRELATION, False, f"«{value[:60]}» er ikke en UUID")
    return Verdict(R_CORRELATION, True)


def fid_is_bank(fid: str | None, bank_orgnr: str) -> Verdict:
    if fid == bank_orgnr:
        return Verdict(R_FID, True)
    return Verdict(R_FID, False, f"fid «{(fid or '')[:20]}» er ikke bankens {bank_orgnr}")


def customer_id_is_valid(value: str | None) -> Verdict:
    from conformance.ids import classify

    if not value:
        return Verdict(R_CUSTOMER, False, "CustomerID mangler")
    kind = classify(value)
    if kind is None:
        return Verdict(R_CUSTOMER, False, f"«{value[:20]}» er ikke et gyldig ID-nummer")
    return Verdict(R_CUSTOMER, True, kind)


def boundary_unquoted(content_type: str | None) -> Verdict:
    match = re.search(r"boundary=(\S+)", content_type or "", re.IGNORECASE)
    if match is None:
        return Verdict(R_BOUNDARY, False, "Content-Type har ingen boundary")
    if match.group(1).startswith(('"', "'")):
        return Verdict(R_BOUNDARY, False, "boundary står i anførselstegn")
    return Verdict(R_BOUNDARY, True)


def token_issuer_is(claims: Mapping[str, Any], issuer: str) -> Verdict:
    actual = str(claims.get("iss") or "")
    if actual.rstrip("/") == issuer.rstrip("/"):
        return Verdict(R_TOKEN_ISSUER, True, actual)
    return Verdict(R_TOKEN_ISSUER, False, f"utstedt av «{actual[:80]}», ikke {issuer}")


def token_consumer_is_bank(claims: Mapping[str, Any], bank_orgnr: str) -> Verdict:
    consumer = claims.get("consumer")
    value = consumer.get("ID") if isinstance(consumer, Mapping) else None
    if value == f"0192:{bank_orgnr}":
        return Verdict(R_TOKEN_CONSUMER, True, str(value))
    return Verdict(R_TOKEN_CONSUMER, False, f"consumer er «{str(value)[:40]}», ikke 0192:{bank_orgnr}")


def token_has_scope(claims: Mapping[str, Any], scope: str) -> Verdict:
    scopes = str(claims.get("scope") or "").split()
    if scope in scopes:
        return Verdict(R_TOKEN_SCOPE, True, scope)
    return Verdict(R_TOKEN_SCOPE, False, f"scope er «{' '.join(scopes)[:80]}», mangler {scope}")


# ---------------------------------------------------------------- tokens


ONBOARDING = "DSOP onboarding KFR, steg D-3"
RFC9110_RETRY_AFTER = "RFC 9110 §10.2.3 Retry-After"
RFC6750 = "RFC 6750 §3.1 (invalid_token: hent nytt token)"
ROBUSTNESS = "kfr-conformance issue 9: robusthet (rapporteres utenfor Bits' ark)"
WRITE_SCOPE = "bits:kundeforhold.write"

R_CORRELATION_UNIQUE = rule(
    "correlation-id-unique", "CorrelationID brukes bare én gang",
    f"{KFR_API}: header CorrelationID («unique identifier for the request»)",
)
R_TOKEN_BEARER = rule(
    "token-bearer-jwt", "forespørselen har et Bearer-token fra Maskinporten",
    f"{KFR_API}: securitySchemes; {MASKINPORTEN}",
)
R_TOKEN_CLIENT = rule("token-client-id", "tokenet er utstedt til bankens klient-ID", MASKINPORTEN)
R_TOKEN_EXPIRED = rule(
    "token-not-expired", "tokenet fornyes før det utløper", f"{MASKINPORTEN}; {RFC6750}"
)
R_TOKEN_REUSED = rule(
    "token-reused", "tokenet gjenbrukes til det nesten er utløpt (ikke ett token per kall)",
    f"{MASKINPORTEN}: gjenbruk access token til det utløper",
)


def token_claims(authorization: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The identifying claims (iss, scope, consumer, client_id, iat, exp, jti) of the bearer
    token in an Authorization header, decoded but not trusted (no signature check: the
    gateway and the judge only read what the client sent), or ``(None, why)`` when there is
    no readable token."""
    if not authorization:
        return None, "Authorization-headeren mangler"
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, f"Authorization er ikke «Bearer <token>» (skjema «{scheme[:20]}»)"
    claims = _decoded_claims(token.strip())
    if claims is None:
        return None, "Bearer-tokenet er ikke et JWT som kan leses"
    return dict(claims), None


@functools.lru_cache(maxsize=1024)
def _decoded_claims(token: str) -> Mapping[str, Any] | None:
    # Cached: a well-behaved client sends one token many times, and decoding is the
    # costliest step of checking a request. The identifying claims only, as evidence keeps.
    from conformance.evidence import token_claims as identifying_claims

    return identifying_claims(token)


def token_is_bearer_jwt(problem: str | None) -> Verdict:
    if problem:
        return Verdict(R_TOKEN_BEARER, False, problem)
    return Verdict(R_TOKEN_BEARER, True)


def token_client_id_is(claims: Mapping[str, Any], client_id: str) -> Verdict:
    actual = str(claims.get("client_id") or "")
    if actual == client_id:
        return Verdict(R_TOKEN_CLIENT, True, actual)
    return Verdict(R_TOKEN_CLIENT, False, f"tokenets client_id er «{actual[:60]}», ikke bankens {client_id}")


def token_not_expired(claims: Mapping[str, Any], now: float) -> Verdict:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return Verdict(R_TOKEN_EXPIRED, False, "tokenet har ingen exp")
    if exp <= now:
        return Verdict(
            R_TOKEN_EXPIRED, False,
            f"klienten sendte et token som utløp for {now - exp:.0f} s siden i stedet for å fornye det",
        )
    return Verdict(R_TOKEN_EXPIRED, True, f"{exp - now:.0f} s igjen")


def renew_threshold_s(lifetime_s: float) -> float:
    """How much life a token may have left when a client replaces it: at most half its
    lifetime, and never less than 60 s (Maskinporten's tokens live 120 s by default)."""
    return max(60.0, lifetime_s / 2)


def token_reused(new_jti: str, others_remaining_s: Mapping[str, tuple[float, float]]) -> Verdict:
    """A token seen for the first time, given the other live tokens of the same client
    (jti → (seconds left, lifetime)). Fetching a new token while another still has most of
    its life left is what a client that fetches one token per call does."""
    wasteful = [
        (jti, left) for jti, (left, lifetime) in others_remaining_s.items()
        if jti != new_jti and left > renew_threshold_s(lifetime)
    ]
    if wasteful:
        jti, left = max(wasteful, key=lambda item: item[1])
        return Verdict(
            R_TOKEN_REUSED, False,
            f"klienten hentet et nytt token selv om forrige (jti {jti[:12]}…) hadde {left:.0f} s igjen"
            " – hent ett token og gjenbruk det til det nesten er utløpt",
        )
    return Verdict(R_TOKEN_REUSED, True)


def correlation_id_unique(value: str, first_use: str | None) -> Verdict:
    """``first_use`` describes the earlier request with the same CorrelationID, if any."""
    if first_use:
        return Verdict(
            R_CORRELATION_UNIQUE, False,
            f"klienten brukte CorrelationID {value[:40]} på nytt (først brukt {first_use}); hver forespørsel, også et nytt forsøk, skal ha sin egen",
        )
    return Verdict(R_CORRELATION_UNIQUE, True)


# ---------------------------------------------------------------- batch uploads


MAX_BATCH_BYTES = 10 * 1024 * 1024
R_BATCH_SHAPE = rule(
    "batch-multipart", "batchen er multipart/form-data med feltene customer_type og customers",
    f"{KFR_API}: POST …/batch (multipart/form-data)",
)
R_BATCH_TYPE = rule("batch-customer-type", "customer_type i batchen er DSOPBANK", f"{KFR_API}: customer_type")
R_BATCH_LINES = rule(
    "batch-customer-lines", "customers er ID[#ÅÅÅÅ-MM-DD] adskilt med komma, med gyldige ID-er og datoer",
    f"{KFR_API}: customers (CSV); {KFR_FAQ}: eksempel batch",
)
R_BATCH_SIZE = rule("batch-size", "batchfilen er høyst 10 MB", ONBOARDING)
R_FIRST_LOAD = rule(
    "first-load-without-ended", "førstegangsinnlesingen har bare aktive kundeforhold", ONBOARDING
)


def _boundary_of(content_type: str | None) -> tuple[str | None, Verdict | None]:
    """The boundary a multipart Content-Type names, or the shape verdict why there is none.
    A quoted boundary is read as if unquoted: :func:`boundary_unquoted` judges quoting."""
    mime, _, params = (content_type or "").partition(";")
    if mime.strip().lower() != "multipart/form-data":
        return None, Verdict(R_BATCH_SHAPE, False, f"Content-Type er «{mime.strip()[:60]}», ikke multipart/form-data")
    match = re.search(r"boundary=(\"[^\"]*\"|[^;\s]+)", params, re.IGNORECASE)
    if match is None:
        return None, Verdict(R_BATCH_SHAPE, False, "Content-Type har ingen boundary")
    return match.group(1).strip('"'), None


def batch_multipart_shape(content_type: str | None, body: bytes) -> tuple[Verdict, dict[str, bytes]]:
    """The verdict on the multipart shape and the named parts other than ``customers``
    (whose lines :class:`BatchBodyReader` judges as it reads them)."""
    reader = BatchBodyReader(content_type)
    reader.feed(body)
    return reader.shape(), reader.fields


_PART_NAME = re.compile(rb'name="([^"]*)"|name=([^;\s]+)', re.IGNORECASE)
_FIELD_CAP = 64 * 1024  # customer_type and any other small field; more is kept as a length only


class BatchBodyReader:
    """A batch body judged as it arrives — ``feed(chunk)`` in any pieces, then the verdicts
    of :meth:`content` — without ever holding the ``customers`` part: its lines go straight
    to the sandbox's streaming :class:`CustomerListParser` and its IDs to a
    :class:`CustomerIdSet`. The request log sees up to 10 MB per batch this way in a few
    hundred KiB; fed the whole body at once it is the gateway's reading of a body it holds.

    The form is read as a multipart parser splitting on ``(\\r?\\n)?--boundary``: the part
    before the first delimiter is ignored, a part is headers, a blank line and content, a
    delimiter followed by ``--`` closes the form, and the first problem in order is the one
    reported."""

    def __init__(self, content_type: str | None) -> None:
        from conformance.sandbox.customer_list import CustomerListParser

        self.content_type = content_type
        boundary, self._type_problem = _boundary_of(content_type)
        self._delim = b"--" + (boundary or "").encode("ascii", "replace")
        self._keep = len(self._delim) + 1  # a delimiter (and its line break) may straddle two pieces
        self._buf = bytearray()
        self._state = "preamble"            # preamble | head | content | closed
        self._part: str | None = None
        self._start = b""                   # the body's first bytes, to the delimiter's length
        self._tail = b""                    # the last bytes seen, to the delimiter's length
        self._aligned = False               # a delimiter at the start or after a line break
        self._problem: str | None = None
        self.fields: dict[str, bytes] = {}
        self._names: set[str] = set()
        self.ids = CustomerIdSet()
        self._lines = CustomerListParser(self.ids)
        self._finished = False

    # ---- input

    def feed(self, chunk: bytes | memoryview) -> None:
        if self._type_problem is not None:
            return
        self._watch_alignment(bytes(chunk))
        if self._state == "closed" or self._problem is not None:
            return
        self._buf += chunk
        self._advance(final=False)

    def _watch_alignment(self, chunk: bytes) -> None:
        """Whether the body starts with a delimiter or has one after a line break anywhere
        (a form whose delimiters never start a line is not this boundary's form), read
        apart from the parts: it outranks any problem found in them."""
        if self._aligned:
            return
        if len(self._start) < len(self._delim):
            self._start += chunk[: len(self._delim) - len(self._start)]
            if self._start == self._delim:
                self._aligned = True
        window = self._tail + chunk
        if b"\n" + self._delim in window:
            self._aligned = True
        self._tail = window[-len(self._delim):]

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._type_problem is None and self._state != "closed" and self._problem is None:
            self._advance(final=True)
        self._lines.end()

    def _delimiter(self) -> tuple[int, int] | None:
        """(where the match starts, where it ends) of the first delimiter in the buffer."""
        found = self._buf.find(self._delim)
        if found < 0:
            return None
        start = found
        if found >= 2 and self._buf[found - 2 : found] == b"\r\n":
            start = found - 2
        elif found >= 1 and self._buf[found - 1 : found] == b"\n":
            start = found - 1
        return start, found + len(self._delim)

    def _advance(self, *, final: bool) -> None:
        while self._problem is None and self._state != "closed":
            match = self._delimiter()
            if self._state == "preamble":
                if match is None:
                    if not final:
                        self._drop(len(self._buf) - self._keep)
                    return
                self._drop(match[1])
                self._state = "head"
                continue
            if self._state == "head":
                if not self._head(match, final):
                    return
                continue
            # content
            if match is None:
                if final:
                    self._emit(self._buf)
                    self._drop(len(self._buf))
                    self._problem = "multipart-innholdet mangler avsluttende boundary"
                else:
                    cut = len(self._buf) - self._keep
                    if cut > 0:
                        self._emit(self._buf[:cut])
                        self._drop(cut)
                return
            self._emit(self._buf[: match[0]])
            self._drop(match[1])
            self._state = "head"

    def _drop(self, count: int) -> None:
        if count > 0:
            del self._buf[:count]

    def _head(self, match: tuple[int, int] | None, final: bool) -> bool:
        """Read a part's start; False when more input is needed."""
        buf = self._buf
        if match is None and not final and len(buf) <= self._keep:
            return False  # "--" here may yet be the next delimiter (an empty part), not the close
        limit = match[0] if match is not None else len(buf)  # where this part ends
        if limit >= 2 and buf.startswith(b"--"):
            self._state = "closed"
            self._drop(len(buf))
            return True
        blank = buf.find(b"\r\n\r\n", 0, limit)
        if blank < 0 or (match is None and not final and blank + 4 + self._keep + 1 > len(buf)):
            if match is not None or final:
                self._problem = "en del av multipart-innholdet mangler hoder"
            return self._problem is not None
        name = _PART_NAME.search(bytes(buf[:blank]))
        if name is None:
            self._problem = "en del mangler name i Content-Disposition"
            return True
        key = (name.group(1) or name.group(2) or b"").decode("latin-1")
        if key in self._names:
            self._problem = f"feltet {key} finnes mer enn én gang"
            return True
        self._names.add(key)
        self._part = key
        self._drop(blank + 4)
        self._state = "content"
        return True

    def _emit(self, data: bytes | bytearray) -> None:
        if not data:
            return
        if self._part == "customers":
            self._lines.feed(bytes(data))
        elif self._part is not None:
            held = self.fields.get(self._part, b"")
            if len(held) < _FIELD_CAP:
                self.fields[self._part] = held + bytes(data[: _FIELD_CAP + 1 - len(held)])

    # ---- verdicts

    def shape(self) -> Verdict:
        self._finish()
        if self._type_problem is not None:
            return self._type_problem
        if not self._aligned:
            return Verdict(R_BATCH_SHAPE, False, "boundary i Content-Type stemmer ikke med innholdet")
        if self._problem is not None:
            return Verdict(R_BATCH_SHAPE, False, self._problem)
        missing = [name for name in ("customer_type", "customers") if name not in self._names]
        if missing:
            return Verdict(R_BATCH_SHAPE, False, f"feltet {' og '.join(missing)} mangler")
        return Verdict(R_BATCH_SHAPE, True)

    def content(self) -> tuple[list[Verdict], CustomerIdSet | None]:
        """Shape, then (when the form is whole) customer_type and the customers' lines; the
        IDs when every line was valid."""
        shape = self.shape()
        if not shape.ok:
            return [shape], None
        lines = self._lines
        if lines.utf8_error:
            verdict = Verdict(R_BATCH_LINES, False, "customers er ikke gyldig UTF-8")
        elif lines.error is not None:
            verdict = Verdict(R_BATCH_LINES, False, lines.error.message)
        else:
            verdict = Verdict(R_BATCH_LINES, True, f"{lines.count} kundeforhold")
        return [shape, batch_customer_type(self.fields.get("customer_type", b"")), verdict], \
            self.ids if verdict.ok else None


def batch_customer_type(value: bytes | memoryview) -> Verdict:
    text = bytes(value).decode("utf-8", "replace").strip()
    if text == "DSOPBANK":
        return Verdict(R_BATCH_TYPE, True)
    return Verdict(R_BATCH_TYPE, False, f"customer_type er «{text[:40]}», ikke DSOPBANK")


class CustomerIdSet:
    """The customer IDs of one batch file, kept compactly: sorted runs of 8-byte integers
    (the ID's digits, doubled, plus one for 11 digits, so "0…" IDs of either length stay
    apart). A 10 MB file of ~770 000 IDs takes ~6 MB here against ~100 MB as strings, which
    kept the sandbox's request log inside its memory goal. Written to as the sink of
    :class:`~conformance.sandbox.customer_list.CustomerListParser` (accepted entries,
    comma-separated, whole elements per write)."""

    RUN = 65_536

    def __init__(self) -> None:
        from array import array

        self._array = array
        self._runs: list[Any] = []
        self._buffer: list[int] = []
        self._count = 0

    @staticmethod
    def _key(customer_id: bytes | str) -> int:
        return int(customer_id) * 2 + (len(customer_id) == 11)

    def write(self, data: bytes) -> int:
        for element in data.split(b","):
            if element:
                self._buffer.append(self._key(element.partition(b"#")[0]))
                if len(self._buffer) >= self.RUN:
                    self._flush()
        return len(data)

    def _flush(self) -> None:
        if self._buffer:
            self._runs.append(self._array("q", sorted(self._buffer)))
            self._count += len(self._buffer)
            self._buffer = []

    def __contains__(self, customer_id: object) -> bool:
        import bisect

        if not (isinstance(customer_id, str) and customer_id.isdigit() and len(customer_id) in (9, 11)):
            return False
        self._flush()
        key = self._key(customer_id)
        for run in self._runs:
            i = bisect.bisect_left(run, key)
            if i < len(run) and run[i] == key:
                return True
        return False

    def __len__(self) -> int:
        return self._count + len(self._buffer)


def batch_customer_lines(value: bytes | memoryview) -> tuple[Verdict, CustomerIdSet]:
    """The verdict on a ``customers`` field and the IDs it lists (empty when refused)."""
    from conformance.sandbox.customer_list import CustomerListParser

    ids = CustomerIdSet()
    parser = CustomerListParser(ids)
    parser.feed(bytes(value))
    parser.end()
    if parser.utf8_error:
        return Verdict(R_BATCH_LINES, False, "customers er ikke gyldig UTF-8"), CustomerIdSet()
    if parser.error is not None:
        return Verdict(R_BATCH_LINES, False, parser.error.message), CustomerIdSet()
    return Verdict(R_BATCH_LINES, True, f"{parser.count} kundeforhold"), ids


def batch_size_within(size: int, limit: int = MAX_BATCH_BYTES) -> Verdict:
    if size > limit:
        return Verdict(R_BATCH_SIZE, False, f"batchen er {size} byte; grensen er {limit} byte (10 MB) – del den opp")
    return Verdict(R_BATCH_SIZE, True, f"{size} byte")


def first_load_without_ended(customer_ids: Container[str], ended: set[str]) -> Verdict:
    """``ended``: customers whose relationship the client itself has ended and not re-added."""
    found = sorted(cid for cid in ended if cid in customer_ids)
    if found:
        shown = ", ".join(found[:3]) + (" …" if len(found) > 3 else "")
        return Verdict(
            R_FIRST_LOAD, False,
            f"førstegangsinnlesingen har {len(found)} kundeforhold klienten selv har avsluttet ({shown})",
        )
    return Verdict(R_FIRST_LOAD, True)


# ---------------------------------------------------------------- pace and retries


DEFAULT_MAX_RATE = 20.0         # requests per second; Bits documents no limit for single calls
DAILY_RELATIONSHIP_LIMIT = 100_000
KFR_INGEST_RATE = 250.0         # relationships read per second (onboarding D-3)
MAX_ATTEMPTS = 6                # one request sent more often than this in a row is a loop
RETRY_TOLERANCE_S = 0.05        # timer granularity when comparing a wait with Retry-After

R_RATE = rule(
    "request-rate", "klienten holder seg under avtalt takt (forespørsler per sekund)",
    "konfigurerbar grense (Bits dokumenterer ingen takt for enkeltkall)",
)
R_DAILY = rule(
    "daily-volume", "over 100 000 kundeforhold på én dag er varslet til Bits", ONBOARDING
)
R_DELETE_WAIT = rule(
    "delete-waits-for-batch", "sletting av en kunde i en batch venter til batchen er lest inn",
    f"{ONBOARDING} (KFR leser ca. 250 kundeforhold per sekund)",
)
R_RETRY_AFTER = rule(
    "retry-after-respected", "et nytt forsøk venter minst så lenge Retry-After sier", RFC9110_RETRY_AFTER
)
R_BACKOFF = rule(
    "retry-backoff", "nye forsøk etter 429/5xx venter stadig lenger (backoff)", ROBUSTNESS
)
R_LOOP = rule("no-retry-loop", "samme forespørsel sendes ikke om og om igjen", ROBUSTNESS)


def request_rate_within(count: int, window_s: float, limit: float) -> Verdict:
    """``count`` requests (this one included) arrived within the last ``window_s``."""
    allowed = limit * window_s
    if count > allowed:
        return Verdict(
            R_RATE, False,
            f"{count} forespørsler i løpet av {window_s:g} s; grensen er {limit:g} per sekund – senk takten",
        )
    return Verdict(R_RATE, True)


def daily_volume_within(count: int, limit: int = DAILY_RELATIONSHIP_LIMIT) -> Verdict:
    if count > limit:
        return Verdict(
            R_DAILY, False,
            f"{count} kundeforhold sendt i dag; mer enn {limit} på én dag skal varsles til DSOP@bits.no på forhånd",
        )
    return Verdict(R_DAILY, True)


def delete_waits_for_batch(customer_id: str, ready_in_s: float | None) -> Verdict:
    """``ready_in_s``: how long until the batch that holds the customer is read (None = no
    unread batch holds it)."""
    if ready_in_s is not None and ready_in_s > 0:
        return Verdict(
            R_DELETE_WAIT, False,
            f"klienten avsluttet {customer_id} mens batchen med kunden fortsatt leses inn (ca. {ready_in_s:.0f} s igjen)",
        )
    return Verdict(R_DELETE_WAIT, True)


def retry_after_respected(waited_s: float, retry_after_s: float) -> Verdict:
    if waited_s + RETRY_TOLERANCE_S < retry_after_s:
        return Verdict(
            R_RETRY_AFTER, False,
            f"klienten prøvde igjen etter {waited_s:.2f} s, men svaret ba om å vente {retry_after_s:g} s (Retry-After)",
        )
    return Verdict(R_RETRY_AFTER, True, f"ventet {waited_s:.2f} s")


def retry_backs_off(waits_s: list[float]) -> Verdict:
    """The waits before each new attempt of one request after 429/5xx answers, in order."""
    if len(waits_s) >= 2 and waits_s[-1] <= waits_s[-2]:
        shown = ", ".join(f"{w:.2f}" for w in waits_s[-3:])
        return Verdict(
            R_BACKOFF, False,
            f"klienten ventet ikke lenger mellom forsøkene ({shown} s) – bruk økende ventetid (backoff)",
        )
    return Verdict(R_BACKOFF, True)


def no_retry_loop(attempts: int, limit: int = MAX_ATTEMPTS) -> Verdict:
    if attempts > limit:
        return Verdict(
            R_LOOP, False,
            f"klienten har sendt samme forespørsel {attempts} ganger på rad uten å lykkes – gi opp og varsle etter høyst {limit}",
        )
    return Verdict(R_LOOP, True)


# ---------------------------------------------------------------- reactions (robustness)


R_NOTHING_LOST = rule(
    "nothing-lost", "etter en feil sendes forespørselen på nytt til KFR har tatt imot den", ROBUSTNESS
)
R_TOKEN_RENEWED = rule(
    "token-renewed-after-401", "etter 401 (utløpt token) henter klienten et nytt token", RFC6750
)
R_ALREADY_EXISTS = rule(
    "already-exists-accepted", "200 på registrering («finnes allerede») godtas som vellykket",
    f"{KFR_API}: POST relationshipType (200 = kundeforholdet finnes)",
)
R_EXPECTED = rule(
    "expected-request-seen", "kjernesystemet sendte forespørselen det ble bedt om", ROBUSTNESS
)
R_STATE = rule(
    "relationship-state", "KFR viser kundeforholdet slik kjernesystemet skulle etterlate det",
    f"{KFR_API}: GET financialInstitutions/{{fid}}",
)


def nothing_lost(what: str, answer: str, succeeded: bool, attempts_after: int) -> Verdict:
    """After an answer like ``answer`` (e.g. «503»), did the request ``what`` later reach KFR
    and succeed? ``attempts_after`` counts the attempts that followed."""
    if succeeded:
        return Verdict(R_NOTHING_LOST, True, f"lyktes etter {attempts_after} nye forsøk")
    if attempts_after == 0:
        return Verdict(
            R_NOTHING_LOST, False,
            f"klienten fikk {answer} på {what} og prøvde aldri igjen – endringen kom aldri fram til KFR",
        )
    return Verdict(
        R_NOTHING_LOST, False,
        f"klienten fikk {answer} på {what} og ga opp etter {attempts_after} nye forsøk uten at KFR tok imot endringen",
    )


def token_renewed_after_401(old_jti: str | None, new_jti: str | None) -> Verdict:
    if new_jti is None:
        return Verdict(R_TOKEN_RENEWED, False, "klienten sendte ikke forespørselen på nytt etter 401")
    if new_jti == old_jti:
        return Verdict(
            R_TOKEN_RENEWED, False,
            "klienten sendte samme token på nytt etter 401 i stedet for å hente et nytt fra Maskinporten",
        )
    return Verdict(R_TOKEN_RENEWED, True)


def already_exists_accepted(what: str, repeats: int) -> Verdict:
    if repeats:
        return Verdict(
            R_ALREADY_EXISTS, False,
            f"klienten fikk 200 («finnes allerede») på {what}, men behandlet det som en feil og sendte den {repeats} gang(er) til",
        )
    return Verdict(R_ALREADY_EXISTS, True)


def expected_request_seen(what: str, seen: int, waited_s: float) -> Verdict:
    if seen:
        return Verdict(R_EXPECTED, True)
    return Verdict(R_EXPECTED, False, f"kjernesystemet sendte ingen {what} til KFR i løpet av {waited_s:.0f} s")


def relationship_state_is(present: bool, fid: str, customer_id: str, lookup: Any) -> Verdict:
    """Does an own-bank lookup (its JSON) show ``fid`` for ``customer_id`` as expected?"""
    banks = lookup.get("banks") if isinstance(lookup, Mapping) else None
    if not isinstance(banks, list):
        return Verdict(R_STATE, False, "oppslaget ga ikke et svar med «banks»")
    found = any(isinstance(b, Mapping) and b.get("organizationID") == fid for b in banks)
    if found == present:
        return Verdict(R_STATE, True)
    if present:
        return Verdict(R_STATE, False, f"KFR har ikke kundeforholdet for {customer_id} – det gikk tapt")
    return Verdict(R_STATE, False, f"KFR viser fortsatt kundeforholdet for {customer_id} – det ble ikke avsluttet")


# ---------------------------------------------------------------- applying the rules


_FID_IN_PATH = re.compile(r"/customers/financialInstitutions/([^/]*)")
_BANK_OPERATIONS = frozenset({"add", "end", "batch", "lookup"})
_BACKOFF_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_WINDOW_S = 300.0   # a repeat later than this after a failure is a new request, not a retry


@dataclass(frozen=True)
class RequestFacts:
    """What the rules need to know about one request: plain values, no HTTP objects, so the
    gateway, the sandbox and the judge (from a recorded exchange) can all build it."""

    method: str
    path: str
    operation: str
    at: float                                   # epoch seconds when the request arrived
    correlation_id: str | None = None
    customer_id: str | None = None
    content_type: str | None = None
    claims: Mapping[str, Any] | None = None
    token_problem: str | None = None            # why there are no claims
    body: bytes | None = None                   # batch body, when it was kept
    body_reader: BatchBodyReader | None = None  # or the body already read as it passed
    body_size: int = 0
    body_sha256: str | None = None

    @property
    def fid(self) -> str | None:
        match = _FID_IN_PATH.search(self.path)
        return match.group(1) if match else None

    @property
    def retry_key(self) -> tuple[str, ...]:
        """What makes two requests "the same request" sent again."""
        if self.operation == "batch":
            return (self.method, self.path, self.body_sha256 or "")
        return (self.method, self.path, self.customer_id or "")

    @classmethod
    def from_headers(
        cls, method: str, path: str, headers: Mapping[str, str], at: float, **extra: Any
    ) -> RequestFacts:
        """From a request's headers (names in any case); the token is decoded here."""
        from conformance.evidence import operation_for

        lower = {k.lower(): v for k, v in headers.items()}
        claims, problem = token_claims(lower.get("authorization"))
        return cls(
            method=method.upper(), path=path, operation=operation_for(method, path), at=at,
            correlation_id=lower.get("correlationid"), customer_id=lower.get("customerid"),
            content_type=lower.get("content-type"), claims=claims, token_problem=problem,
            **extra,
        )


    @classmethod
    def from_exchange(cls, exchange: Mapping[str, Any]) -> RequestFacts:
        """From a recorded exchange (``docs/architecture.md``): its Authorization header is
        redacted, so the token comes from its ``token_claims``. A body recorded only as
        size + hash (over 64 KiB) cannot be re-parsed: its batch-content rules then judge
        what is known (the size) and leave the content to the verdicts recorded live."""
        from urllib.parse import urlsplit

        from conformance.evidence import operation_for

        request = exchange.get("request") or {}
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        method = str(request.get("method") or "")
        path = urlsplit(str(request.get("url") or "")).path
        claims = exchange.get("token_claims")
        body = request.get("body")
        raw: bytes | None = None
        size = 0
        digest: str | None = None
        if isinstance(body, str):
            raw = body.encode("utf-8")
            size, digest = len(raw), _sha256(raw)
        elif isinstance(body, Mapping) and isinstance(body.get("size"), int):
            size, digest = int(body["size"]), str(body.get("sha256") or "")
        return cls(
            method=method.upper(), path=path, operation=operation_for(method, path),
            at=_epoch(exchange.get("started_at")),
            correlation_id=headers.get("correlationid"), customer_id=headers.get("customerid"),
            content_type=headers.get("content-type"),
            claims=claims if isinstance(claims, Mapping) else None,
            token_problem=None if isinstance(claims, Mapping) else "Authorization-headeren mangler",
            body=raw, body_size=size, body_sha256=digest,
        )


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _epoch(iso: Any) -> float:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class ResponseFacts:
    status: int | None          # None: no answer (the upstream could not be reached)
    at: float                   # epoch seconds when the answer was sent to the client
    retry_after: str | None = None

    @classmethod
    def from_exchange(cls, exchange: Mapping[str, Any]) -> ResponseFacts:
        response = exchange.get("response") or {}
        headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
        elapsed = exchange.get("elapsed_ms")
        at = _epoch(exchange.get("started_at")) + (float(elapsed) / 1000 if isinstance(elapsed, int | float) else 0.0)
        status = response.get("status")
        return cls(status=status if isinstance(status, int) else None, at=at,
                   retry_after=headers.get("retry-after"))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class _Attempts:
    """The attempts of one request (by retry key) since its last success."""

    count: int = 0
    in_flight: bool = False
    last_status: int | None = None
    last_at: float = 0.0
    retry_after_s: float | None = None
    waits: list[float] | None = None


def _when(at: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at).strftime("kl. %H:%M:%S.%f")[:-3]


def _oslo_day(at: float) -> str:
    """The Norwegian calendar day of ``at``: Bits counts relationships per day in Norway."""
    return _oslo_day_of_minute(int(at // 60))


@functools.lru_cache(maxsize=64)
def _oslo_day_of_minute(minute: int) -> str:
    import datetime as dt

    at = minute * 60.0

    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.fromtimestamp(at, ZoneInfo("Europe/Oslo")).date().isoformat()
    except Exception:  # no time zone data on this machine: the local day is the best guess
        return dt.datetime.fromtimestamp(at).date().isoformat()


class ContractSession:
    """Applies the rules to the requests of one bank's client, in the order they arrive.

    Some rules need history (a CorrelationID never reused, a token reused until near
    expiry, retries that back off, the pace): the session keeps exactly that history and
    hands plain values to the rule functions above. Thread-safe: the gateway checks large
    batches in a worker thread.
    """

    def __init__(
        self,
        bank_orgnr: str,
        *,
        issuer: str,
        client_id: str | None = None,
        scope: str = WRITE_SCOPE,
        max_rate: float | None = DEFAULT_MAX_RATE,
        rate_window_s: float = 1.0,
        max_attempts: int = MAX_ATTEMPTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        daily_limit: int = DAILY_RELATIONSHIP_LIMIT,
        ingest_rate: float = KFR_INGEST_RATE,
    ) -> None:
        import threading

        self.bank_orgnr = bank_orgnr
        self.issuer = issuer
        self.client_id = client_id
        self.scope = scope
        self.max_rate = max_rate
        self.rate_window_s = rate_window_s
        self.max_attempts = max_attempts
        self.max_batch_bytes = max_batch_bytes
        self.daily_limit = daily_limit
        self.ingest_rate = ingest_rate
        self._lock = threading.Lock()
        self._correlation_ids: dict[str, tuple[float, str, str]] = {}
        self._tokens: dict[str, tuple[str, float, float]] = {}   # jti → (client, iat, exp)
        self._recent: collections.deque[float] = collections.deque()
        self._attempts: dict[tuple[str, ...], _Attempts] = {}
        self._daily: dict[str, int] = {}
        self._daily_reported: set[str] = set()
        self._ended: set[str] = set()
        self._unread: list[tuple[float, CustomerIdSet]] = []     # batches KFR is still reading
        self._batches_seen = 0
        self._pending_batches: dict[tuple[str, ...], CustomerIdSet] = {}

    # ---- the whole check of one request

    def check_request(self, facts: RequestFacts) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if facts.operation not in _BANK_OPERATIONS:
            return verdicts
        # Reading a batch file can take a while: done before taking the lock, so other
        # requests are not held up by it.
        content = self._batch_content(facts) if facts.operation == "batch" else None
        with self._lock:
            verdicts += self._identity(facts)
            verdicts += self._token(facts)
            verdicts += self._pace(facts)
            verdicts += self._retry(facts)
            if content is not None:
                verdicts += self._batch(facts, *content)
        return verdicts

    def observe_response(self, facts: RequestFacts, response: ResponseFacts) -> None:
        """Remember how a request was answered: the next attempt of it may be a retry."""
        if facts.operation not in _BANK_OPERATIONS:
            return
        with self._lock:
            attempts = self._attempts.setdefault(facts.retry_key, _Attempts())
            attempts.in_flight = False
            attempts.last_status = response.status
            attempts.last_at = response.at
            attempts.retry_after_s = retry_after_seconds(response.retry_after, response.at)
            if response.status == 401 and facts.claims:
                # A token KFR refused is spent: a new one after it is renewal, not waste.
                self._tokens.pop(str(facts.claims.get("jti") or ""), None)
            if response.status is not None and 200 <= response.status < 300:
                self._attempts.pop(facts.retry_key, None)
                self._after_success(facts, response)

    def replay(self, exchanges: list[Mapping[str, Any]]) -> list[list[Verdict]]:
        """The verdicts for recorded exchanges, in order, as if they arrived live (the
        judge's way to re-check gateway evidence from a pack)."""
        results = []
        for exchange in exchanges:
            facts = RequestFacts.from_exchange(exchange)
            results.append(self.check_request(facts))
            self.observe_response(facts, ResponseFacts.from_exchange(exchange))
        return results

    # ---- rule groups

    def _identity(self, facts: RequestFacts) -> list[Verdict]:
        verdicts = [correlation_id_is_uuid(facts.correlation_id)]
        cid = facts.correlation_id
        if cid:
            first = self._correlation_ids.get(cid)
            verdicts.append(correlation_id_unique(cid, f"{_when(first[0])} på {first[1]} {first[2]}" if first else None))
            if first is None:
                self._correlation_ids[cid] = (facts.at, facts.method, facts.operation)
        fid = facts.fid
        if fid is not None:
            verdicts.append(fid_is_bank(fid, self.bank_orgnr))
        if facts.operation in ("add", "end", "lookup"):
            verdicts.append(customer_id_is_valid(facts.customer_id))
        return verdicts

    def _token(self, facts: RequestFacts) -> list[Verdict]:
        claims = facts.claims
        verdicts = [token_is_bearer_jwt(facts.token_problem if claims is None else None)]
        if claims is None:
            return verdicts
        verdicts += [
            token_issuer_is(claims, self.issuer),
            token_consumer_is_bank(claims, self.bank_orgnr),
            token_has_scope(claims, self.scope),
        ]
        if self.client_id:
            verdicts.append(token_client_id_is(claims, self.client_id))
        verdicts.append(token_not_expired(claims, facts.at))
        jti = str(claims.get("jti") or "")
        if jti and jti not in self._tokens:
            client = str(claims.get("client_id") or "")
            for old in [j for j, (_, _, exp) in self._tokens.items() if exp <= facts.at]:
                del self._tokens[old]   # expired tokens cannot be wasted any more
            others = {
                j: (exp - facts.at, exp - iat)
                for j, (c, iat, exp) in self._tokens.items() if c == client
            }
            verdicts.append(token_reused(jti, others))
            iat, exp = claims.get("iat"), claims.get("exp")
            if isinstance(iat, int | float) and isinstance(exp, int | float):
                self._tokens[jti] = (client, float(iat), float(exp))
        return verdicts

    def _pace(self, facts: RequestFacts) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if self.max_rate:
            start = facts.at - self.rate_window_s
            recent = self._recent
            while recent and recent[0] <= start:
                recent.popleft()
            recent.append(facts.at)
            verdicts.append(request_rate_within(len(recent), self.rate_window_s, self.max_rate))
        if facts.operation == "end" and facts.customer_id:
            self._unread = [(at, ids) for at, ids in self._unread if at > facts.at]  # read by now
            read_at = max((at for at, ids in self._unread if facts.customer_id in ids), default=None)
            ready_in = None if read_at is None else read_at - facts.at
            verdicts.append(delete_waits_for_batch(facts.customer_id, ready_in))
        if facts.operation == "add":
            verdicts += self._count_daily(facts, 1)
        return verdicts

    def _retry(self, facts: RequestFacts) -> list[Verdict]:
        key = facts.retry_key
        attempts = self._attempts.get(key)
        is_retry = (
            attempts is not None and not attempts.in_flight
            and facts.at - attempts.last_at <= RETRY_WINDOW_S
        )
        if not is_retry or attempts is None:
            self._attempts[key] = _Attempts(count=1, in_flight=True, waits=[])
            return []
        verdicts: list[Verdict] = []
        waited = max(0.0, facts.at - attempts.last_at)
        if attempts.retry_after_s is not None:
            verdicts.append(retry_after_respected(waited, attempts.retry_after_s))
        waits = attempts.waits if attempts.waits is not None else []
        if attempts.last_status is None or attempts.last_status in _BACKOFF_STATUSES:
            waits.append(waited)
            verdicts.append(retry_backs_off(waits))
        attempts.waits = waits
        attempts.count += 1
        attempts.in_flight = True
        verdicts.append(no_retry_loop(attempts.count, self.max_attempts))
        return verdicts

    def _batch_content(self, facts: RequestFacts) -> tuple[list[Verdict], CustomerIdSet | None]:
        """The verdicts on the batch file itself and its customers (None when unreadable)."""
        verdicts = [boundary_unquoted(facts.content_type), batch_size_within(facts.body_size, self.max_batch_bytes)]
        if facts.body_size > self.max_batch_bytes:
            return verdicts, None
        reader = facts.body_reader
        if reader is None and facts.body is not None:
            reader = BatchBodyReader(facts.content_type)
            reader.feed(facts.body)
        if reader is None:
            return verdicts, None
        content, ids = reader.content()
        return verdicts + content, ids

    def _batch(self, facts: RequestFacts, verdicts: list[Verdict], customers: CustomerIdSet | None) -> list[Verdict]:
        verdicts = list(verdicts)
        if customers is not None:
            self._batches_seen += 1
            if self._batches_seen == 1:
                verdicts.append(first_load_without_ended(customers, self._ended))
            verdicts += self._count_daily(facts, len(customers))
            self._pending_batches[facts.retry_key] = customers
        return verdicts

    def _count_daily(self, facts: RequestFacts, n: int) -> list[Verdict]:
        day = _oslo_day(facts.at)
        self._daily[day] = self._daily.get(day, 0) + n
        if self._daily[day] > self.daily_limit and day not in self._daily_reported:
            self._daily_reported.add(day)
            return [daily_volume_within(self._daily[day], self.daily_limit)]
        return []

    def _after_success(self, facts: RequestFacts, response: ResponseFacts) -> None:
        customer = facts.customer_id or ""
        if facts.operation == "end":
            self._ended.add(customer)
        elif facts.operation == "add":
            self._ended.discard(customer)
        elif facts.operation == "batch":
            customers = self._pending_batches.pop(facts.retry_key, None)
            if customers is not None:
                self._unread.append((response.at + len(customers) / self.ingest_rate, customers))
                self._ended = {cid for cid in self._ended if cid not in customers}
