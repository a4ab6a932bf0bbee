"""The engine's settings: one frozen `EngineConfig`, from flags, environment and a TOML file.

As for `reactor serve` (see `reactor.settings.serve`), each key can be given three ways and the
first one found wins, then the default applies:

1. a flag, ``--<key with - for _>`` (``--batch-size 20``, ``--until-empty``);
2. an environment variable, ``REACTOR_ENGINE_<KEY>`` (``REACTOR_ENGINE_BATCH_SIZE=20``);
   an empty variable counts as unset; booleans are 1/true/yes/on or 0/false/no/off;
3. the TOML file named by ``--config`` or ``REACTOR_ENGINE_CONFIG``; relative paths in
   it are relative to the file's folder.

A preset fills in `command` and `stdout_to` (an explicit `stdout_to` still wins); giving
both `command` and `preset` is a mistake. Every template is parsed here, once, so an
unknown placeholder stops the engine at start with one line, not at its first batch.

This module owns what is the engine's own: `EngineConfig`, its key table, the rules
across keys, the engine id, the manager URL, presets and the folder and program checks.
What a key is, how flags, environment and file are merged, the value parsers, the TOML
reader and `ConfigError` are shared with serve's settings in `reactor.settings.parsing`.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from reactor.core.names import ENGINE_ID_MAX_LEN, InvalidName, check_engine_id
from reactor.core.protocol import MAX_WAIT_S
from reactor.settings.folders import folder_problem
from reactor.settings.parsing import (
    DEFAULT_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Key,
    LogFormat,
    add_key_arguments,
    at_least,
    check_fields,
    merge_keys,
    named_config_file,
    one_of,
    parse_bool,
    parse_choice,
    parse_int,
    parse_path,
    parse_seconds,
    parse_text,
    parse_token,
    positive_seconds,
    read_config_file,
    reject_unknown_keys,
    token_problem,
    zero_or_more_seconds,
)
from reactor.settings.templates import (
    PRESETS,
    command_fields,
    command_problem,
    parse_command,
    parse_template,
    path_template_problem,
    program_problem,
)

ENV_PREFIX = "REACTOR_ENGINE_"
CONFIG_ENV = "REACTOR_ENGINE_CONFIG"
DEFAULT_MANAGER = f"http://127.0.0.1:{DEFAULT_PORT}"
_ENGINE_ID_BAD = re.compile(r"[^A-Za-z0-9._-]")


def sanitise_engine_id(host: str) -> str:
    """A host name made into an engine id: other characters become '-', leading
    punctuation goes, at most 64 characters; "engine" if nothing is left."""
    cleaned = _ENGINE_ID_BAD.sub("-", host).lstrip("._-")[:ENGINE_ID_MAX_LEN]
    return cleaned or "engine"


def default_engine_id() -> str:
    return sanitise_engine_id(socket.gethostname())


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Every setting of a running engine; built once at start and passed whole."""

    input_dir: Path
    output_dir: Path
    command: str
    manager: str = DEFAULT_MANAGER
    engine_id: str = field(default_factory=default_engine_id)
    batch_size: int = 0
    poll_interval: float = 1.0
    max_poll_interval: float = 30.0
    preset: str | None = None
    model: str | None = None
    stdout_to: str | None = None
    token: str | None = field(default=None, repr=False)
    grace: float = 120.0
    kill_grace: float = 10.0
    release_after: float | None = None
    until_empty: bool = False
    exit_when_idle: float | None = None
    wait_for_work: float = 60.0
    once: bool = False
    log_level: str = "info"
    log_format: LogFormat = "auto"

    def __post_init__(self) -> None:
        check_fields(self, _KEYS)
        _check_relations(self)


def _manager_problem(value: str) -> str | None:
    try:
        url = urllib.parse.urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.hostname:
        return f"must be an http:// or https:// URL such as {DEFAULT_MANAGER}, got {value!r}"
    if url.query or url.fragment or url.username is not None:
        return f"must be the manager's base URL, without user, query or fragment; got {value!r}"
    return None


def _engine_id_problem(value: str) -> str | None:
    try:
        check_engine_id(value)
    except InvalidName:
        return (
            f"must be 1-{ENGINE_ID_MAX_LEN} letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return None


def _text_problem(value: str) -> str | None:
    return None if value.strip() else "is empty: set it or leave it out"


def _check_relations(config: EngineConfig) -> None:
    """Rules across keys, checked without touching the filesystem."""
    if config.max_poll_interval < config.poll_interval:
        msg = (
            f"max_poll_interval ({config.max_poll_interval:g} s) is shorter than "
            f"poll_interval ({config.poll_interval:g} s): raise it or lower poll_interval"
        )
        raise ConfigError(msg)
    uses = command_fields(parse_command(config.command))
    if config.stdout_to is not None:
        uses |= parse_template(config.stdout_to).fields
    if "model" in uses and config.model is None:
        msg = (
            "model is not set but the command uses {model}: pass --model (such as a dorado "
            "model name or path) or set REACTOR_ENGINE_MODEL"
        )
        raise ConfigError(msg)


# The engine's keys, read from REACTOR_ENGINE_<KEY> variables.
_Key = partial(Key, env_prefix=ENV_PREFIX)


def wait_problem(value: float) -> str | None:
    return None if 0 <= value <= MAX_WAIT_S else f"must be 0 to {MAX_WAIT_S:g} seconds"


# fmt: off
_KEYS: tuple[Key, ...] = (
    _Key("manager", DEFAULT_MANAGER, "URL", parse_text, _manager_problem,
         meaning="Base URL of the reactor (or seed) manager to ask for work."),
    _Key("engine_id", "(host name)", "ID", parse_text, _engine_id_problem,
         meaning="This engine's name in the manager: letters, digits, '.', '_', '-', at most "
         "64; by default the host name with other characters made '-'."),
    _Key("input_dir", "(required)", "DIR", parse_path, required=True,
         meaning="This host's path of the run's INPUTDIR; the manager's job folders are "
         "relative to it."),
    _Key("output_dir", "(required)", "DIR", parse_path, required=True,
         meaning="This host's path of the run's OUTPUTDIR; the manager's job folders are "
         "relative to it. For a manager in host mode, input_dir and output_dir are both "
         "its root (watch_root, or output_root when set)."),
    _Key("batch_size", "0", "N", parse_int, at_least(0),
         meaning="Files to ask for per batch; 0 takes the manager's default."),
    _Key("poll_interval", "1.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="First wait after an empty answer; doubles while there is no work. Also "
         "the first wait before retrying a manager that is away."),
    _Key("max_poll_interval", "30.0", "SECONDS", parse_seconds, positive_seconds,
         meaning="Longest wait between two requests for work."),
    # `reactor`'s own subcommand is `args.command`, so the --command flag must not land there.
    _Key("command", "(none)", "TEMPLATE", parse_text, command_problem, dest="command_template",
         meaning="Command run for each batch, split like a shell line but run without one; "
         "placeholders {input_dir} {output_dir} {model} {kit_name} {sample_sheet} {job_id} "
         "{engine_id} "
         "{batch_size} {python}. Give command or preset."),
    _Key("preset", "(none)", "NAME", parse_choice, one_of(tuple(PRESETS)),
         meaning=f"A ready-made command: {', '.join(PRESETS)} (see below)."),
    _Key("model", "(none)", "MODEL", parse_text, _text_problem,
         meaning="Value of {model}, such as a dorado model name or path; a manager in host "
         "mode may choose a run's model by its rules, which then comes first."),
    _Key("stdout_to", "(none)", "TEMPLATE", parse_text, path_template_problem,
         meaning="File the command's stdout is written to, such as "
         "{output_dir}/pass/{job_id}.fastq; without it stdout joins stderr in the job's "
         "engine.log."),
    _Key("token", "(none)", "TOKEN", parse_token, token_problem,
         meaning="Bearer token for the manager (Authorization: Bearer). Prefer the variable "
         "or the file to the flag, which other users can see in ps."),
    _Key("grace", "120.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning="How long to ride out a manager that is away (connection errors, 5xx) "
         "before giving up the batch, or exiting when asking for work."),
    _Key("kill_grace", "10.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         meaning="Seconds between SIGTERM and SIGKILL when a command must stop."),
    _Key("release_after", "(none)", "SECONDS", parse_seconds, positive_seconds,
         meaning="After a first SIGTERM/SIGINT, hand the batch in hand back if it is still "
         "running this long after: stop the command, report RELEASED (its files go back to "
         "the queue, nothing counted; needs reactor serve), exit 0. Unset: finish the batch. "
         "Under Slurm's --signal=B:TERM@S, set it below S by more than kill_grace."),
    _Key("until_empty", "false", "", parse_bool, boolean=True,
         meaning="Exit 0 when the manager answers an empty batch."),
    _Key("exit_when_idle", "(none)", "SECONDS", parse_seconds, positive_seconds,
         meaning="Exit 0 once the manager has had no work for this engine for this long "
         "(since its last batch, or its start): an engine started for a backlog (a Slurm "
         "job, say) ends itself when the backlog is done, and a live run's next file "
         "within the time still finds it. Unset: ask until stopped."),
    _Key("wait_for_work", "60.0", "SECONDS", parse_seconds, wait_problem,
         meaning="With nothing to do, ask reactor serve to hold the request until work "
         "comes, up to this long (0 to 60; long-poll): a new file reaches the engine at "
         "once and an idle engine costs a request a minute. 0, or a seed manager (which "
         "answers at once): ask again after poll_interval, doubling to max_poll_interval."),
    _Key("once", "false", "", parse_bool, boolean=True,
         meaning="Exit after one batch."),
    _Key("log_level", "info", "LEVEL", parse_choice, one_of(LOG_LEVELS),
         meaning="debug, info, warning or error."),
    _Key("log_format", "auto", "FORMAT", parse_choice, one_of(LOG_FORMATS),
         meaning="json, console, or auto: JSON unless stdout is a terminal."),
)
# fmt: on
_KEY_NAMES = tuple(key.name for key in _KEYS)


def describe_engine_keys() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, meaning) for every setting, in order."""
    return [(key.name, key.env_var, key.default, key.meaning) for key in _KEYS]


def add_engine_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and one flag per key; all default to None, meaning "not given"."""
    add_key_arguments(parser, _KEYS, env_prefix=ENV_PREFIX, config_env=CONFIG_ENV)


def read_engine_config_file(path: Path) -> Mapping[str, object]:
    """Read the TOML file; any problem becomes a one-line ConfigError naming it."""
    # Checked here, not left to the reader: for a path under a file or a symlink loop
    # exists() is False, so the engine says "does not exist" where the reader would say
    # "cannot be read".
    if not path.exists():
        msg = f"config file {path} does not exist: check --config or {CONFIG_ENV}"
        raise ConfigError(msg)
    file = read_config_file(path, CONFIG_ENV)
    reject_unknown_keys(file, _KEY_NAMES)
    return file.values


def parse_engine_config(
    args: argparse.Namespace,
    env: Mapping[str, str],
    file: Mapping[str, object] | None = None,
    file_path: Path | None = None,
) -> EngineConfig:
    """Merge flags > environment > file > defaults into an EngineConfig, without disk."""
    file_dir = file_path.parent if file_path is not None else None
    values = merge_keys(_KEYS, args, env, file or {}, "the config file", file_dir)
    _apply_preset(values)
    return EngineConfig(**values)


def _apply_preset(values: dict[str, Any]) -> None:
    preset = values.get("preset")
    if preset is None:
        if "command" not in values:
            msg = (
                "command is not set: pass --command TEMPLATE or --preset NAME "
                f"({', '.join(PRESETS)}), or set {ENV_PREFIX}COMMAND"
            )
            raise ConfigError(msg)
        return
    if "command" in values:
        msg = f"both command and preset ({preset}) are set: keep one of them"
        raise ConfigError(msg)
    values["command"] = PRESETS[preset].command
    values.setdefault("stdout_to", PRESETS[preset].stdout_to)


def _check_folder(key: str, path: Path) -> None:
    fix = (
        f"give this host's path of the run's {key.replace('_', '').upper()} "
        "(mounted here as the manager sees it)"
    )
    problem = folder_problem(path, key, fix=fix)
    if problem is not None:
        message, fix = problem
        msg = f"{key} {message}: {fix}"
        raise ConfigError(msg)
    if not os.access(path, os.R_OK | os.X_OK):
        msg = f"{key} {path} cannot be read by this user (uid {os.geteuid()}): fix its permissions"
        raise ConfigError(msg)


def _check_program(config: EngineConfig) -> None:
    problem = program_problem(parse_command(config.command))
    if problem is not None:
        msg = f"command: {problem}"
        raise ConfigError(msg)


def load_engine_config(args: argparse.Namespace, env: Mapping[str, str]) -> EngineConfig:
    """Read the config file (`--config` or REACTOR_ENGINE_CONFIG), merge, check folders
    and that the command's program exists."""
    file_path = named_config_file(args, env, CONFIG_ENV)
    file = read_engine_config_file(file_path) if file_path is not None else None
    config = parse_engine_config(args, env, file, file_path)
    _check_folder("input_dir", config.input_dir)
    _check_folder("output_dir", config.output_dir)
    _check_program(config)
    return config
