"""The ``kfr-conformance`` command: parse, call the engine, print, set the exit code.

Each command group lives in its own module under ``conformance.commands`` and exposes
``register(subparsers)``; the handler it sets as ``func`` returns the exit code.
Every ConformanceError ends here as its plain-language diagnostics and exit code 2
(or the error's own ``exit_code``); ``--verbose`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from conformance import __version__
from conformance.errors import ConformanceError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfr-conformance",
        description="KFR integrasjonstest (DSOP C-2/C-3): test environment, sheet, pack, verify.",
    )
    parser.add_argument("--version", action="version", version=f"kfr-conformance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
        print(f"kfr-conformance: {exc.diagnostics()}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("kfr-conformance: avbrutt", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
