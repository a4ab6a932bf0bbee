"""Command line: `reactor serve | check | engine | status | requeue | config | demo | …`.

`main(argv) -> int`: a person's mistake gets one clear line on stderr and exit code 2,
never a traceback. Every tool is a verb of this one command, and each verb is a module
of `reactor.commands` with `HELP`, `add_arguments(parser)` and `run(args) -> int`. Those
modules import the heavy rooms (aiohttp, watchdog, the pod5 library) only in `run`, so
building the parser stays light and `reactor status` never loads the service.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from reactor import __version__

# Verb -> module of reactor.commands, in the order `reactor --help` lists them.
COMMANDS: dict[str, str] = {
    "serve": "serve",
    "check": "check",
    "engine": "engine",
    "status": "status",
    "requeue": "requeue",
    "run": "run",
    "verify": "verify",
    "merge": "merge",
    "config": "config",
    "demo": "demo",
    "simulate-run": "simulate_run",
    "fake-basecaller": "fake_basecaller",
}


class _Command:
    """What a module of reactor.commands provides (checked by use, not by inheritance)."""

    HELP: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _command(verb: str) -> _Command:
    module: _Command = importlib.import_module(f"reactor.commands.{COMMANDS[verb]}")  # type: ignore[assignment]
    return module


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (a verb), that verb's alone: the same parse
    of a command line that starts with it, without importing every other verb's module
    (~60 ms at every start of `reactor serve`)."""
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="Live, crash-safe basecalling work manager for nanopore runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in [only] if only is not None else COMMANDS:
        command = _command(verb)
        command.add_arguments(verbs.add_parser(verb, help=command.HELP, description=command.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        return _command(args.command).run(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
