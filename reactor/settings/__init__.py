"""Settings: what serve and the engine are told, parsed and checked before they start.

Owns the shared machinery of keys (flag > environment > TOML file > default, one-line
errors), serve's `ServeConfig` and the engine's `EngineConfig` with their key tables,
the network, end-of-run and command-template settings, and the look-ups a setting needs
before anything runs (is that folder a folder, is that program there).

May import: the standard library, `reactor.core` and `reactor.settings`. No aiohttp,
watchdog, prometheus_client or structlog: the operator tools (`reactor.ops`) read
settings too, and stay light.

Why by hand, not a settings library: pydantic-settings (or dynaconf) would replace the
merge of flags, environment and file, but not the one-line errors that say which key,
from which source, and what to do, nor argparse flags generated from the same table;
adapting one to both costs as much code as `parsing.py` and adds dependencies to every
engine host. Writing TOML (the seed importer) is `reactor.ops.toml_text`, by hand for
the same kind of reason: tomli-w cannot write comments.
"""
