"""The fleet's settings: the `[fleet]` table of serve's config file, or `REACTOR_FLEET_*`.

With a `[fleet]` table (or any `REACTOR_FLEET_*` variable), `reactor serve` keeps engine
jobs on Slurm that follow the work (`reactor.cluster.fleet`). Its keys are few and
have no flags: they describe a cluster, which changes less often than a run. A variable
beats the file, as for serve's own keys; lists (`sbatch_args`, `submit_via`) are TOML
lists in the file and shell words in a variable.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reactor.settings.parsing import (
    ConfigError,
    Invalid,
    Key,
    at_least,
    merge_keys,
    no_problem,
    parse_int,
    parse_seconds,
    parse_text,
    positive_seconds,
    shell_words,
    toml_type,
    zero_or_more_seconds,
)

ENV_PREFIX = "REACTOR_FLEET_"
TABLE = "fleet"
NAME_PREFIX = "reactor-"
# Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds.
_TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SLURM_WORD = re.compile(r"^[A-Za-z0-9._:,=/+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Engine jobs on Slurm, sized by the work (README, "Under Slurm")."""

    manager_url: str  # how engines on the cluster's nodes reach this service
    engine_command: str = "reactor engine"
    min_engines: int = 0
    max_engines: int = 4
    idle_s: float = 300.0
    catch_up_s: float = 600.0
    partition: str | None = None
    account: str | None = None
    gres: str | None = None
    time_limit: str = "12:00:00"
    drain_s: float = 300.0
    sbatch_args: tuple[str, ...] = ()
    env_file: str | None = None  # a path on the cluster's nodes
    log_dir: str | None = None  # a path on the cluster's nodes
    submit_via: tuple[str, ...] = ()
    name: str = ""  # the jobs' name, unique to this service; derived when empty
    check_interval: float = 15.0
    command_timeout: float = 60.0

    @property
    def release_after_s(self) -> float:
        """An engine told to stop `drain_s` before its time limit hands its batch back
        this long after, a minute before the end (Slurm may signal up to a minute early)."""
        return self.drain_s - 60.0 if self.drain_s >= 120.0 else self.drain_s / 2


def default_name(*folders: Path) -> str:
    """A job name unique to this service: its host and the folders it serves, hashed, so
    several sequencers sharing one account each find their own jobs after a restart."""
    seed = "\0".join([socket.gethostname(), *(str(folder) for folder in folders)])
    return NAME_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:12]


def _optional_text(raw: object, from_text: bool) -> str | None:
    text = parse_text(raw, from_text).strip()
    return text or None


def _words(raw: object, from_text: bool) -> tuple[str, ...]:
    if from_text:
        try:
            return tuple(shell_words(str(raw)))
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    msg = f"must be a list of strings, got {toml_type(raw)}"
    raise Invalid(msg)


def _url_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"must be an http:// or https:// URL engines on the cluster can reach, not "
            f"{value!r} (such as http://sequencer.lab:40765)"
        )
    return None


def _time_limit_problem(value: str) -> str | None:
    if _TIME_LIMIT.match(value) is None:
        return f"must be a Slurm time limit such as 12:00:00 or 2-00:00:00, not {value!r}"
    return None


def _command_problem(value: str) -> str | None:
    try:
        words = shell_words(value)
    except ValueError as exc:
        return str(exc)
    return None if words else "is blank: give the command that starts an engine on a node"


def _name_problem(value: str) -> str | None:
    if value and _JOB_NAME.match(value) is None:
        return f"must be 1-64 letters, digits, '.', '_' or '-', not {value!r}"
    return None


def _slurm_word_problem(value: str | None) -> str | None:
    if value is not None and _SLURM_WORD.match(value) is None:
        return f"must be one word of letters, digits and . _ : , = / + -, not {value!r}"
    return None


def _key(name: str, default: str, metavar: str, parse: Any, check: Any, meaning: str) -> Key:
    return Key(name, default, metavar, parse, check, meaning=meaning, env_prefix=ENV_PREFIX)


# fmt: off
_KEYS = (
    _key("manager_url", "(required)", "URL", parse_text, _url_problem,
         "How engines on the cluster's nodes reach this service, such as "
         "http://sequencer.lab:40765 (serve's listen must accept them: allow or token)."),
    _key("engine_command", "reactor engine", "COMMAND", parse_text, _command_problem,
         "The command that starts an engine on a node, such as \"/opt/reactor/bin/reactor "
         "engine --config /shared/reactor/engine.toml\" (any preset). The fleet adds "
         "--manager, --engine-id slurm-<job id>, --exit-when-idle and --release-after."),
    _key("min_engines", "0", "N", parse_int, at_least(0),
         "Engine jobs kept even with nothing to do (0: down to none when idle)."),
    _key("max_engines", "4", "N", parse_int, at_least(1),
         "Engine jobs at most, queued ones included."),
    _key("idle_s", "300.0", "SECONDS", parse_seconds, zero_or_more_seconds,
         "An engine with nothing to do this long exits (--exit-when-idle); a queued job "
         "not wanted this long is cancelled."),
    _key("catch_up_s", "600.0", "SECONDS", parse_seconds, positive_seconds,
         "Enough engines to clear the files waiting within this long, on top of keeping "
         "up with the files arriving, at the speed engines have shown."),
    _key("partition", "(none)", "NAME", _optional_text, _slurm_word_problem,
         "sbatch --partition."),
    _key("account", "(none)", "NAME", _optional_text, _slurm_word_problem,
         "sbatch --account."),
    _key("gres", "(none)", "GRES", _optional_text, _slurm_word_problem,
         "sbatch --gres, such as gpu:1."),
    _key("time_limit", "12:00:00", "TIME", parse_text, _time_limit_problem,
         "sbatch --time: each engine job's time limit."),
    _key("drain_s", "300.0", "SECONDS", parse_seconds, positive_seconds,
         "Slurm signals an engine this long before its time limit (--signal=B:TERM@...): "
         "it takes no more work, finishes its batch or hands it back a minute before the "
         "end, and the fleet submits its replacement."),
    _key("sbatch_args", "(none)", "ARGS", _words, no_problem,
         "More sbatch options, such as [\"--mem=32G\", \"--qos=gpu\"]."),
    _key("env_file", "(none)", "PATH", _optional_text, no_problem,
         "A file on the nodes the job script sources before starting the engine: put "
         "REACTOR_ENGINE_TOKEN=... there (mode 0600), never in the command."),
    _key("log_dir", "(none)", "DIR", _optional_text, no_problem,
         "A folder on the nodes for the jobs' logs (reactor-engine-<job id>.log); Slurm's "
         "default place without it."),
    _key("submit_via", "(none)", "COMMAND", _words, no_problem,
         "Run the Slurm commands through this prefix, such as [\"ssh\", \"login-node\"]: "
         "the command is passed to it as one shell line. Without it they run here."),
    _key("name", "(derived)", "NAME", parse_text, _name_problem,
         "The jobs' name: how a restarted service finds its own jobs. By default reactor- "
         "and a hash of this host's name and the folders served."),
    _key("check_interval", "15.0", "SECONDS", parse_seconds, positive_seconds,
         "Seconds between two looks at the queue (squeue); new work is acted on at once."),
    _key("command_timeout", "60.0", "SECONDS", parse_seconds, positive_seconds,
         "Seconds a Slurm command may take before it is stopped and counted as failed."),
)
# fmt: on
KEY_NAMES = tuple(key.name for key in _KEYS)


def describe_keys() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every fleet setting, in documentation order."""
    return [(key.name, key.default, key.meaning) for key in _KEYS]


def parse_fleet(
    table: object | None, env: Mapping[str, str], label: str, folders: tuple[Path, ...]
) -> FleetConfig | None:
    """The fleet's settings, or None when neither the `[fleet]` table nor any
    `REACTOR_FLEET_*` variable is given. `label` names the file for messages; `folders`
    (what the service serves) seed the default job name."""
    given_env = any(name.startswith(ENV_PREFIX) and value for name, value in env.items())
    if table is None and not given_env:
        return None
    if table is None:
        table = {}
    if not isinstance(table, dict):
        msg = f"{label}: [{TABLE}] must be a table of settings, got {toml_type(table)}"
        raise ConfigError(msg)
    unknown = sorted(set(table) - set(KEY_NAMES))
    if unknown:
        msg = (
            f"{label}: [{TABLE}] has unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid keys are: {', '.join(KEY_NAMES)}"
        )
        raise ConfigError(msg)
    flags = argparse.Namespace()  # no flags: every key reads as not given there
    values = merge_keys(_KEYS, flags, env, table, f"{label} [{TABLE}]", None)
    if "manager_url" not in values:
        msg = (
            f"the fleet needs manager_url, the URL engines on the cluster use to reach this "
            f"service: add manager_url to [{TABLE}] or set {ENV_PREFIX}MANAGER_URL"
        )
        raise ConfigError(msg)
    config = FleetConfig(**values)
    if config.min_engines > config.max_engines:
        msg = (
            f"fleet min_engines ({config.min_engines}) is more than max_engines "
            f"({config.max_engines}): lower min_engines or raise max_engines"
        )
        raise ConfigError(msg)
    if not config.name:
        config = replace(config, name=default_name(*folders))
    return config
