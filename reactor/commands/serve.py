"""`reactor serve`: the service, for one run folder, until SIGTERM.

Settings come from flags, then REACTOR_* variables, then the `--config` TOML file, then
defaults (`reactor.settings.serve`); a mistake is one line on stderr and exit code 2.
The service itself is `reactor.serve`, imported only when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from reactor.settings.parsing import ConfigError
from reactor.settings.serve import add_config_arguments, load_config, prepare_output_dirs

HELP = "watch a run folder and hand its .pod5 files to basecalling engines"
DESCRIPTION = (
    "Serve the seed's engine protocol (/assignwork, /keepalive, /completed) for one run "
    "folder. Settings come from flags, then REACTOR_* environment variables, then the "
    "--config TOML file, then defaults."
)
SHUTDOWN_TIMEOUT_S = 10.0  # requests in flight get this long to finish at SIGTERM


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args, os.environ)
        prepare_output_dirs(config)
    except ConfigError as exc:
        print(f"reactor serve: {exc}", file=sys.stderr)
        return 2
    from aiohttp import web

    from reactor.runtime.logs import configure_logging
    from reactor.serve.app import create_app
    from reactor.serve.app_keys import SYSTEMD

    configure_logging(config.log_level, config.log_format)
    app = create_app(config, ready_when_listening=True)
    systemd = app[SYSTEMD]

    def listening(_banner: str) -> None:
        # run_app calls `print` once every site listens: the moment to say READY=1.
        systemd.announce_ready()

    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            print=listening,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
    except OSError as exc:
        print(f"reactor serve: cannot listen on {config.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
