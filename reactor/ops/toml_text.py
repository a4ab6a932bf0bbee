"""Writing TOML by hand: values and comments for the settings files reactor generates.

Why not `tomli-w`: it cannot write comments, and in a generated config the comments are
the valuable part (where each value came from, what has no equivalent, how to use the
file). What we write is small and flat: strings, whole numbers, booleans and lists of
strings, at the top level. So a few lines here beat a dependency; tests round-trip every
value through `tomllib`, the reader reactor itself uses.

Strings are TOML basic strings. Their escapes are a subset of JSON's, so `json.dumps`
(with `ensure_ascii=False`, which would otherwise write non-BMP characters as surrogate
pairs, invalid in TOML) does the work; TOML also forbids a raw DEL (U+007F), which JSON
allows, so that one is escaped here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

TomlValue = str | int | bool | Sequence[str]


class NotTomlText(ValueError):
    """A string that TOML cannot hold: it is not valid Unicode (a lone surrogate)."""


def toml_string(text: str) -> str:
    """`text` as a TOML basic string, quotes included."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"{text!r} is not valid Unicode text"
        raise NotTomlText(msg) from None
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: TomlValue) -> str:
    """A value as TOML: a string, a whole number, a boolean or a list of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    return "[" + ", ".join(toml_string(item) for item in value) + "]"


def toml_key(name: str) -> str:
    """A key: bare when it is made of letters, digits, '-' and '_', else quoted."""
    bare = name and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in name)
    return name if bare else toml_string(name)


def toml_line(name: str, value: TomlValue) -> str:
    return f"{toml_key(name)} = {toml_value(value)}"


def toml_comment(text: str) -> list[str]:
    """`text` as comment lines; control characters (not allowed in comments) become '?'."""
    lines = []
    for line in text.splitlines() or [""]:
        clean = "".join("?" if _is_control(ch) else ch for ch in line)
        lines.append(f"# {clean}".rstrip())
    return lines


def _is_control(ch: str) -> bool:
    return (ch < " " and ch != "\t") or ch == "\x7f" or 0xD800 <= ord(ch) <= 0xDFFF


def toml_document(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"
