"""pod5-reactor: live, crash-safe basecalling work manager.

The package is a house of rooms, each a subpackage whose docstring says what it owns
and what it may import (docs/architecture.md draws them; a test keeps the rules true):

    core/      pure: records, the state machine, retry policy, names, events, end of run
    disk/      the journal, recovery, the run-complete marker, signatures, the stop file
    settings/  serve's and the engine's settings, parsed and checked (no I/O libraries)
    runtime/   what serve and the engine share: logging, commands run in a session
    serve/     the service: aiohttp app, API, watcher, sweeper, finisher, metrics, systemd
    engine/    the reference engine: client, batch loop, command
    ops/       operator tools: status view, host checks, seed import
    sim/       trials: pod5 files, a simulated MinKNOW run, a stand-in basecaller, demo
    commands/  one module per `reactor` verb, imported lazily by `cli`
"""

__version__ = "0.1.0"
