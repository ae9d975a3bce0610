"""How a run reaches the bank's core system: options and profile → :class:`CoreSystemSettings`.

Three ways, one per run:

- **command**: a command template per action, run without a shell. Either one command
  for every action, which then gets the action and its arguments appended in the tool's
  standard form (``open ID --from YYYY-MM-DD``, ``close ID``, ``batch ID[#YYYY-MM-DD] …``),
  or a template per action (``open = "bank-cli customer open {customer_id} --from {date}"``);
- **hook**: ``POST`` JSON to a URL of the bank's test system;
- **guided**: the runner says in the terminal what to do in the core system and waits,
  with a countdown, until the recording gateway sees the request.

On the command line (repeatable)::

    --core-system "python core.py --kfr-url {kfr_base_url}"         # one command, standard arguments
    --core-system "open=bank-cli customer open {customer_id} --from {date}" --core-system "close=…"
    --core-system guided
    --core-system-hook https://kjernesystem.test.bank.no/kfr-hook

In the profile::

    [banks.312345676.core_system]
    open = "bank-cli customer open {customer_id} --from {date}"
    close = "bank-cli customer close {customer_id}"
    batch = "bank-cli kfr load {file}"
    timeout = 30          # seconds to wait for the request after asking
    robustness = true     # also run the robustness rows (reported apart from the sheet)
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conformance.errors import UsageError

__all__ = [
    "ACTIONS",
    "PLACEHOLDERS",
    "CoreSystemSettings",
    "core_system_settings",
]

ACTIONS = ("open", "close", "batch")
GUIDED_WORDS = ("guided", "veiledet")
# Every placeholder a template may use, and what it becomes.
PLACEHOLDERS = {
    "action": "open | close | batch",
    "customer_id": "kundens fødselsnummer, D-nummer eller organisasjonsnummer",
    "date": "startdato ÅÅÅÅ-MM-DD (i dag når raden ikke gir en annen)",
    "entries": "batchens linjer som egne argumenter: ID eller ID#ÅÅÅÅ-MM-DD",
    "customers": "batchens innhold i KFRs format: ID#ÅÅÅÅ-MM-DD,ID,…",
    "file": "sti til en fil med batchens innhold i KFRs format",
    "kfr_base_url": "gatewayens KFR-base-URL, som kjernesystemet skal bruke",
    "bank": "bankens organisasjonsnummer",
    "case_id": "radens ID i testarket",
}
# What a per-action template must name, so the core system knows what to act on.
REQUIRED = {"open": ("customer_id",), "close": ("customer_id",), "batch": ("entries", "customers", "file")}
PROFILE_KEYS = frozenset({"command", *ACTIONS, "hook", "guided", "timeout", "robustness", "observe"})
DEFAULT_TIMEOUT_S = 15.0          # command and hook: the request should be there when they return
DEFAULT_GUIDED_TIMEOUT_S = 300.0  # a person at the core system's screen
DEFAULT_OBSERVE_S = 5.0           # robustness rows: how long to watch a reaction


@dataclass(frozen=True)
class CoreSystemSettings:
    """``kind`` is ``command``, ``hook`` or ``guided``. ``command``: the template used for
    every action without its own (argv, placeholders not yet filled); ``templates``: per
    action. ``timeout_s``: how long to wait for the gateway to see the request after asking.
    ``robustness``: run the robustness rows after the sheet."""

    kind: str
    command: tuple[str, ...] = ()
    templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hook_url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    robustness: bool = False
    observe_s: float = DEFAULT_OBSERVE_S

    def __post_init__(self) -> None:
        if self.kind not in ("command", "hook", "guided"):
            raise UsageError(f"Ukjent måte å nå kjernesystemet på: «{self.kind}».")
        if self.kind == "command":
            missing = [a for a in ACTIONS if a not in self.templates and not self.command]
            if missing:
                raise UsageError(
                    f"Kjernesystemet mangler kommando for {', '.join(missing)}.",
                    hint="Gi én kommando for alle handlinger (--core-system \"KOMMANDO\"), "
                         "eller én per handling (open=…, close=…, batch=…).",
                )
        if not 0 < self.timeout_s <= 3600:
            raise UsageError(f"Ventetiden for kjernesystemet må være 1–3600 sekunder, ikke {self.timeout_s:g}.")
        if not 0 < self.observe_s <= 600:
            raise UsageError(f"Observasjonstiden må være 1–600 sekunder, ikke {self.observe_s:g}.")

    def argv_template(self, action: str) -> tuple[str, ...]:
        """The argv template for ``action``: its own, or the common command with the
        action's standard arguments appended."""
        if action in self.templates:
            return self.templates[action]
        standard = {
            "open": ("open", "{customer_id}", "--from", "{date}"),
            "close": ("close", "{customer_id}"),
            "batch": ("batch", "{entries}"),
        }
        return (*self.command, *standard[action])

    def describe_nb(self) -> str:
        """One line for the run header."""
        if self.kind == "guided":
            return f"veiledet (du utfører handlingene i kjernesystemet; venter opptil {self.timeout_s:g} s per handling)"
        if self.kind == "hook":
            return f"HTTP-hook {self.hook_url}"
        shown = shlex.join(self.command) if self.command else ", ".join(
            f"{a}: {shlex.join(self.templates[a])}" for a in ACTIONS if a in self.templates)
        return f"kommando {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": list(self.command),
                "templates": {k: list(v) for k, v in self.templates.items()},
                "hook_url": self.hook_url, "timeout_s": self.timeout_s,
                "robustness": self.robustness, "observe_s": self.observe_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoreSystemSettings:
        return cls(kind=data["kind"], command=tuple(data.get("command") or ()),
                   templates={k: tuple(v) for k, v in (data.get("templates") or {}).items()},
                   hook_url=data.get("hook_url"), timeout_s=float(data.get("timeout_s") or DEFAULT_TIMEOUT_S),
                   robustness=bool(data.get("robustness")),
                   observe_s=float(data.get("observe_s") or DEFAULT_OBSERVE_S))


def core_system_settings(
    commands: Sequence[str] | None,
    hook: str | None,
    *,
    timeout_s: float | None = None,
    robustness: bool | None = None,
    profile: Any = None,
) -> CoreSystemSettings | None:
    """Settings from the options (``--core-system`` values, ``--core-system-hook``), or else
    from the profile's ``core_system`` table; None when the run has no core system (the tool
    performs every row). Anything inconsistent is a :class:`UsageError` in Norwegian."""
    if commands or hook:
        if profile is not None and not isinstance(profile, Mapping):
            profile = None
        return _from_values(list(commands or ()), hook, timeout_s, robustness, profile or {})
    if profile is None:
        if robustness:
            raise UsageError("--robustness krever et kjernesystem (--core-system eller --core-system-hook).")
        return None
    if not isinstance(profile, Mapping):
        raise UsageError("core_system i profilen må være en tabell: [banks.<orgnr>.core_system].")
    unknown = sorted(set(profile) - PROFILE_KEYS)
    if unknown:
        raise UsageError(f"Ukjente nøkler i [core_system]: {', '.join(unknown)}.",
                         hint=f"Gyldige: {', '.join(sorted(PROFILE_KEYS))}.")
    values: list[str] = []
    if profile.get("guided"):
        values.append("guided")
    if profile.get("command"):
        values.append(_text(profile, "command"))
    values += [f"{action}={_text(profile, action)}" for action in ACTIONS if profile.get(action)]
    hook_url = _text(profile, "hook") if profile.get("hook") else None
    if not values and not hook_url:
        raise UsageError("[core_system] i profilen sier ikke hvordan kjernesystemet nås.",
                         hint="Angi command, open/close/batch, hook eller guided = true.")
    return _from_values(values, hook_url, timeout_s, robustness, profile)


def _text(profile: Mapping[str, Any], key: str) -> str:
    value = profile.get(key)
    if not isinstance(value, str):
        raise UsageError(f"«{key}» i [core_system] må være en tekst.")
    return value


def _number(profile: Mapping[str, Any], key: str) -> float | None:
    value = profile.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"«{key}» i [core_system] må være et tall (sekunder).")
    return float(value)


def _from_values(values: list[str], hook: str | None, timeout_s: float | None,
                 robustness: bool | None, profile: Mapping[str, Any]) -> CoreSystemSettings:
    timeout = timeout_s if timeout_s is not None else _number(profile, "timeout")
    observe = _number(profile, "observe")
    robust = bool(robustness) if robustness is not None else bool(profile.get("robustness", False))
    guided = [v for v in values if v.strip().lower() in GUIDED_WORDS]
    commands = [v for v in values if v.strip().lower() not in GUIDED_WORDS]
    if sum(bool(x) for x in (guided, commands, hook)) > 1:
        raise UsageError("Velg én måte å nå kjernesystemet på: kommando, hook eller guided – ikke flere.")
    extra: dict[str, Any] = {"robustness": robust}
    if observe is not None:
        extra["observe_s"] = observe
    if guided:
        return CoreSystemSettings("guided", timeout_s=timeout or DEFAULT_GUIDED_TIMEOUT_S, **extra)
    if hook:
        return CoreSystemSettings("hook", hook_url=_hook_url(hook), timeout_s=timeout or DEFAULT_TIMEOUT_S, **extra)
    base: tuple[str, ...] = ()
    templates: dict[str, tuple[str, ...]] = {}
    for value in commands:
        action, sep, rest = value.partition("=")
        if sep and action.strip() in ACTIONS and " " not in action.strip():
            name = action.strip()
            if name in templates:
                raise UsageError(f"Kommandoen for «{name}» er gitt to ganger.")
            templates[name] = _argv(rest, name)
        else:
            if base:
                raise UsageError("Bare én felles kjernesystemkommando kan gis; bruk open=…, close=…, batch=… for resten.")
            base = _argv(value, None)
    return CoreSystemSettings("command", command=base, templates=templates,
                              timeout_s=timeout or DEFAULT_TIMEOUT_S, **extra)


def _argv(template: str, action: str | None) -> tuple[str, ...]:
    """A template split like a shell would (no shell ever runs it), its placeholders checked."""
    try:
        argv = tuple(shlex.split(template))
    except ValueError as exc:
        raise UsageError(f"Kjernesystemkommandoen «{template}» kan ikke leses: {exc}.") from exc
    if not argv:
        raise UsageError("Kjernesystemkommandoen er tom.")
    names: set[str] = set()
    for part in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        except ValueError as exc:
            raise UsageError(f"Plassholderne i «{part}» kan ikke leses: {exc} (skriv {{{{ for en krøllparentes).") from exc
        for name in fields:
            if name not in PLACEHOLDERS:
                raise UsageError(
                    f"Ukjent plassholder {{{name}}} i kjernesystemkommandoen «{template}».",
                    hint="Gyldige: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ".",
                )
            names.add(name)
    if action is not None and not names & set(REQUIRED[action]):
        wanted = " eller ".join("{" + p + "}" for p in REQUIRED[action])
        raise UsageError(f"Kommandoen for «{action}» må bruke {wanted}, ellers vet ikke kjernesystemet hva det skal gjøre.")
    return argv


def _hook_url(url: str) -> str:
    from conformance.kfr import refuse_production

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"«{url}» er ikke en http(s)-URL til kjernesystemets hook.")
    refuse_production(url)  # the hook is the bank's test system, never Bits' production API
    return url
