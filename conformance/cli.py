"""The ``kfr-conformance`` command: parse, call the engine, print, set the exit code.

Each command group lives in its own module under ``conformance.commands`` and exposes
``register(subparsers)``; the handler it sets as ``func`` returns the exit code.
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
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, NoReturn

from conformance import __version__
from conformance.errors import ConformanceError

__all__ = ["NorwegianArgumentParser", "build_parser", "main"]

PROG = "kfr-conformance"

# Order is the order of ``--help``.
COMMAND_MODULES = (
    "conformance.commands.sandbox",
    "conformance.commands.sheet",
    "conformance.commands.doctor",
    "conformance.commands.token",
    "conformance.commands.pack",
    "conformance.commands.archive",
    "conformance.commands.batch",
)

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


def _sub(pattern: str, render: Callable[[re.Match[str]], str]) -> tuple[re.Pattern[str], Callable]:
    return re.compile(pattern, re.S), render


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


def _translate(message: str, table: Iterable[tuple[re.Pattern[str], Callable]]) -> str:
    for pattern, render in table:
        match = pattern.fullmatch(message)
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
