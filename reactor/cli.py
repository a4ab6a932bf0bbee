"""Command line: `reactor serve | check | engine | status | requeue | config | demo | …`.

`main(argv) -> int`: a person's mistake gets one clear line on stderr and exit code 2,
never a traceback. Subcommand modules load their heavy dependencies (the pod5 library)
only when they run, so `serve` and `engine` work without it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from reactor import __version__

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "check": (
        "reactor.check",
        "check that this machine can run reactor serve with these settings",
    ),
    "engine": (
        "reactor.engine",
        "ask a reactor for batches and run a basecaller (dorado or any command) on them",
    ),
    "status": (
        "reactor.status",
        "show a running reactor's progress, rate, ETA, engines and quarantined files",
    ),
    "requeue": (
        "reactor.requeue",
        "release quarantined files back to the queue of a running reactor",
    ),
    "config": (
        "reactor.config_command",
        "settings files: import-seed makes them from the seed service's JSON",
    ),
    "demo": (
        "reactor.demo",
        "run a whole simulated live run here and prove every read was basecalled once",
    ),
    "simulate-run": (
        "reactor.simulate",
        "write real .pod5 files into a folder over time, the way MinKNOW does",
    ),
    "fake-basecaller": (
        "reactor.fakecaller",
        "stand-in for dorado: one FASTQ record per read of every .pod5 in a folder",
    ),
}


def _parser() -> argparse.ArgumentParser:
    from reactor.config import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="reactor",
        description="Live, crash-safe basecalling work manager for nanopore runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="watch a run folder and hand its .pod5 files to basecalling engines",
        description=(
            "Serve the seed's engine protocol (/assignwork, /keepalive, /completed) for "
            "one run folder. Settings come from flags, then REACTOR_* environment "
            "variables, then the --config TOML file, then defaults."
        ),
    )
    add_config_arguments(serve)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _module(module_name).add_arguments(sub)
    return parser


def _module(name: str) -> _Command:
    module: _Command = importlib.import_module(name)  # type: ignore[assignment]
    return module


class _Command:
    """What a subcommand module provides (checked by use, not by inheritance)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from reactor.app import create_app
    from reactor.config import ConfigError, load_config, prepare_output_dirs
    from reactor.keys import HEARTBEAT
    from reactor.logs import configure_logging

    try:
        config = load_config(args, os.environ)
        prepare_output_dirs(config)
    except ConfigError as exc:
        print(f"reactor serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    app = create_app(config, ready_when_listening=True)
    heartbeat = app[HEARTBEAT]

    def listening(_banner: str) -> None:
        # run_app calls `print` once every site listens: the moment to say READY=1.
        heartbeat.announce_ready()

    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            print=listening,
            shutdown_timeout=10.0,
            access_log=None,
        )
    except OSError as exc:
        print(f"reactor serve: cannot listen on {config.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command in COMMANDS:
        return _module(COMMANDS[args.command][0]).run(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
