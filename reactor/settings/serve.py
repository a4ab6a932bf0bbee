"""reactor serve's settings: one frozen `ServeConfig`, read from flags, environment and a TOML file.

Each key can be given three ways; the first one found wins, then the default applies:

1. a command-line flag, ``--<key with - for _>`` (``--batch-size 20``);
2. an environment variable, ``REACTOR_<KEY>`` (``REACTOR_BATCH_SIZE=20``); an empty
   variable counts as unset;
3. the TOML file named by ``--config`` or ``REACTOR_CONFIG`` (``batch_size = 20``);
   relative paths in it are relative to the file's folder.

Times are in seconds. The keys, their defaults and meanings are the `_KEYS` table below;
`describe_keys()` returns them as rows, and the README's settings table shows the same
rows (a test keeps the two in step).

This module owns serve's own: `ServeConfig`, its key table, the rules across keys, the
folder checks, `load_config` (which also finds the `on_complete` program), and
`local_service` (where clients on this host, such as `reactor status`, find serve).
What a key is, how flags, environment and file are merged, the parsers, the TOML reader
and `ConfigError` live in `reactor.settings.parsing`, shared with the engine; `listen`
and `allow` are `reactor.settings.network`'s, `stop_file` and `on_complete`
`reactor.settings.run_end`'s.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

from reactor.core.endrun import DEFAULT_STOP_FILE
from reactor.core.names import RESULT_FOLDERS
from reactor.core.params import Rule, RuleError, parse_rules
from reactor.settings.fleet import TABLE as FLEET_TABLE
from reactor.settings.fleet import FleetConfig, parse_fleet
from reactor.settings.folders import folder_problem
from reactor.settings.network import (
    Network,
    is_loopback,
    listen_problem,
    parse_allow,
    split_listen,
)
from reactor.settings.parsing import (
    DEFAULT_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    ConfigFile,
    Invalid,
    Key,
    LogFormat,
    add_key_arguments,
    at_least,
    check_fields,
    find_raw,
    merge_keys,
    named_config_file,
    one_of,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
    parse_path,
    parse_paths,
    parse_seconds,
    parse_text,
    parse_token,
    positive_seconds,
    read_config_file,
    reject_unknown_keys,
    token_problem,
    zero_or_more_seconds,
)
from reactor.settings.programs import FIX, find_program, program_missing
from reactor.settings.run_end import (
    command_line_problem,
    parse_command_line,
    program_relative_to,
    stop_file_problem,
)

ObserverKind = Literal["native", "polling"]
Durability = Literal["fsync", "none"]

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
ENV_PREFIX = "REACTOR_"
CONFIG_ENV = "REACTOR_CONFIG"
OBSERVERS = ("native", "polling")
DURABILITIES = ("fsync", "none")
SOURCES = ("auto", "all", "pod5", "pod5_skip")
OUTPUT_LAYOUTS = ("auto", "seed", "minknow")
OUTPUT_FORMATS = ("auto", "fastq.gz", "bam", "both")
MAX_QSCORE = 60.0
# What input_dir and output_dir are in host mode: a path that can never be made (under a
# file), so a mistaken use fails loudly instead of touching the working folder.
UNSET = Path("/dev/null/unset")
DEFAULT_ADOPT_SINCE = 2 * 86400.0
# A full /data stops acquisition on every flow cell: below this share of the output
# filesystem free, no more work is handed out (engines' outputs are what fills it).
DEFAULT_MIN_FREE_PERCENT = 5.0


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every setting of a running reactor; built once at start and passed whole."""

    input_dir: Path = UNSET
    output_dir: Path = UNSET
    watch_root: tuple[Path, ...] = ()
    output_root: Path | None = None
    adopt_since: float = DEFAULT_ADOPT_SINCE
    sources: str = "auto"
    output_layout: str = "auto"
    output_format: str = "auto"
    min_qscore: float | None = None
    read_qc: bool = True
    read_workers: int = 2
    merge_outputs: bool = False
    merge_samples: bool = False
    min_free_percent: float = DEFAULT_MIN_FREE_PERCENT
    stall_after: float = 10800.0
    rules: tuple[Rule, ...] = ()
    seed_params: tuple[tuple[str, str], ...] = ()
    seed_engines: bool = True
    stage_to: Path | None = None
    stage_max_gb: float = 0.0
    stage_keep: bool = False
    listen: str = DEFAULT_LISTEN
    batch_size: int = 10
    report_back_interval: float = 90.0
    sweep_interval: float = 5.0
    max_attempts: int = 3
    bench_after: int = 3
    bench_seconds: float = 300.0
    shutdown_interval: float = 100.0
    storage_grace: float = 5.0
    durability: Durability = "fsync"
    observer: ObserverKind = "native"
    poll_interval: float = 2.0
    settle_seconds: float = 5.0
    reconcile_interval: float = 300.0
    stop_file: str = DEFAULT_STOP_FILE
    on_complete: str | None = None
    exit_on_complete: bool = False
    token: str | None = field(default=None, repr=False)
    allow: tuple[Network, ...] = ()
    insecure: bool = False
    log_level: str = "info"
    log_format: LogFormat = "auto"
    fleet: FleetConfig | None = None  # the [fleet] table (reactor.settings.fleet)

    def __post_init__(self) -> None:
        # Also guards configs built directly (tests, embedding), not only parsed ones.
        check_fields(self, _KEYS)
        _check_relations(self)

    @property
    def host(self) -> str:
        """Host part of `listen`, without IPv6 brackets."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def minknow_layout(self) -> bool:
        """Outputs in MinKNOW's layout (host mode's default) rather than the seed's."""
        if self.output_layout == "auto":
            return self.host_mode
        return self.output_layout == "minknow"

    @property
    def host_mode(self) -> bool:
        """Serving every run under `watch_root`, not the one run of input_dir/output_dir."""
        return bool(self.watch_root)

    @property
    def durable(self) -> bool:
        """Whether each answer waits for what it rests on to be fsynced."""
        return self.durability == "fsync"


def parse_rule_list(raw: object, from_text: bool) -> tuple[Rule, ...]:
    if from_text:
        msg = "can only be given in the settings file, as [[rules]] tables"
        raise Invalid(msg)
    try:
        return parse_rules(raw)
    except RuleError as exc:
        raise Invalid(str(exc)) from None


def parse_seed_params(raw: object, from_text: bool) -> tuple[tuple[str, str], ...]:
    if from_text or not isinstance(raw, dict):
        msg = 'must be a table in the settings file, such as seed_params = { model = "hac" }'
        raise Invalid(msg)
    if not raw:
        return ()
    try:
        (rule,) = parse_rules([{"set": raw}])
    except RuleError as exc:
        raise Invalid(str(exc).replace("rule 1: set", "seed_params")) from None
    return tuple(sorted(rule.set.items()))


def percent_problem(value: float) -> str | None:
    return None if 0 <= value < 100 else f"must be a percentage from 0 to below 100, not {value:g}"


def _unset(key: str) -> str:
    return (
        f"{key} is not set: pass --{key.replace('_', '-')}, set REACTOR_{key.upper()} or add "
        f"{key} to the config file (or set watch_root to serve every run under a MinKNOW "
        "data root)"
    )


def _check_mode(config: ServeConfig) -> None:
    """One run (input_dir and output_dir) or every run under watch_root, never both."""
    given = [key for key in ("input_dir", "output_dir") if getattr(config, key) != UNSET]
    if config.watch_root:
        if given:
            msg = (
                f"{given[0]} and watch_root are both set: watch_root serves every run under a "
                "MinKNOW data root, input_dir and output_dir one run; set one or the other"
            )
            raise ConfigError(msg)
        if config.stage_to is not None and config.output_root is None:
            msg = (
                "stage_to is set without output_root: engines that cannot see the "
                "sequencer's disk must write their outputs elsewhere too; set output_root"
            )
            raise ConfigError(msg)
        if len(config.watch_root) > 1 and config.output_root is None:
            msg = (
                f"watch_root names {len(config.watch_root)} roots but output_root is not set: "
                "engines are given one folder, and job folders are paths below it, so set "
                "output_root (each run's results go there, under its path below its root)"
            )
            raise ConfigError(msg)
        return
    if config.output_root is not None:
        msg = "output_root is set without watch_root: it is where host mode puts each run's results"
        raise ConfigError(msg)
    if config.stage_to is not None:
        msg = "stage_to is set without watch_root: staging is for host mode"
        raise ConfigError(msg)
    for key in ("input_dir", "output_dir"):
        if key not in given:
            raise ConfigError(_unset(key))


def parse_qscore(raw: object, from_text: bool) -> float:
    return parse_number(raw, from_text, "a Phred quality", "9 or 10.5")


def qscore_problem(value: float) -> str | None:
    if 0 <= value <= MAX_QSCORE:
        return None
    return f"must be between 0 and {MAX_QSCORE:g}, got {value:g}"


def _check_relations(config: ServeConfig) -> None:
    """Rules across keys, checked without touching the filesystem."""
    _check_mode(config)
    if (config.merge_outputs or config.merge_samples) and not config.minknow_layout:
        msg = (
            "merge_outputs and merge_samples need the minknow output layout (they merge "
            "fastq_pass/, bam_pass/, … per barcode): set output_layout = minknow, or "
            "turn them off"
        )
        raise ConfigError(msg)
    if config.minknow_layout and not config.read_qc:
        msg = (
            "read_qc = false cannot go with the minknow output layout: its reads are read to "
            "be split into pass and fail; set output_layout = seed, or leave read_qc on"
        )
        raise ConfigError(msg)
    if not config.watch_root and Path(os.path.normpath(config.input_dir.absolute())) == Path(
        os.path.normpath(config.output_dir.absolute())
    ):
        msg = (
            f"input_dir and output_dir are the same folder ({config.input_dir}): "
            "point output_dir at a separate folder for results"
        )
        raise ConfigError(msg)
    if open_to_all(config, config.host):
        msg = (
            f"listen {config.listen!r} is reachable from other hosts but neither token nor "
            "allow is set, so anyone could take or fake work: set a token (REACTOR_TOKEN), "
            "an allow list of client networks (--allow 10.0.0.0/8), "
            "or listen on 127.0.0.1 (--insecure serves anyone, on a network you trust)"
        )
        raise ConfigError(msg)


def open_to_all(config: ServeConfig, host: str) -> bool:
    """Would serving on `host` let anyone take or fake work: beyond loopback, with
    neither a token nor an allow list, and without `insecure`."""
    no_rule = config.token is None and not config.allow and not config.insecure
    return no_rule and not is_loopback(host)


def serving_passed_sockets(config: ServeConfig, addresses: Sequence[str]) -> ServeConfig:
    """`config` serving the sockets systemd passed (socket activation), whose bound
    `addresses` are `listen` values: `listen` becomes the first, so the `serving` log says
    what is served. The access rule is `listen`'s, applied to each real address, so a
    socket on 0.0.0.0 needs a token or an allow list as `--listen 0.0.0.0` does."""
    for address in addresses:
        if open_to_all(config, split_listen(address)[0]):
            port = split_listen(address)[1]
            msg = (
                f"the socket systemd passed listens on {address}, reachable from other "
                "hosts, but neither token nor allow is set, so anyone could take or fake "
                "work: set a token (REACTOR_TOKEN) or an allow list of client networks, "
                f"or ListenStream=127.0.0.1:{port} in the .socket unit "
                "(--insecure serves anyone, on a network you trust)"
            )
            raise ConfigError(msg)
    return replace(config, listen=addresses[0])


# Serve's keys, read from REACTOR_<KEY> variables.
_Key = partial(Key, env_prefix=ENV_PREFIX)

# A table reads best as a table: one key per entry, its meaning on the lines below.
# fmt: off
_KEYS: tuple[Key, ...] = (
    _Key("input_dir", "(one run)", "DIR", parse_path,
         meaning="Folder where MinKNOW writes .pod5 files, for one run. Must exist, readable and "
         "writable: reactor creates ASSIGNED_ folders in it. Set it and output_dir, or "
         "watch_root."),
    _Key("output_dir", "(one run)", "DIR", parse_path,
         meaning="Folder for the run's results. Must exist and be writable; reactor creates pass/ "
         "and fail/ in it. Must not be input_dir."),
    _Key("watch_root", "(none)", "DIRS", parse_paths,
         meaning="Host mode: MinKNOW data roots (such as /data; a list in the file, "
         "comma-separated in the flag or variable). Every run under them, "
         "{group}/{sample}/{run}/, is found and served, each with its own results, records "
         "and end of run."),
    _Key("output_root", "(in each run)", "DIR", parse_path,
         meaning="Host mode: where each run's results go, in a folder that mirrors the run's "
         "path under its root; by default a reactor/ folder inside each run folder."),
    _Key("adopt_since", "172800.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Host mode: a run found without reactor's records is served when it started, or "
         "(without a final summary) changed, less than this many seconds ago; older ones only "
         "on request (reactor run add)."),
    _Key("sources", "auto", "WHICH", parse_choice, one_of(SOURCES),
         meaning="Host mode: which of a run's POD5 folders are work. auto: where MinKNOW "
         "basecalled live (its final summary says so, or its fastq_pass/, bam_pass/ or "
         "pod5_skip/ is there), pod5_skip/ only, else all; all; pod5 (all but pod5_skip/); "
         "pod5_skip."),
    _Key("output_layout", "auto", "LAYOUT", parse_choice, one_of(OUTPUT_LAYOUTS),
         meaning="seed: each job's outputs moved into pass/ and fail/ as the engine wrote them "
         "(job_id_<job>_<name>). minknow: the reads split at min_qscore by dorado's qs into "
         "MinKNOW's fastq_pass/, fastq_fail/ (bam_pass/, bam_fail/), barcode folders when "
         "the run is barcoded, named {fc}_{pass|fail}_{alias_}{prid8}_{runid8}_{batch} with "
         "batch numbers unique in the run. auto: minknow in host mode, seed for one run."),
    _Key("output_format", "auto", "FORMAT", parse_choice, one_of(OUTPUT_FORMATS),
         meaning="The minknow layout's files: fastq.gz, bam, both, or auto (what the engine "
         "wrote: FASTQ in, .fastq.gz out; BAM in, .bam out)."),
    _Key("min_qscore", "(by model)", "Q", parse_qscore, qscore_problem,
         meaning="A read passes when dorado's mean quality (its qs tag) reaches this. By "
         "default from the run's model: fast 8, hac 9, sup 10, else 9; a rule may set "
         "min_qscore per run. Engines must not pass dorado --min-qscore (it drops reads)."),
    _Key("read_qc", "true", "", parse_bool,
         meaning="Count every read of each job's outputs (reads, bases, N50, Q, per barcode) "
         "in a worker process before the job merges; false merges files unread (the seed "
         "layout only: the minknow layout reads them to split them)."),
    _Key("read_workers", "2", "N", parse_int, at_least(1),
         meaning="Processes that read jobs' outputs (one core each at most, shared by every "
         "run of a host): splitting a PromethION 48's BAM at full speed takes about 1.7 "
         "cores, its gzip FASTQ about 0.53 (make bench --parts qc)."),
    _Key("merge_outputs", "false", "", parse_bool, boolean=True,
         meaning="At the end of a run, before on_complete, write one file per barcode and "
         "pass/fail into the output folder's merged/ ([alias.]pass.fastq.gz, .bam), "
         "atomically; the minknow layout only. reactor merge SAMPLE merges a sample "
         "across its runs."),
    _Key("merge_samples", "false", "", parse_bool, boolean=True,
         meaning="Host mode: each time a run completes, merge its sample's complete runs "
         "into {group}/{sample}/reactor_merged/ (one file per barcode and pass/fail, "
         "replaced whole), as reactor merge SAMPLE does."),
    _Key("min_free_percent", "5.0", "PERCENT", parse_seconds, percent_problem,
         meaning="Below this share of free space on a run's output filesystem, no more of "
         "its files are handed out (engines' outputs fill it, and a full /data stops "
         "acquisition on every flow cell); logged disk_low, shown in /status, resumed by "
         "itself at 1 point above it. 0 turns the guard off."),
    _Key("stall_after", "10800.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning="A run with nothing happening for this long (no file, no assignment, no "
         "report) and nothing waiting for an engine is stalled: a MinKNOW crash, or a POD5 "
         "that never completes. Logged run_stalled with the files left and the fix, shown "
         "in /status; reactor run close ends it. 0 turns it off."),
    _Key("rules", "(none)", "", parse_rule_list,
         meaning="Host mode: the lab's rules for each run's basecall parameters, from what "
         "the run says it is ([[rules]] tables in the settings file, each with when = {…} "
         "and set = {…}; docs/host.md, \"Basecall parameters\"). A run's parameters are "
         "pinned at its first assignment."),
    _Key("seed_params", "(none)", "", parse_seed_params,
         meaning="Host mode: the parameters engines that speak only the seed's protocol run "
         "(they cannot be told any): they get only runs whose rules chose exactly these "
         "(none: runs no rule set anything for). A table in the settings file."),
    _Key("seed_engines", "true", "", parse_bool,
         meaning="Host mode: false hands engines that speak only the seed's protocol no work "
         "at all (when every run needs parameters they cannot be told)."),
    _Key("stage_to", "(none)", "DIR", parse_path,
         meaning="Host mode, for engines that cannot see the sequencer's disk: each complete "
         "POD5 is copied here (checked, fsynced) before it is handed out, and engines read "
         "the copy. Needs output_root (engines write there)."),
    _Key("stage_max_gb", "0.0", "GB", parse_seconds, zero_or_more_seconds,
         meaning="At most this much staged at once (copying waits for removals); 0: no bound."),
    _Key("stage_keep", "false", "", parse_bool, boolean=True,
         meaning="Keep staged copies of files that are done (they are removed by default)."),
    _Key("listen", DEFAULT_LISTEN, "HOST:PORT", parse_text, listen_problem,
         meaning="Address of the HTTP API: host:port, [ipv6]:port, or a bare port (on 127.0.0.1). "
         "Beyond loopback, token or allow must be set."),
    _Key("batch_size", "10", "N", parse_int, at_least(1),
         meaning="Files per job when an engine asks for batchsize 0 or less."),
    _Key("report_back_interval", "90.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Seconds a job may go without a keepalive before it expires and its files return "
         "to the queue; engines send one every half of this."),
    _Key("sweep_interval", "5.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Seconds between checks for expired jobs (and for quiet incomplete files)."),
    _Key("max_attempts", "3", "N", parse_int, at_least(1),
         meaning="Times a file must fail alone (a failed batch is retried in halves) before "
         "it is quarantined in a FAILED_ folder; with several engines working, on at least "
         "two of them."),
    _Key("bench_after", "3", "N", parse_int, at_least(0),
         meaning="Failed batches in a row after which an engine gets no work for "
         "bench_seconds, while other engines work; 0 turns benching off."),
    _Key("bench_seconds", "300.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="How long a benched engine gets empty answers."),
    _Key("shutdown_interval", "100.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning='Seconds without work after which /heartbeat answers "true" (idle).'),
    _Key("storage_grace", "5.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning="Seconds a request waits for the run folders to take writes again (a full or "
         "briefly unavailable disk) before it answers 503, which seed engines do not survive; "
         "0 answers at once."),
    _Key("durability", "fsync", "MODE", parse_choice, one_of(DURABILITIES),
         meaning="fsync: every answer waits until what it rests on (records, folders, the "
         "engine's outputs before a merge) is on stable storage, so a power cut loses no "
         "decision. none: no fsync, for throwaway runs (a process crash still loses nothing)."),
    _Key("observer", "native", "KIND", parse_choice, one_of(OBSERVERS),
         meaning="How new files are noticed: native (inotify and the like) or polling (NFS/SMB, "
         "where native events miss writes from other hosts)."),
    _Key("poll_interval", "2.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Seconds between folder scans of the polling observer."),
    _Key("settle_seconds", "5.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Seconds an incomplete .pod5 must stay quiet before it is checked again (for "
         "filesystems without close events)."),
    _Key("reconcile_interval", "300.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning="Seconds between safety-net rescans that catch events the kernel dropped; 0 turns "
         "them off."),
    _Key("stop_file", DEFAULT_STOP_FILE, "PATTERN", parse_text, stop_file_problem,
         meaning="File name pattern that says sequencing has finished (MinKNOW's final summary), "
         "looked for in input_dir and its parent; the run is complete once it is there and "
         "every file is done or quarantined."),
    _Key("on_complete", "(none)", "COMMAND", parse_command_line, command_line_problem,
         meaning="Command line run once when the run is complete (split like a shell line, run "
         "without a shell; REACTOR_RUN_* variables describe the run), e.g. to submit an "
         "alignment job."),
    _Key("exit_on_complete", "false", "", parse_bool, boolean=True,
         meaning="Exit (code 0) once the run is complete and on_complete has finished."),
    _Key("token", "(none)", "TOKEN", parse_token, token_problem,
         meaning="Bearer token clients must send (Authorization: Bearer <token>). Never logged; "
         "prefer REACTOR_TOKEN or the file to the flag, which other users can see in ps."),
    _Key("allow", "(none)", "NETWORKS", parse_allow,
         meaning="Client networks allowed to connect, such as 10.0.0.0/8: a list of strings in the "
         "file, comma-separated in the flag or variable. Loopback clients are always "
         "allowed."),
    _Key("insecure", "false", "", parse_bool, boolean=True,
         meaning="Listen beyond loopback with neither token nor allow: anyone who can "
         "reach the port can take and report work. Only on a network you trust."),
    _Key("log_level", "info", "LEVEL", parse_choice, one_of(LOG_LEVELS),
         meaning="debug, info, warning or error."),
    _Key("log_format", "auto", "FORMAT", parse_choice, one_of(LOG_FORMATS),
         meaning="json, console, or auto: JSON unless stdout is a terminal."),
)
# fmt: on
_KEY_NAMES = tuple(key.name for key in _KEYS)
_ON_COMPLETE = next(key for key in _KEYS if key.name == "on_complete")
_TOKEN = next(key for key in _KEYS if key.name == "token")


def describe_keys() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every setting, in documentation order."""
    return [(key.name, key.default, key.meaning) for key in _KEYS]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and one flag per key; all default to None, meaning "not given"."""
    add_key_arguments(parser, _KEYS, env_prefix=ENV_PREFIX, config_env=CONFIG_ENV)


def parse_config(
    args: argparse.Namespace, env: Mapping[str, str], file: ConfigFile | None = None
) -> ServeConfig:
    """Merge flags > environment > file > defaults into a ServeConfig, without touching disk."""
    if file is None:
        values = merge_keys(_KEYS, args, env, {}, "", None)
        return _with_fleet(ServeConfig(**values), None, env, "the environment")
    reject_unknown_keys(file, (*_KEY_NAMES, FLEET_TABLE))
    label = f"config file {file.path}"
    values = merge_keys(_KEYS, args, env, file.values, label, file.path.parent)
    command = values.get("on_complete")
    found = find_raw(_ON_COMPLETE, args, env, file.values, label)
    if command and found is not None and not found[2]:  # from the file, not a flag or variable
        values["on_complete"] = program_relative_to(command, file.path.parent)
    return _with_fleet(ServeConfig(**values), file.values.get(FLEET_TABLE), env, label)


def _with_fleet(
    config: ServeConfig, table: object | None, env: Mapping[str, str], label: str
) -> ServeConfig:
    served = config.watch_root or (config.input_dir, config.output_dir)
    fleet = parse_fleet(table, env, label, served)
    return config if fleet is None else replace(config, fleet=fleet)


def _check_folder(key: str, path: Path, why: str) -> None:
    problem = folder_problem(path, key)
    if problem is not None:
        message, fix = problem
        msg = f"{key} {message}: {fix}"
        raise ConfigError(msg)
    missing = [
        word
        for word, mask in (("readable", os.R_OK | os.X_OK), ("writable", os.W_OK | os.X_OK))
        if not os.access(path, mask)
    ]
    if missing:
        msg = (
            f"{key} {path} is not {' or '.join(missing)} by this user (uid {os.geteuid()}): "
            f"{why}; fix its permissions or run reactor as a user who can read and write there"
        )
        raise ConfigError(msg)


def check_folders(config: ServeConfig) -> None:
    """Check that input_dir and output_dir exist, are folders, and can be used (in host
    mode: the roots and the output root)."""
    if config.host_mode:
        for root in config.watch_root:
            _check_folder("watch_root", root, "reactor makes each run's folders there")
        if config.output_root is not None:
            _check_folder("output_root", config.output_root, "reactor writes results there")
        return
    _check_folder("input_dir", config.input_dir, "reactor creates ASSIGNED_ folders there")
    _check_folder("output_dir", config.output_dir, "reactor writes results there")
    if config.input_dir.samefile(config.output_dir):
        msg = (
            f"input_dir {config.input_dir} and output_dir {config.output_dir} are the same "
            "folder: point output_dir at a separate folder for results"
        )
        raise ConfigError(msg)


def prepare_output_dirs(config: ServeConfig) -> None:
    """Create output_dir/pass and output_dir/fail if they are missing (host mode: each
    run's are made when the run is adopted)."""
    if config.host_mode:
        return
    for name in RESULT_FOLDERS:
        folder = config.output_dir / name
        try:
            folder.mkdir(exist_ok=True)
        except FileExistsError:
            msg = (
                f"{folder} exists but is not a directory: "
                f"move it away so reactor can create {name}/"
            )
            raise ConfigError(msg) from None
        except OSError as err:
            msg = f"cannot create {folder} ({err.strerror}): check the permissions of output_dir"
            raise ConfigError(msg) from None


def read_settings_file(args: argparse.Namespace, env: Mapping[str, str]) -> ConfigFile | None:
    """The settings file named by `--config` or REACTOR_CONFIG, read; None if none is."""
    path = named_config_file(args, env, CONFIG_ENV)
    return None if path is None else read_config_file(path, CONFIG_ENV)


def load_config(args: argparse.Namespace, env: Mapping[str, str]) -> ServeConfig:
    """Read the config file (`--config` or REACTOR_CONFIG), merge, and check the folders
    and the on_complete program (which is then given by its absolute path)."""
    config = parse_config(args, env, read_settings_file(args, env))
    check_folders(config)
    return resolve_on_complete(config)


def resolve_on_complete(config: ServeConfig) -> ServeConfig:
    """The on_complete program must be found now, not at the end of a two-day run, and
    is then run by its absolute path: the command runs in output_dir, not here."""
    if config.on_complete is None:
        return config
    program, *args = shlex.split(config.on_complete)
    found = find_program(program)
    if found is None:
        msg = f"on_complete {program_missing(program)}: {FIX}"
        raise ConfigError(msg)
    return replace(config, on_complete=shlex.join([found, *args]))


def local_service(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(URL, token) of the service this host's settings describe, for clients on this host
    such as `reactor status`: `listen` and `token` from flags, REACTOR_* variables and the
    --config / REACTOR_CONFIG file, as serve reads them; only those two keys are read.
    A wildcard listen address (0.0.0.0, ::) is reached on loopback."""
    file = read_settings_file(args, env)
    keys = [key for key in _KEYS if key.name in ("listen", "token")]
    label = f"config file {file.path}" if file else ""
    values = merge_keys(keys, args, env, file.values if file else {}, label, None)
    host, port = split_listen(values.get("listen", DEFAULT_LISTEN))
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - mapped away
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}", values.get("token")


def client_token(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The token of a service named by its URL: `--token` or REACTOR_TOKEN only. The
    settings file is not read: its token is for this host's service, not any other."""
    token: str | None = merge_keys([_TOKEN], args, env, {}, "", None).get("token")
    return token
