"""`reactor check`: will `reactor serve`, with these settings, work on this machine?

Takes the same settings as `serve` (flags, REACTOR_* variables, ``--config``), runs
every check of `reactor.ops.checks` and prints one line per check: its status, name
and finding, and on the next line the fix when there is one; ``--json`` for scripts.

Exit codes: 0 every check ok (or skipped); 1 a check warns or fails; 2 the settings
themselves are wrong (one line on stderr, as `serve` says it).
"""

from __future__ import annotations

import argparse
import os
import sys

from reactor.ops.checks.report import (
    DEFAULT_MIN_FREE_GB,
    CheckOptions,
    format_results,
    results_json,
    run_checks,
)
from reactor.settings.parsing import ConfigError
from reactor.settings.serve import (
    ServeConfig,
    add_config_arguments,
    parse_config,
    read_settings_file,
)

HELP = "check that this machine can run reactor serve with these settings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--min-free-gb",
        metavar="GB",
        type=float,
        default=DEFAULT_MIN_FREE_GB,
        help=f"warn below this much free space for output_dir (default {DEFAULT_MIN_FREE_GB:g})",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.min_free_gb >= 0:
        print("reactor check: --min-free-gb must be 0 or more", file=sys.stderr)
        return 2
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"reactor check: {exc}", file=sys.stderr)
        return 2
    options = CheckOptions(int(args.min_free_gb * 1e9))
    results = run_checks(config, options)
    sys.stdout.write(results_json(results) if args.json else format_results(results))
    return 1 if any(result.problem for result in results) else 0


def _load(args: argparse.Namespace) -> ServeConfig:
    """serve's settings, without serve's folder checks: here they are checks like the rest."""
    return parse_config(args, os.environ, read_settings_file(args, os.environ))
