"""Every check of `reactor check`, in the order a person would fix things, and the report.

`run_checks` runs the checks of this package's modules on serve's settings;
`format_results` prints one line per check (status, name, finding) with the fix under
each problem, `results_json` the same as one JSON object, ``{"ok": bool, "checks":
[{"name", "status", "message", "fix"}]}``, for scripts. Nothing here changes anything:
the folder checks create hidden ``.reactor-check-*`` files, folders and links, and
remove them (the state folder is only looked at); the port is bound and closed at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reactor.ops.checks.access import check_access
from reactor.ops.checks.fleet import check_fleet
from reactor.ops.checks.folders import (
    check_free_space,
    check_input_folder,
    check_input_journal,
    check_output_folder,
    check_output_journal,
    check_result_folders,
)
from reactor.ops.checks.result import CheckResult, Status
from reactor.ops.checks.run_end import check_on_complete, check_run_folder
from reactor.ops.checks.state_folder import check_state_folder
from reactor.ops.checks.system import (
    PROC,
    check_clock,
    check_inotify,
    check_input_filesystem,
    check_port,
    earliest_sane_time,
    read_inotify_limits,
    read_inotify_usage,
    read_mountinfo,
)
from reactor.settings.serve import ServeConfig

DEFAULT_MIN_FREE_GB = 20.0


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What the checks need beyond the serve settings."""

    min_free_bytes: int = int(DEFAULT_MIN_FREE_GB * 1e9)
    proc: Path = PROC


def _host_folder_checks(config: ServeConfig, options: CheckOptions) -> list[CheckResult]:
    """Host mode: each watch root must take reactor's folders (each run's results go in
    it, unless output_root is set); the output root too; space where results go."""
    results: list[CheckResult] = []
    for root in config.watch_root:
        found = check_input_folder(root, name=f"watch root {root}", key="watch_root")
        results.append(found)
        if found.status is Status.OK:
            results.append(check_input_journal(root))
        results.append(check_input_filesystem(root, config.observer, read_mountinfo(options.proc)))
    where = config.output_root or config.watch_root[0]
    if config.output_root is not None:
        results.append(check_output_folder(where, name="output root", key="output_root"))
    results.append(check_free_space(where, options.min_free_bytes, config.min_free_percent))
    return results


def run_checks(config: ServeConfig, options: CheckOptions) -> list[CheckResult]:
    """Every check, in the order a person would fix things."""
    if config.host_mode:
        return [*_host_folder_checks(config, options), *_common_checks(config, options)]
    results = [check_input_folder(config.input_dir)]
    if results[-1].status is Status.OK:
        results.append(check_input_journal(config.input_dir))
    else:
        results.append(CheckResult("input renames", Status.SKIP, "input folder unusable"))
    results.append(check_run_folder(config.input_dir, config.stop_file))
    results.append(check_output_folder(config.output_dir))
    if results[-1].status is Status.OK:
        results.append(check_result_folders(config.output_dir))
        results.append(check_state_folder(config.output_dir))
        results.append(check_output_journal(config.output_dir))
        results.append(
            check_free_space(config.output_dir, options.min_free_bytes, config.min_free_percent)
        )
    else:
        for name in ("pass/ and fail/", "state folder", "output renames", "free space"):
            results.append(CheckResult(name, Status.SKIP, "output folder unusable"))
    *common, clock = _common_checks(config, options)
    results += common
    results.append(
        check_input_filesystem(config.input_dir, config.observer, read_mountinfo(options.proc))
    )
    results.append(clock)
    return results


def _common_checks(config: ServeConfig, options: CheckOptions) -> list[CheckResult]:
    """The port, access, on_complete, inotify and the clock: the same in both modes."""
    return [
        check_port(config.host, config.port, options.proc),
        check_access(config),
        check_on_complete(config),
        check_fleet(config),
        check_inotify(
            config.observer,
            read_inotify_limits(options.proc / "sys" / "fs" / "inotify"),
            read_inotify_usage(options.proc),
        ),
        check_clock(time.time(), earliest_sane_time(), time.get_clock_info("monotonic").monotonic),
    ]


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
