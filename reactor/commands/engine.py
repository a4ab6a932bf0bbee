"""`reactor engine`: ask a manager for batches and run a basecaller on each.

The engine itself is `reactor.engine` (its life in `reactor.engine.process`, which says
what it does, its presets, exit codes and log events); this module is its command line.
aiohttp is imported only when the engine runs, not to build `reactor --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap

from reactor.settings.engine import (
    ENV_PREFIX,
    add_engine_config_arguments,
    load_engine_config,
)
from reactor.settings.parsing import ConfigError
from reactor.settings.templates import PRESETS

HELP = "ask a reactor for batches and run a basecaller (dorado or any command) on them"

DESCRIPTION = textwrap.fill(
    "Ask a reactor (or seed) manager for batches of .pod5 files, run a basecalling command "
    "on each, keep the batch's lease alive and report DONE or FAILED (or RELEASED: handed back "
    "unfinished when stopped). Settings come from "
    f"flags, then {ENV_PREFIX}* environment variables, then the --config TOML file, then "
    "defaults.",
    width=78,
)


def _epilog() -> str:
    width = max(16, *map(len, PRESETS))
    presets = "\n".join(
        f"  {name:<{width}} {preset.command}"
        + (f"\n  {'':<{width}} stdout to {preset.stdout_to}" if preset.stdout_to else "")
        + f"\n  {'':<{width}} ({preset.about})"
        for name, preset in PRESETS.items()
    )
    return (
        f"presets:\n{presets}\n\n"
        "signals:\n"
        "  The first SIGTERM/SIGINT finishes the batch in hand, reports it and exits 0. A\n"
        "  second one stops the command and hands the batch back: RELEASED, exit 1 (its\n"
        "  files go back to the front of the queue, no attempt counted). With --release-after\n"
        "  S, a command still running S seconds after the first signal is stopped and its\n"
        "  batch RELEASED, exit 0: under Slurm, --signal=B:TERM@300 with --release-after 240\n"
        "  hands a batch back a minute before the time limit. RELEASED needs reactor serve.\n\n"
        "exit codes:\n"
        "  0  stopped as asked (--until-empty, --exit-when-idle, --once, or a first\n"
        "     SIGTERM/SIGINT after the batch in hand was finished, or handed back after\n"
        "     --release-after, and reported)\n"
        "  1  a second SIGTERM/SIGINT came: a running command was stopped, its batch RELEASED\n"
        "  2  a setting is wrong\n"
        "  3  cannot go on: the manager was away for `grace` seconds (or refused the engine)\n"
        "     when asking for work, the command could not be started, or the job's folders\n"
        "     were not found under input_dir/output_dir, or an unexpected error"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the engine's flags to `parser` (the `reactor engine` subcommand's), with the
    presets and exit codes in its --help."""
    if parser.description is None:
        parser.description = DESCRIPTION
    parser.epilog = _epilog()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_engine_config_arguments(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="say whether this host can work with the manager (its folders, the manager, the "
        "token, a host's run folders) and exit: 0 all well, 1 a problem",
    )


def run(args: argparse.Namespace) -> int:
    """Run the engine with parsed arguments; returns the exit code (see the module doc)."""
    try:
        config = load_engine_config(args, os.environ)
    except ConfigError as exc:
        print(f"reactor engine: {exc}", file=sys.stderr)
        return 2
    from reactor.runtime.logs import configure_logging

    if getattr(args, "check", False):
        from reactor.engine.check import run_check

        return asyncio.run(run_check(config))
    configure_logging(config.log_level, config.log_format)
    from reactor.engine.process import run_engine

    return asyncio.run(run_engine(config))
