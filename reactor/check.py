"""`reactor check`: will `reactor serve`, with these settings, work on this machine?

Takes the same settings as `serve` (flags, REACTOR_* variables, ``--config``), then runs
each check of `reactor.checks`, `reactor.endrun_checks` and `reactor.system_checks` and
prints one line per check: its status, name and finding, and on the next line the fix
when there is one. With ``--json``: one JSON object, ``{"ok": bool, "checks": [{"name",
"status", "message", "fix"}]}``, for scripts.

Exit codes: 0 every check ok (or skipped); 1 a check warns or fails; 2 the settings
themselves are wrong (one line on stderr, as `serve` says it).

It changes nothing: the folder checks create hidden ``.reactor-check-*`` files, folders
and links, and remove them; the port is bound and closed at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reactor.checks import (
    CheckResult,
    Status,
    check_access,
    check_clock,
    check_free_space,
    check_input_folder,
    check_input_journal,
    check_output_folder,
    check_output_journal,
    check_result_folders,
    earliest_sane_time,
)
from reactor.config import CONFIG_ENV, Config, ConfigError, add_config_arguments, parse_config
from reactor.endrun_checks import check_on_complete, check_run_folder
from reactor.settings import read_config_file
from reactor.system_checks import (
    PROC,
    check_inotify,
    check_input_filesystem,
    check_port,
    read_inotify_limits,
    read_inotify_usage,
    read_mountinfo,
)

DEFAULT_MIN_FREE_GB = 20.0


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What the checks need beyond the serve settings."""

    min_free_bytes: int = int(DEFAULT_MIN_FREE_GB * 1e9)
    proc: Path = PROC


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


def run_checks(config: Config, options: CheckOptions) -> list[CheckResult]:
    """Every check, in the order a person would fix things."""
    results = [check_input_folder(config.input_dir)]
    if results[-1].status is Status.OK:
        results.append(check_input_journal(config.input_dir))
    else:
        results.append(CheckResult("input renames", Status.SKIP, "input folder unusable"))
    results.append(check_run_folder(config.input_dir, config.stop_file))
    results.append(check_output_folder(config.output_dir))
    if results[-1].status is Status.OK:
        results.append(check_result_folders(config.output_dir))
        results.append(check_output_journal(config.output_dir))
        results.append(check_free_space(config.output_dir, options.min_free_bytes))
    else:
        for name in ("pass/ and fail/", "output renames", "free space"):
            results.append(CheckResult(name, Status.SKIP, "output folder unusable"))
    results.append(check_port(config.host, config.port, options.proc))
    results.append(check_access(config))
    results.append(check_on_complete(config))
    results.append(
        check_inotify(
            config.observer,
            read_inotify_limits(options.proc / "sys" / "fs" / "inotify"),
            read_inotify_usage(options.proc),
        )
    )
    results.append(
        check_input_filesystem(config.input_dir, config.observer, read_mountinfo(options.proc))
    )
    results.append(
        check_clock(time.time(), earliest_sane_time(), time.get_clock_info("monotonic").monotonic)
    )
    return results


def format_results(results: list[CheckResult]) -> str:
    """One line per check, its fix indented on the next; a summary line at the end."""
    width = max(len(result.name) for result in results)
    lines = []
    for result in results:
        status = result.status.value if not result.problem else result.status.value.upper()
        lines.append(f"{status:<4}  {result.name:<{width}}  {result.message}")
        if result.fix and result.problem:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {result.fix}")
    problems = sum(result.problem for result in results)
    lines.append(
        "all checks passed" if not problems else f"{problems} problem(s): see the fix lines"
    )
    return "\n".join(lines) + "\n"


def results_json(results: list[CheckResult]) -> str:
    ok = not any(result.problem for result in results)
    checks = [asdict(result) | {"status": result.status.value} for result in results]
    return json.dumps({"ok": ok, "checks": checks}, indent=2) + "\n"


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


def _load(args: argparse.Namespace) -> Config:
    """serve's settings, without serve's folder checks: here they are checks like the rest."""
    file_name = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    file = read_config_file(Path(file_name), CONFIG_ENV) if file_name else None
    return parse_config(args, os.environ, file)
