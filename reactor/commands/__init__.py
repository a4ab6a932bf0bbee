"""The verbs of the `reactor` command: one module each, imported only when needed.

Each module has `HELP`, `add_arguments(parser)` and `run(args) -> int`, and turns a
person's mistake into one line on stderr and an exit code. At import time a verb's
module loads only what building its parser needs (`reactor.settings`, `reactor.ops`);
the room that does the work (`reactor.serve`, `reactor.engine`, `reactor.sim`) is
imported inside `run`, so `reactor status` never loads aiohttp or watchdog.

May import: any room of `reactor`.
"""
