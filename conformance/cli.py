"""The ``kfr-conformance`` command: parse, call the engine, print, set the exit code.

Each command group lives in its own module under ``conformance.commands`` and exposes
``register(subparsers)``; the handler it sets as ``func`` returns the exit code.
Registering must stay cheap: every command builds the whole parser tree, so a group imports
its implementation inside its handlers, never at module level (``--help`` and ``verify``
would otherwise pay for the sandbox, openpyxl and the archive). A value the parser needs
from the engine — an option's choices or default — is a :class:`DeferredChoices` or
:class:`DeferredDefault`, read only when that command is parsed or its help is shown.
``tests/test_startup_imports.py`` keeps it so.
Every ConformanceError ends here as its plain-language diagnostics and exit code 2
(or the error's own ``exit_code``); ``--verbose`` shows the traceback as well.

What the command prints is read by banks, Bits and auditors, so it is Norwegian from the
first line: the parser below (used by every command group through ``add_subparsers``)
says ``bruk:``, titles its sections in Norwegian and translates argparse's own error
messages. ``kfr-conformance … | head -1`` ends quietly: once the reader has gone, the
rest of the output is discarded and the command still finishes what it was doing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn, overload

from conformance import __version__
from conformance.errors import ConformanceError

__all__ = [
    "DeferredChoices",
    "DeferredDefault",
    "NorwegianArgumentParser",
    "build_parser",
    "main",
]

PROG = "kfr-conformance"

# Order is the order of ``--help``.
COMMAND_MODULES = (
    "conformance.commands.sandbox",
    "conformance.commands.gateway",
    "conformance.commands.sheet",
    "conformance.commands.doctor",
    "conformance.commands.token",
    "conformance.commands.pack",
    "conformance.commands.archive",
    "conformance.commands.batch",
)

# --- engine values the parser needs, read when they are needed ----------------------------


class DeferredChoices(Sequence[str]):
    """An option's ``choices`` that live in the engine (the archive's standings, the CRL
    reasons), loaded by ``load()`` on first use: when the option is parsed or its
    command's help is shown. Building the parser for another command never loads them.

    Set it on the action after ``add_argument`` (``action.choices = DeferredChoices(…)``):
    ``add_argument`` formats the choices once to check the metavar, which would load them.
    """

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._values: tuple[str, ...] | None = None

    def _resolved(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = tuple(self._load())
        return self._values

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._resolved()[index]

    def __len__(self) -> int:
        return len(self._resolved())

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __contains__(self, value: object) -> bool:
        return value in self._resolved()

    def __repr__(self) -> str:
        shown = repr(self._values) if self._values is not None else "not loaded yet"
        return f"DeferredChoices({shown})"


class DeferredDefault:
    """An option's default that lives in the engine (the batch size limit, KFR's reading
    rate), loaded by ``load()`` on first use. :class:`NorwegianArgumentParser` puts the
    real value in the parsed namespace, so a handler never sees this object; ``%(default)s``
    in the option's help shows the value."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._loaded = False
        self._value: Any = None

    def resolve(self) -> Any:
        if not self._loaded:
            self._value, self._loaded = self._load(), True
        return self._value

    def __str__(self) -> str:  # argparse's %(default)s
        return str(self.resolve())

    def __repr__(self) -> str:
        shown = repr(self._value) if self._loaded else "not loaded yet"
        return f"DeferredDefault({shown})"


def _resolve_deferred_defaults(namespace: argparse.Namespace) -> None:
    for name, value in vars(namespace).items():
        if isinstance(value, DeferredDefault):
            setattr(namespace, name, value.resolve())


# --- Norwegian argparse ------------------------------------------------------------------

USAGE_PREFIX = "bruk: "
POSITIONALS_TITLE = "argumenter"
OPTIONALS_TITLE = "valg"
HELP_HELP = "vis denne hjelpeteksten og avslutt"
# argparse's own group titles, as a parent parser (``parents=[...]``) still carries them.
_ENGLISH_TITLES = {"positional arguments": POSITIONALS_TITLE, "options": OPTIONALS_TITLE,
                   "optional arguments": OPTIONALS_TITLE}

# What argparse calls a value's type in "invalid <type> value", in words.
_TYPE_NAMES_NB = {"int": "et heltall", "float": "et tall", "Path": "en filsti", "str": "tekst"}


def _sub(pattern: str, render: Callable[[re.Match[str]], str]) -> tuple[str, Callable]:
    # Compiled on the first error only (re caches it): most commands never need one.
    return pattern, render


# argparse builds its messages from fixed English templates (gettext without a Norwegian
# catalogue); each is matched whole and said again in Norwegian. Our own type converters
# already raise Norwegian text, which passes through unchanged.
_DETAIL_MESSAGES = (
    _sub(r"invalid choice: (?P<value>.+?) \(choose from (?P<choices>.+)\)",
         lambda m: f"ugyldig valg {m['value']} (velg blant {m['choices']})"),
    _sub(r"invalid (?P<type>\S+) value: (?P<value>.+)",
         lambda m: f"ugyldig verdi {m['value']} (forventet "
                   f"{_TYPE_NAMES_NB.get(m['type'], m['type'])})"),
    _sub(r"expected one argument", lambda m: "forventer én verdi"),
    _sub(r"expected at most one argument", lambda m: "forventer høyst én verdi"),
    _sub(r"expected at least one argument", lambda m: "forventer minst én verdi"),
    _sub(r"expected (?P<n>\d+) arguments?", lambda m: f"forventer {m['n']} verdier"),
    _sub(r"not allowed with argument (?P<other>.+)",
         lambda m: f"kan ikke brukes sammen med {m['other']}"),
    _sub(r"ignored explicit argument (?P<value>.+)",
         lambda m: f"tar ingen verdi (fikk {m['value']})"),
    _sub(r"can't open '(?P<file>.+)': (?P<error>.+)",
         lambda m: f"kan ikke åpne «{m['file']}»: {m['error']}"),
)
_MESSAGES = (
    _sub(r"the following arguments are required: (?P<names>.+)",
         lambda m: f"mangler påkrevd: {m['names']}"),
    _sub(r"unrecognized arguments: (?P<args>.+)",
         lambda m: f"ukjente argumenter: {m['args']}"),
    _sub(r"ambiguous option: (?P<option>\S+) could match (?P<matches>.+)",
         lambda m: f"tvetydig valg {m['option']}: kan bety {m['matches']}"),
    _sub(r"one of the arguments (?P<names>.+) is required",
         lambda m: f"ett av disse må oppgis: {m['names']}"),
    _sub(r"unexpected option string: (?P<option>.+)",
         lambda m: f"uventet valg {m['option']}"),
    _sub(r"argument (?P<name>.+?): (?P<detail>.+)",
         lambda m: f"{m['name']}: {_translate(m['detail'], _DETAIL_MESSAGES)}"),
    *_DETAIL_MESSAGES,
)


def _translate(message: str, table: Iterable[tuple[str, Callable]]) -> str:
    for pattern, render in table:
        match = re.fullmatch(pattern, message, re.S)
        if match:
            return render(match)
    return message


def translate_argparse_message(message: str) -> str:
    """argparse's English error ``message`` in Norwegian (unknown messages unchanged)."""
    return _translate(message.strip(), _MESSAGES)


class NorwegianHelpFormatter(argparse.HelpFormatter):
    """``bruk:`` instead of ``usage:``; otherwise argparse's layout."""

    def add_usage(self, usage: str | None, actions: Iterable[argparse.Action],
                  groups: Iterable[Any], prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, USAGE_PREFIX if prefix is None else prefix)


class NorwegianArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that speaks Norwegian: usage, section titles, ``-h`` and every
    error message. Sub-commands made with ``add_subparsers().add_parser`` are of this class
    too, so one parser configures every command."""

    def __init__(self, *args: Any, parents: Sequence[argparse.ArgumentParser] = (),
                 formatter_class: type[argparse.HelpFormatter] = NorwegianHelpFormatter,
                 add_help: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, add_help=False, **kwargs)
        self._positionals.title = POSITIONALS_TITLE
        self._optionals.title = OPTIONALS_TITLE
        if add_help:  # our own -h, so that its help text is Norwegian and it comes first
            self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS,
                              help=HELP_HELP)
        for parent in parents:
            self._add_container_actions(parent)
            self._defaults.update(parent._defaults)

    def _add_container_actions(self, container: Any) -> None:
        # A parent made with plain argparse has English group titles; merge its actions
        # into our Norwegian groups instead of adding an "options" section beside them.
        for group in container._action_groups:
            group.title = _ENGLISH_TITLES.get(group.title, group.title)
        super()._add_container_actions(container)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # Each sub-command's parser runs this too (argparse parses a sub-command into a
        # namespace of its own), so every deferred default on the chosen path is resolved.
        parsed, extras = super().parse_known_args(args, namespace)
        _resolve_deferred_defaults(parsed)
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: feil: {translate_argparse_message(message)}\n"
                     f"Se «{self.prog} --help».\n")


def build_parser() -> NorwegianArgumentParser:
    parser = NorwegianArgumentParser(
        prog=PROG,
        description="KFR-integrasjonstest (DSOP C-2/C-3): testmiljø, testark, resultatpakke, "
        "kontroll og arkiv.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="vis versjonen og avslutt")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="vis hele feilsporingen (traceback) ved feil")
    sub = parser.add_subparsers(dest="command", metavar="KOMMANDO",
                                help="kommandoen som skal kjøres")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command group not built yet
                continue
            raise
        module.register(sub)
    return parser


# --- output to a reader that may leave (| head) -------------------------------------------


class PipeSafeOutput:
    """Wraps ``sys.stdout`` for one command. When the reader goes away (``| head -1``), the
    rest of the output goes to /dev/null instead of raising BrokenPipeError, so a command
    still finishes its work (an archive import is not cut short because nobody reads its
    progress) and Python does not print a traceback while flushing at exit."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard_from_now_on()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._discard_from_now_on()

    def _discard_from_now_on(self) -> None:
        self.reader_gone = True
        try:  # what is still buffered, and the interpreter's flush at exit, go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file (captured in tests)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# --- main -----------------------------------------------------------------------------------


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ConformanceError as exc:
        if args.verbose:
            raise
        print(f"{PROG}: {exc.diagnostics()}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except OSError as exc:
        # A file-system problem no command turned into a message of its own.
        if args.verbose:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{PROG}: filfeil{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: avbrutt", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    original = sys.stdout
    output = PipeSafeOutput(original)
    sys.stdout = output  # type: ignore[assignment]
    try:
        return _run(argv)
    finally:
        output.flush()
        sys.stdout = original


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
