"""The machinery shared by serve's and engine's settings, so both read and word them alike.

This module owns `ConfigError`, the TOML file reader (`read_config_file`, `ConfigFile`,
`reject_unknown_keys`), the value parsers (``parse_*``: raw value -> typed value, raising
`Invalid`), the checks (typed value -> problem or None), `parse_value` which runs one of
each and words the error, and the choices both share
(`LOG_LEVELS`, `LOG_FORMATS`, `DEFAULT_PORT`). Problems are worded to follow the key's
name: ``batch_size`` + ``must be at least 1, got 0``.

It also owns what a key is and how one is looked up: `Key` (name, documented default,
parser, check, flag and environment variable), `add_key_arguments` (``--config`` and one
flag per key), `find_raw` (flag > environment > file) and `merge_keys` (every key of a
table found, parsed and checked, the required ones insisted on).

The key tables themselves, and the rules across keys, belong to `reactor.settings.serve` (serve)
and `reactor.settings.engine` (engine).
"""

from __future__ import annotations

import argparse
import difflib
import math
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LogFormat = Literal["auto", "json", "console"]

# Serve listens here by default, and an engine looks for its manager here by default.
DEFAULT_PORT = 40765
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


class ConfigError(Exception):
    """A setting a person must fix. The message is one line: what is wrong, what to do."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A parsed TOML config file, kept with its path for error messages."""

    path: Path
    values: Mapping[str, object]


class Invalid(Exception):
    """What is wrong with one value, worded to follow the key's name."""


# (raw value, came from a flag or variable) -> typed value; raises Invalid.
Parse = Callable[[object, bool], object]
# typed value -> problem (worded to follow the key's name) or None.
Check = Callable[[Any], str | None]


def no_problem(_value: object) -> str | None:
    return None


def toml_type(value: object) -> str:
    """The kind of a TOML value, as a person would name it ("an integer")."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(type(value), "a list" if isinstance(value, list) else "a table")


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdecimal()


def shell_words(text: str) -> list[str]:
    """`text` split like a shell line (and run without one); a ValueError that says so
    for an unclosed quote."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        msg = f"{text!r} cannot be split into arguments ({exc}); check its quotes"
        raise ValueError(msg) from None


def parse_text(raw: object, from_text: bool) -> str:
    if not isinstance(raw, str):
        msg = f"must be a string, got {toml_type(raw)}"
        raise Invalid(msg)
    return raw.strip() if from_text else raw


def parse_path(raw: object, from_text: bool) -> Path:
    text = parse_text(raw, from_text)
    if not text or "\x00" in text:
        msg = "must be the path of a folder, got an empty or malformed value"
        raise Invalid(msg)
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~" with no home directory to expand it to
        msg = f"starts with ~ but this user has no home directory; give a full path, not {text!r}"
        raise Invalid(msg) from None


def parse_paths(raw: object, from_text: bool) -> tuple[Path, ...]:
    """One or more folders: a list of strings in the file (or one string), comma-
    separated in a flag or variable."""
    if from_text and isinstance(raw, str):
        items: list[object] = [part for part in raw.split(",") if part.strip()]
    elif isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        msg = f'must be a list of folders such as ["/data"], got {toml_type(raw)}'
        raise Invalid(msg)
    if not items:
        msg = "must name at least one folder"
        raise Invalid(msg)
    return tuple(parse_path(item, from_text) for item in items)


def parse_int(raw: object, from_text: bool) -> int:
    if from_text and isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            msg = f"must be a whole number, got {raw!r}"
            raise Invalid(msg) from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        msg = f"must be a whole number, got {toml_type(raw)}"
        raise Invalid(msg)
    return raw


def parse_number(raw: object, from_text: bool, what: str, example: str) -> float:
    """A finite number: from text (a flag, a variable) or a TOML number; `what` names it
    in the message ("a number of seconds"), `example` shows one ("2.5")."""
    if from_text and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            msg = f"must be {what} such as {example}, got {raw!r}"
            raise Invalid(msg) from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        msg = f"must be {what}, got {toml_type(raw)}"
        raise Invalid(msg)
    else:
        value = float(raw)
    if not math.isfinite(value):
        msg = f"must be a finite {what.removeprefix('a ')}, got {value}"
        raise Invalid(msg)
    return value


def parse_seconds(raw: object, from_text: bool) -> float:
    return parse_number(raw, from_text, "a number of seconds", "2.5")


def parse_choice(raw: object, from_text: bool) -> str:
    return parse_text(raw, from_text).lower()


def parse_token(raw: object, from_text: bool) -> str:
    # Never echo the value: it is a secret.
    if not isinstance(raw, str):
        msg = f"must be a string, got {toml_type(raw)}"
        raise Invalid(msg)
    return raw


def at_least(minimum: int) -> Check:
    def check(value: int) -> str | None:
        return None if value >= minimum else f"must be at least {minimum}, got {value}"

    return check


def positive_seconds(value: float) -> str | None:
    return None if value > 0 else f"must be more than 0 seconds, got {value:g}"


def zero_or_more_seconds(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more seconds, got {value:g}"


def one_of(options: tuple[str, ...]) -> Check:
    def check(value: str) -> str | None:
        if value in options:
            return None
        return f"must be one of {', '.join(options)}; got {value!r}"

    return check


def token_problem(value: str | None) -> str | None:
    if value is None:
        return None
    if not value:
        return "is empty: set a long random string (openssl rand -hex 32) or leave it unset"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "must not contain spaces or control characters: it is sent in an HTTP header"
    return None


def parse_value(
    name: str, parse: Parse, check: Check, raw: object, source: str, from_text: bool
) -> object:
    """`raw` parsed and checked; a problem becomes a ConfigError naming the key and `source`."""
    try:
        value = parse(raw, from_text)
        problem = check(value)
    except Invalid as err:
        problem = str(err)
    if problem is not None:
        msg = f"{name} {problem} (from {source})"
        raise ConfigError(msg)
    return value


def read_config_file(path: Path, config_env: str = "REACTOR_CONFIG") -> ConfigFile:
    """Read a TOML config file; any problem becomes a ConfigError naming the file.

    `config_env` is the variable that can name the file, for the message when it is
    missing; serve's by default.
    """
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        msg = f"config file {path} does not exist: check --config or {config_env}"
        raise ConfigError(msg) from None
    except OSError as err:
        msg = (
            f"config file {path} cannot be read ({err.strerror}): check --config or its permissions"
        )
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as err:
        msg = f"config file {path} is not valid TOML: {err}; fix that line"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:
        msg = f"config file {path} is not UTF-8 text: save it as UTF-8"
        raise ConfigError(msg) from None
    return ConfigFile(path, values)


def named_config_file(
    args: argparse.Namespace, env: Mapping[str, str], config_env: str
) -> Path | None:
    """The settings file named by ``--config``, else by the variable `config_env`."""
    name = getattr(args, "config", None) or env.get(config_env)
    return Path(name) if name else None


def reject_unknown_keys(file: ConfigFile, known: Sequence[str]) -> None:
    """Raise a ConfigError naming every key of `file` not in `known`, with a likely fix."""
    unknown = sorted(set(file.values) - set(known))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    msg = (
        f"config file {file.path} has unknown key{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(hints)}; valid keys are: {', '.join(known)}"
    )
    raise ConfigError(msg)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(raw: object, from_text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if from_text and isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    shown = repr(raw) if from_text else toml_type(raw)
    msg = f"must be true or false ({'/'.join(_TRUE)} or {'/'.join(_FALSE)}), got {shown}"
    raise Invalid(msg)


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: how it is documented, parsed and checked, and where it can be given.

    Its flag is ``--<name with - for _>``, its environment variable `env_prefix` + NAME.
    """

    name: str
    default: str  # as the docs show it
    metavar: str
    parse: Parse
    check: Check = no_problem
    meaning: str = ""
    required: bool = False
    boolean: bool = False  # a flag without a value (store_true)
    env_prefix: str = field(kw_only=True)  # "REACTOR_" for serve, "REACTOR_ENGINE_" for engine
    # Attribute on the parsed arguments; `name` unless given.
    dest: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if not self.dest:
            object.__setattr__(self, "dest", self.name)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env_prefix + self.name.upper()


def check_fields(config: object, keys: Sequence[Key]) -> None:
    """Check every key's value on a built config (a field of the key's name); None means
    unset and is not checked. The first problem is a ConfigError naming the key."""
    for key in keys:
        value = getattr(config, key.name)
        problem = None if value is None else key.check(value)
        if problem is not None:
            msg = f"{key.name} {problem}"
            raise ConfigError(msg)


def add_key_arguments(
    parser: argparse.ArgumentParser, keys: Sequence[Key], *, env_prefix: str, config_env: str
) -> None:
    """Add a "settings" group: `--config` (or `config_env`), then one flag per key.

    Every flag defaults to None, meaning "not given"; a boolean key's flag takes no value.
    `env_prefix` is the one the keys' variables share, for the group's description.
    """
    group = parser.add_argument_group(
        "settings", f"Each flag overrides {env_prefix}<KEY> and the config file."
    )
    group.add_argument(
        "--config", metavar="FILE", default=None, help=f"TOML settings file (or {config_env})"
    )
    for key in keys:
        help_text = f"{key.meaning} [{key.env_var}; default {key.default}]".replace("%", "%%")
        if key.boolean:
            group.add_argument(
                key.flag, dest=key.dest, action="store_true", default=None, help=help_text
            )
        else:
            group.add_argument(
                key.flag, dest=key.dest, metavar=key.metavar, default=None, help=help_text
            )


def find_raw(
    key: Key,
    args: argparse.Namespace,
    env: Mapping[str, str],
    file_values: Mapping[str, object],
    file_label: str,
) -> tuple[object, str, bool] | None:
    """The winning raw value of `key` as (value, where it came from, is text), or None.

    A flag beats the environment, which beats the file; an empty variable counts as
    unset. A value from the file is said to come from `file_label`.
    """
    flag_value = getattr(args, key.dest, None)
    if flag_value is not None:
        return flag_value, key.flag, True
    env_value = env.get(key.env_var)
    if env_value:
        return env_value, key.env_var, True
    if key.name in file_values:
        return file_values[key.name], file_label, False
    return None


def merge_keys(
    keys: Sequence[Key],
    args: argparse.Namespace,
    env: Mapping[str, str],
    file_values: Mapping[str, object],
    file_label: str,
    file_dir: Path | None,
) -> dict[str, Any]:
    """Every key that is given, parsed and checked, by name; keys not given are left out.

    A required key that is not given is a ConfigError. A relative path from the file is
    made relative to `file_dir`, the file's folder, when it is known.
    """
    values: dict[str, Any] = {}
    for key in keys:
        found = find_raw(key, args, env, file_values, file_label)
        if found is None:
            if key.required:
                msg = (
                    f"{key.name} is not set: pass {key.flag}, set {key.env_var} "
                    f"or add {key.name} to the config file"
                )
                raise ConfigError(msg)
            continue
        raw, source, from_text = found
        value = parse_value(key.name, key.parse, key.check, raw, source, from_text)
        if file_dir is not None and not from_text and isinstance(value, Path):
            value = file_dir / value  # a no-op for absolute paths
        elif file_dir is not None and not from_text and isinstance(value, tuple):
            value = tuple(file_dir / v if isinstance(v, Path) else v for v in value)
        values[key.name] = value
    return values
