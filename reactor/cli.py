"""Command line: `reactor serve` (more commands arrive with later issues).

`main(argv) -> int`: a person's mistake gets one clear line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reactor import __version__


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
    return parser


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from reactor.app import create_app
    from reactor.config import ConfigError, load_config, prepare_output_dirs
    from reactor.logs import configure_logging

    try:
        config = load_config(args, os.environ)
        prepare_output_dirs(config)
    except ConfigError as exc:
        print(f"reactor serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        web.run_app(
            create_app(config),
            host=config.host,
            port=config.port,
            print=None,
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
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
