"""Settings: what serve and the engine are told, parsed and checked before they start.

Owns the shared machinery of keys (flag > environment > TOML file > default, one-line
errors), serve's `ServeConfig` and the engine's `EngineConfig` with their key tables,
the network, end-of-run and command-template settings, and the look-ups a setting needs
before anything runs (is that folder a folder, is that program there).

May import: the standard library, `reactor.core` and `reactor.settings`. No aiohttp,
watchdog, prometheus_client or structlog: the operator tools (`reactor.ops`) read
settings too, and stay light.

Why by hand, not a settings library: pydantic-settings covers the merge itself (TOML
file, environment with empty values ignored, command-line source, a chosen order), but
not what the rest of this room is for: one line per mistake naming the key, the source
it came from and what to do (pydantic reports every error in its own words, to be
translated type by type), relative paths in a file taken from the file's folder, flags on
the subcommands of our own parser, and the README's settings table made from the
same table. Adapting it would replace `merge_keys` and `find_raw` (~60 lines) with as
much adapter code, and would add pydantic and its compiled core to every sequencer and
GPU host. Writing TOML (the seed importer) is `reactor.ops.toml_text`, by hand because
tomli-w cannot write comments, and there the comments are the point.
"""
