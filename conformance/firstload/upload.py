"""``batch upload``: files to KFR's test environment or the sandbox, one at a time, paced,
and resumable after a crash without ever sending a file twice unasked.

For each file the state file (see :mod:`conformance.firstload.state`) first records
"sending" with the CorrelationID about to be used, then the answer. A restart skips what
KFR accepted (by SHA-256, so a renamed copy is recognised too), sends again what KFR
refused, and stops at a file still marked "sending": the process died between sending and
the answer, so nobody knows whether KFR has it. Sending it again does not give a customer
two relationships (KFR does not add one that exists), but KFR reads the whole file once
more, which doubles that part of the queue; so it takes ``--resend-unknown``.

Pacing: KFR reads about 250 IDs a second after answering 201. Before each file the
uploader estimates, from the accepted files and when they were accepted, how many IDs are
still queued, and waits until this file fits under ``max_queued`` (default 0: the previous
file is read) — so the queue never grows faster than KFR reads it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx

from conformance.errors import ConformanceError, UsageError
from conformance.firstload.batchfile import read_batch_file
from conformance.firstload.rules import KFR_READ_RATE, format_count, format_duration
from conformance.firstload.state import load_state, parse_utc, save_state, utc_now, utc_stamp

__all__ = [
    "STATE_FORMAT",
    "BatchOutcome",
    "BatchOutcomeTransport",
    "Target",
    "UploadFile",
    "UploadResult",
    "UploadState",
    "UploadStopped",
    "Uploader",
]

STATE_FORMAT = "kfr-conformance/batch-upload/1"
# Answers after which KFR may well have the file although it did not say 201: a gateway
# that timed out waiting for KFR (504) or lost it on the way back (502).
AMBIGUOUS_STATUSES = frozenset({502, 504})
PROGRESS_EVERY_S = 30.0

SENDING, ACCEPTED, REFUSED = "sending", "accepted", "refused"


class UploadStopped(ConformanceError):
    """The upload stopped at a file that needs a person's decision; exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class UploadFile:
    path: Path
    sha256: str
    ids: int
    bytes: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Target:
    orgnr: str
    env_name: str
    kfr_base_url: str

    def identity(self) -> dict[str, str]:
        # The embedded sandbox gets a new port at every start: its URL does not identify it.
        url = self.kfr_base_url if self.env_name == "test" else "sandbox"
        return {"bank": self.orgnr, "environment": self.env_name, "kfr": url}


class UploadState:
    """Which files KFR has accepted, refused, or may have (``sending``), by SHA-256."""

    def __init__(self, path: Path, data: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.data = data
        self.clock = clock  # stamps and queue estimates use one clock (tests pass their own)

    def _stamp(self) -> str:
        return utc_stamp(self.clock())

    @classmethod
    def open(cls, path: Path, target: Target, *, clock: Callable[[], float] = time.time) -> UploadState:
        data = load_state(path, STATE_FORMAT)
        if data is None:
            data = {"format": STATE_FORMAT, "target": target.identity(), "files": [],
                    "created_at": utc_now()}
        elif data.get("target") != target.identity():
            raise UsageError(
                f"Statusfilen {path} gjelder {_describe(data.get('target'))}, "
                f"ikke {_describe(target.identity())}.",
                hint="Bruk en egen statusfil (--state) for hvert miljø og hver bank.",
            )
        return cls(path, data, clock)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.data["files"]

    def entry(self, sha256: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e["sha256"] == sha256), None)

    def by_name(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e["name"] == name and e["state"] == ACCEPTED), None)

    def unknown(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["state"] == SENDING]

    def save(self) -> None:
        save_state(self.path, self.data)

    def record_sending(self, file: UploadFile, correlation_id: str) -> dict[str, Any]:
        entry = self.entry(file.sha256)
        if entry is None:
            entry = {"name": file.name, "sha256": file.sha256, "ids": file.ids,
                     "bytes": file.bytes, "attempts": 0}
            self.entries.append(entry)
        entry.update(state=SENDING, correlation_id=correlation_id, sent_at=self._stamp(),
                     answered_at=None, status=None, error_code=None, message=None)
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        self.save()
        return entry

    def record_answer(self, entry: dict[str, Any], state: str, *, status: int | None,
                      error_code: str | None = None, message: str | None = None) -> None:
        entry.update(state=state, answered_at=self._stamp(), status=status,
                     error_code=error_code, message=message)
        self.save()

    def forget_attempt(self, entry: dict[str, Any], message: str) -> None:
        """The request never left this machine: nothing to resolve later."""
        entry.update(state=REFUSED, answered_at=self._stamp(), status=None, error_code=None,
                     message=message)
        self.save()

    def queued_ids(self, now: float, rate: float) -> float:
        """IDs KFR has probably not read yet: accepted (and unknown) files queue up and
        drain at ``rate`` per second from the moment each was sent."""
        events = sorted(
            (parse_utc(e["answered_at"] if e["state"] == ACCEPTED else e["sent_at"]), e["ids"])
            for e in self.entries
            if e["state"] in (ACCEPTED, SENDING) and (e.get("answered_at") or e.get("sent_at"))
        )
        queue, previous = 0.0, None
        for moment, ids in events:
            if previous is not None:
                queue = max(0.0, queue - rate * (moment - previous))
            queue += ids
            previous = moment
        if previous is None:
            return 0.0
        return max(0.0, queue - rate * max(0.0, now - previous))


def _describe(identity: Any) -> str:
    if not isinstance(identity, dict):
        return "et ukjent mål"
    where = "sandkassen" if identity.get("environment") != "test" else f"testmiljøet ({identity.get('kfr')})"
    return f"bank {identity.get('bank')} i {where}"


class BatchOutcome:
    """What became of the last batch POST: ``("answered", status)``, ``("not_sent", exc)``
    (it never reached the server) or ``("no_answer", exc)`` (it may have)."""

    def __init__(self) -> None:
        self.last: tuple[str, Any] | None = None
        self._lock = threading.Lock()

    def note(self, kind: str, detail: Any) -> None:
        with self._lock:
            self.last = (kind, detail)


class BatchOutcomeTransport(httpx.BaseTransport):
    """Wraps a real transport and notes in a shared :class:`BatchOutcome` what became of
    each batch POST. :class:`KfrClient` turns every failure into one error type; this keeps
    "never sent" and "sent, no answer" apart. Pass ``wrap=lambda t:
    BatchOutcomeTransport(t, outcome)`` to ``make_http_client``."""

    def __init__(self, inner: httpx.BaseTransport, outcome: BatchOutcome) -> None:
        self.inner = inner
        self.outcome = outcome

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_batch = request.method == "POST" and request.url.path.endswith("/batch")
        try:
            response = self.inner.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.PoolTimeout) as exc:
            if is_batch:
                self.outcome.note("not_sent", exc)
            raise
        except httpx.TransportError as exc:
            if is_batch:
                self.outcome.note("no_answer", exc)
            raise
        if is_batch:
            self.outcome.note("answered", response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class UploadResult:
    sent: int = 0
    skipped: int = 0
    accepted_ids: int = 0
    queued_ids: float = 0.0
    stopped: str | None = None


class Uploader:
    def __init__(
        self,
        client: Any,                          # conformance.kfr.KfrClient
        outcome: BatchOutcome,
        state: UploadState,
        *,
        rate: float = KFR_READ_RATE,
        max_queued: int = 0,
        resend_unknown: bool = False,
        progress: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0:
            raise UsageError("--ingest-rate må være større enn 0.")
        if max_queued < 0:
            raise UsageError("--max-queued kan ikke være negativ.")
        self.client, self.outcome, self.state = client, outcome, state
        self.rate, self.max_queued, self.resend_unknown = rate, max_queued, resend_unknown
        self.progress, self.sleep, self.clock = progress, sleep, clock

    def run(self, files: Sequence[UploadFile]) -> UploadResult:
        result = UploadResult()
        self._refuse_changed_files(files)
        self._stop_at_unknown(files)
        total = len(files)
        for number, file in enumerate(files, start=1):
            label = f"[{number}/{total}] {file.name}"
            entry = self.state.entry(file.sha256)
            if entry is not None and entry["state"] == ACCEPTED:
                result.skipped += 1
                result.accepted_ids += file.ids
                self.progress(f"{label}: allerede godtatt {entry['answered_at']} "
                              f"(CorrelationID {entry['correlation_id']}); sendes ikke igjen.")
                continue
            self._wait_for_queue(file)
            self._send(label, file)
            result.sent += 1
            result.accepted_ids += file.ids
        result.queued_ids = self.state.queued_ids(self.clock(), self.rate)
        return result

    # ---- before anything is sent

    def _refuse_changed_files(self, files: Sequence[UploadFile]) -> None:
        for file in files:
            earlier = self.state.by_name(file.name)
            if earlier is not None and earlier["sha256"] != file.sha256:
                raise UsageError(
                    f"{file.name} er endret etter at KFR godtok den {earlier['answered_at']} "
                    f"(SHA-256 var {earlier['sha256'][:16]}…, er nå {file.sha256[:16]}…).",
                    hint="Innholdet kan overlappe med det som er sendt. Bygg filene på nytt i en ny "
                    "mappe og kontroller hva som alt er lastet (batch confirm) før du sender mer.",
                )

    def _stop_at_unknown(self, files: Sequence[UploadFile]) -> None:
        unknown = self.state.unknown()
        if not unknown or self.resend_unknown:
            return
        lines = [
            f"- {e['name']}: sendt {e['sent_at']} med CorrelationID {e['correlation_id']}, "
            f"{format_count(e['ids'])} ID-er"
            for e in unknown
        ]
        raise UploadStopped(
            "Utfallet er ukjent for " + ("denne filen" if len(unknown) == 1 else "disse filene")
            + " (opplastingen stoppet mellom sending og svar):\n  " + "\n  ".join(lines)
            + "\nKFR kan ha fått filen. En ny sending gir ikke doble kundeforhold (KFR legger ikke "
            "inn et kundeforhold som finnes fra før), men KFR leser da alle ID-ene én gang til, "
            "så køen dobles for den filen (ca. "
            + format_duration(sum(e["ids"] for e in unknown) / self.rate) + " ekstra). "
            "Derfor sendes den på nytt bare med --resend-unknown.",
            hint="Sjekk først med «kfr-conformance batch confirm FIL --bank …» om ID-ene er synlige; "
            "bruk --resend-unknown bare hvis de ikke er det.",
        )

    # ---- pacing

    def _wait_for_queue(self, file: UploadFile) -> None:
        allowed = max(self.max_queued, file.ids)
        announced = False
        last_report = self.clock()
        while True:
            queued = self.state.queued_ids(self.clock(), self.rate)
            excess = queued + file.ids - allowed
            if excess <= 0:
                return
            wait = excess / self.rate
            now = self.clock()
            if not announced or now - last_report >= PROGRESS_EVERY_S:
                self.progress(
                    f"Venter {format_duration(wait)}: KFR har anslagsvis {format_count(round(queued))} "
                    f"ID-er i kø (leser ca. {self.rate:g} per sekund)."
                )
                announced, last_report = True, now
            self.sleep(min(wait, PROGRESS_EVERY_S) + 0.01)

    # ---- one file

    def _send(self, label: str, file: UploadFile) -> None:
        content = read_batch_file(file.path)
        if sha256(content).hexdigest() != file.sha256:
            raise UsageError(f"{file.path} endret seg mens opplastingen pågikk; ingenting er sendt.")
        correlation_id = str(uuid.uuid4())
        entry = self.state.record_sending(file, correlation_id)  # on disk before the request
        self.progress(f"{label}: sender {format_count(file.ids)} ID-er "
                      f"({format_count(file.bytes)} byte), CorrelationID {correlation_id} …")
        self.outcome.last = None
        try:
            response = self.client.batch(content, correlation_id=correlation_id)
        except ConformanceError as exc:  # environment, Maskinporten, certificate …
            self._after_failure(label, entry, exc)
            return  # not reached: _after_failure raises
        # Anything else (Ctrl-C mid-request, a crash) leaves the file marked "sending":
        # the request may have reached KFR, and the next run asks what to do.
        if response.status == 201:
            self.state.record_answer(entry, ACCEPTED, status=201)
            self.progress(f"{label}: godtatt (201 – gyldig, leses inn av KFR i bakgrunnen).")
            return
        detail = " ".join(x for x in (response.error_code, response.error_message) if x)
        self.state.record_answer(entry, REFUSED, status=response.status,
                                 error_code=response.error_code, message=response.error_message)
        raise UploadStopped(
            f"{label}: KFR avviste filen med HTTP {response.status}"
            + (f" ({detail})" if detail else "") + f", CorrelationID {correlation_id}.",
            hint=_refusal_hint(response.status),
        )

    def _after_failure(self, label: str, entry: dict[str, Any], exc: ConformanceError) -> None:
        # No batch POST reached the transport (e.g. Maskinporten refused the token first):
        # the file was never sent.
        kind, detail = self.outcome.last or ("not_sent", exc.message)
        if kind == "not_sent":
            self.state.forget_attempt(entry, f"ikke sendt: {detail}")
            raise UploadStopped(
                f"{label}: filen ble ikke sendt: {exc.message}",
                hint=exc.hint or "Kjør samme kommando igjen når feilen er rettet; "
                "filer KFR alt har godtatt, sendes ikke på nytt.",
            ) from exc
        if kind == "answered" and detail not in AMBIGUOUS_STATUSES:
            self.state.record_answer(entry, REFUSED, status=int(detail), message=exc.message)
            raise UploadStopped(
                f"{label}: KFR svarte HTTP {detail} og tok ikke imot filen ({exc.message}).",
                hint="Feilen ligger i miljøet, ikke i filen; kjør samme kommando igjen senere.",
            ) from exc
        # 502/504 or a connection lost after sending: KFR may have the file. Leave it
        # marked "sending"; the next run asks for a decision.
        what = f"HTTP {detail}" if kind == "answered" else "forbindelsen brøt før svaret kom"
        raise UploadStopped(
            f"{label}: utfallet er ukjent ({what}); KFR kan ha fått filen "
            f"(CorrelationID {entry['correlation_id']}).",
            hint="Sjekk med «batch confirm» om ID-ene er synlige før du sender på nytt med "
            "--resend-unknown.",
        ) from exc


def _refusal_hint(status: int) -> str:
    if status == 401:
        return "Tokenet ble ikke godtatt (KFR-001): kontroller klient-ID og sertifikat (kfr-conformance doctor)."
    if status == 403:
        return ("Ingen tilgang (KFR-002/003), eller feil boundary i multipart (KFR-FAQ): "
                "kontroller scope og at --bank er bankens eget organisasjonsnummer.")
    if status == 413:
        return "Filen er for stor for KFR: bygg på nytt med mindre --max-bytes."
    return "Kontroller filen med «kfr-conformance batch check»; rett feilen og kjør samme kommando igjen."
