"""The three ways to ask the bank's core system to act: a command, an HTTP hook, a person.

Each adapter has two halves. :meth:`ask` hands the action over (runs the command, posts to
the hook, prints the instruction) and says how that went; :meth:`await_request` waits for
the recording gateway to see the request the action should cause. Whether the core system
did the right thing is never the adapter's word: the row is judged from what the gateway
recorded and what KFR then shows.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from conformance.coresystem.actions import CoreAction
from conformance.coresystem.settings import CoreSystemSettings

__all__ = [
    "AdapterResult",
    "CommandAdapter",
    "CoreSystemAdapter",
    "Display",
    "GuidedAdapter",
    "HookAdapter",
    "StreamDisplay",
    "make_adapter",
]

COMMAND_TIMEOUT_S = 300.0   # a core-system command that runs longer is stopped
HOOK_TIMEOUT_S = 60.0
OUTPUT_TAIL_CHARS = 600     # what of a command's output the row's message quotes

# Waits for a request: poll(seconds) returns the matching exchange, or None when none came.
Poll = Callable[[float], Mapping[str, Any] | None]


@dataclass(frozen=True)
class AdapterResult:
    """How handing the action over went, in Norwegian (``detail``) for the row's message."""

    ok: bool
    detail: str = ""


class Display(Protocol):
    """Where guided mode speaks: ``line`` prints a line, ``status`` rewrites the current one."""

    def line(self, text: str) -> None: ...

    def status(self, text: str) -> None: ...


class StreamDisplay:
    """A :class:`Display` on a text stream (a terminal: the status line is rewritten with
    a carriage return)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._status = False

    def line(self, text: str) -> None:
        prefix = "\r\x1b[K" if self._status else ""
        self._status = False
        self.stream.write(prefix + text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        self._status = True
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()


class CoreSystemAdapter(Protocol):
    kind: str

    def ask(self, action: CoreAction, context: Mapping[str, str]) -> AdapterResult: ...

    def await_request(self, action: CoreAction, poll: Poll, timeout: float) -> Mapping[str, Any] | None: ...


def _await(poll: Poll, timeout: float) -> Mapping[str, Any] | None:
    return poll(timeout)


class CommandAdapter:
    """Runs the action's command template: placeholders filled in argv, never a shell, so a
    customer id can never become shell syntax. ``{entries}`` alone in an argument becomes one
    argument per batch line; ``{file}`` a file holding the batch in KFR's format."""

    kind = "kommando"

    def __init__(self, settings: CoreSystemSettings, *, cwd: Path | None = None,
                 timeout_s: float = COMMAND_TIMEOUT_S, secrets: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.secrets = secrets

    def argv(self, action: CoreAction, context: Mapping[str, str], file: Path | None = None) -> list[str]:
        values: dict[str, Any] = {**action.values(), **context, "file": str(file or "")}
        argv: list[str] = []
        for part in self.settings.argv_template(action.action):
            if part == "{entries}":
                argv.extend(values["entries"])
                continue
            flat = {k: (" ".join(v) if isinstance(v, list) else v) for k, v in values.items()}
            argv.append(part.format_map(flat))
        return argv

    def ask(self, action: CoreAction, context: Mapping[str, str]) -> AdapterResult:
        with tempfile.TemporaryDirectory(prefix="kfr-core-") as folder:
            file = Path(folder) / "kundeforhold.txt"
            file.write_text(action.batch_text(), encoding="utf-8")
            argv = self.argv(action, context, file)
            try:
                done = subprocess.run(argv, cwd=self.cwd, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=self.timeout_s, check=False)
            except FileNotFoundError:
                return AdapterResult(False, f"kjernesystemkommandoen «{argv[0]}» finnes ikke")
            except PermissionError:
                return AdapterResult(False, f"kjernesystemkommandoen «{argv[0]}» kan ikke kjøres (tilgang nektet)")
            except subprocess.TimeoutExpired:
                return AdapterResult(False, f"kjernesystemkommandoen ble stoppet etter {self.timeout_s:g} s")
        if done.returncode == 0:
            return AdapterResult(True)
        output = (done.stderr or done.stdout or "").strip()
        return AdapterResult(False, f"kjernesystemkommandoen avsluttet med kode {done.returncode}"
                             + (f": {self._tail(output)}" if output else ""))

    def _tail(self, text: str) -> str:
        from conformance.evidence import redact_text

        text = redact_text(text, self.secrets)
        return text if len(text) <= OUTPUT_TAIL_CHARS else "…" + text[-OUTPUT_TAIL_CHARS:]

    def await_request(self, action: CoreAction, poll: Poll, timeout: float) -> Mapping[str, Any] | None:
        return _await(poll, timeout)


class HookAdapter:
    """POSTs the action as JSON to the bank's test system; any 2xx means it was taken."""

    kind = "hook"

    def __init__(self, settings: CoreSystemSettings, *, ca_bundle: Path | None = None,
                 timeout_s: float = HOOK_TIMEOUT_S) -> None:
        self.url = settings.hook_url or ""
        self.ca_bundle = ca_bundle
        self.timeout_s = timeout_s

    @staticmethod
    def payload(action: CoreAction, context: Mapping[str, str]) -> dict[str, Any]:
        values = action.values()
        return {
            **values, **context,
            "entries": [{"customer_id": c, "date": d.isoformat() if d else None} for c, d in action.entries],
        }

    def ask(self, action: CoreAction, context: Mapping[str, str]) -> AdapterResult:
        import httpx

        verify: Any = str(self.ca_bundle) if self.ca_bundle else True
        try:
            with httpx.Client(timeout=self.timeout_s, verify=verify, follow_redirects=False) as client:
                response = client.post(self.url, json=self.payload(action, context))
        except httpx.HTTPError as exc:
            return AdapterResult(False, f"kjernesystemets hook {self.url} svarte ikke: {type(exc).__name__}")
        if 200 <= response.status_code < 300:
            return AdapterResult(True)
        return AdapterResult(False, f"kjernesystemets hook svarte HTTP {response.status_code}")

    def await_request(self, action: CoreAction, poll: Poll, timeout: float) -> Mapping[str, Any] | None:
        return _await(poll, timeout)


class GuidedAdapter:
    """A person carries the action out in the core system: the instruction is printed, and a
    countdown runs until the gateway sees the request (or the time is up)."""

    kind = "veiledet"

    def __init__(self, display: Display, *, tick_s: float = 1.0) -> None:
        self.display = display
        self.tick_s = tick_s

    def ask(self, action: CoreAction, context: Mapping[str, str]) -> AdapterResult:
        case = context.get("case_id")
        self.display.line(f">>> {case + ': ' if case else ''}{action.describe_nb()}")
        self.display.line(f"    (kjernesystemets KFR-base-URL: {context.get('kfr_base_url', '')})")
        return AdapterResult(True)

    def await_request(self, action: CoreAction, poll: Poll, timeout: float) -> Mapping[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.display.line(f"    Ingen {action.what_nb()} kom fram til KFR innen {timeout:g} s.")
                return None
            self.display.status(f"    Venter på kjernesystemet: {left:4.0f} s igjen …")
            found = poll(min(self.tick_s, left))
            if found is not None:
                response = found.get("response") or {}
                self.display.line(f"    Mottatt: {action.what_nb()} – KFR svarte HTTP {response.get('status', '–')}.")
                return found


def make_adapter(settings: CoreSystemSettings, *, display: Display | None = None, cwd: Path | None = None,
                 ca_bundle: Path | None = None, secrets: tuple[str, ...] = ()) -> CoreSystemAdapter:
    if settings.kind == "guided":
        return GuidedAdapter(display or StreamDisplay())
    if settings.kind == "hook":
        return HookAdapter(settings, ca_bundle=ca_bundle)
    return CommandAdapter(settings, cwd=cwd, secrets=secrets)
