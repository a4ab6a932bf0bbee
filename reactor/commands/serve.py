"""`reactor serve`: the service, for one run folder, until SIGTERM.

Settings come from flags, then REACTOR_* variables, then the `--config` TOML file, then
defaults (`reactor.settings.serve`); a mistake is one line on stderr and exit code 2.
The service itself is `reactor.serve`, imported only when it runs.

Under socket activation (systemd/reactor.socket) serve takes the listening sockets
systemd passes (`reactor.serve.socket_activation`) instead of binding `listen`; the
access rule then applies to the sockets' real addresses.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
from typing import TYPE_CHECKING

from reactor.settings.network import same_listen
from reactor.settings.parsing import ConfigError
from reactor.settings.serve import (
    ServeConfig,
    add_config_arguments,
    load_config,
    prepare_output_dirs,
    serving_passed_sockets,
)

if TYPE_CHECKING:
    import subprocess

    from reactor.serve.socket_activation import PassedSocket
    from reactor.serve.start_scan import ChildLister

HELP = "watch a run folder (or every run under a root) and hand its .pod5 files to engines"
DESCRIPTION = (
    "Serve the seed's engine protocol (/assignwork, /keepalive, /completed) for one run "
    "folder. Settings come from flags, then REACTOR_* environment variables, then the "
    "--config TOML file, then defaults."
)
SHUTDOWN_TIMEOUT_S = 10.0  # requests in flight get this long to finish at SIGTERM
AIOHTTP_BACKLOG = 128  # web.run_app's default, for the socket serve binds itself


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # The imports of `_serve` make ~10^5 objects that live as long as the service: the
    # cyclic GC walking them again and again while they are made is ~35 ms of every
    # start. Paused until they are made, then set aside for good (`gc.freeze`).
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _serve(args: argparse.Namespace) -> int:
    # Read (and unset) systemd's LISTEN_* first, whatever else fails: stdlib only.
    from reactor.serve.socket_activation import SocketActivationError, take_passed_sockets

    try:
        passed = take_passed_sockets()
    except SocketActivationError as exc:
        print(f"reactor serve: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config(args, os.environ)
        setting = config.listen
        if passed:
            config = serving_passed_sockets(config, [item.listen for item in passed])
        prepare_output_dirs(config)
    except ConfigError as exc:
        print(f"reactor serve: {exc}", file=sys.stderr)
        return 2
    early = _early_lister(config)
    from reactor.serve.start_scan import ChildLister

    lister = ChildLister(*early) if early is not None else None
    try:
        return _serve_config(config, setting, passed, lister)
    finally:
        if lister is not None:  # ended by the service already, unless it never began
            lister.stop()


def _early_lister(config: ServeConfig) -> tuple[subprocess.Popen[bytes], int | None] | None:
    """The start-up scan's child (`reactor.disk.input_lister`), started before the
    imports below (~0.3 s), so that its looks overlap them: for a single run whose
    INPUTDIR is large, on the native (inotify) watch, which the child's own watch stands
    in for until the service's is up. None otherwise, or if it cannot be started: the
    service then starts one itself, once its watch is up."""
    native = config.observer == "native" and sys.platform.startswith("linux")
    if config.host_mode or not native:
        return None
    from reactor.disk import input_lister

    if not input_lister.worth_a_child(config.input_dir):
        return None
    try:
        return input_lister.spawn(config.input_dir, config.output_dir, until_watched=True)
    except OSError:
        return None


def _serve_config(
    config: ServeConfig,
    setting: str,
    passed: list[PassedSocket],
    lister: ChildLister | None,
) -> int:
    from aiohttp import web

    from reactor.runtime.logs import configure_logging
    from reactor.serve.app import create_app, create_host_app
    from reactor.serve.app_keys import SERVED, SYSTEMD
    from reactor.serve.read_worker import close_shared, shared_read_worker
    from reactor.serve.service import StartupError

    configure_logging(config.log_level, config.log_format)
    listening: dict[str, object] = {"socket": "bound"}
    backlog = AIOHTTP_BACKLOG
    if passed:
        # asyncio listens again on a socket it is given: with the backlog it had, so
        # that systemd's Backlog= holds while no serve runs too.
        backlogs = [item.backlog for item in passed if item.backlog is not None]
        backlog = max(backlogs, default=socket.SOMAXCONN)
        listening = {
            "socket": "systemd",
            "sockets": [item.listen for item in passed],
            "fd_names": [item.name for item in passed],
            "backlog": backlog,
        }
        if not any(same_listen(setting, item.listen) for item in passed):
            listening["listen_setting"] = setting
    if config.host_mode:
        app = create_host_app(config, ready_when_listening=True, listening=listening)
    else:
        app = create_app(config, ready_when_listening=True, listening=listening, lister=lister)
    systemd = app[SYSTEMD]

    def ready(_banner: str) -> None:
        # run_app calls `print` once every site listens (a passed socket listens
        # already: once its site accepts): the moment to say READY=1.
        systemd.announce_ready()
        if config.read_qc or config.minknow_layout:
            # After the start-up scan: a spawned worker takes ~1 s of CPU to start, which
            # the scan (CPU-bound, on the loop) would lose. A job to read before then
            # starts them itself.
            app[SERVED].when_scanned(shared_read_worker(config.read_workers).warm)

    gc.freeze()
    gc.enable()  # the service's own pauses (its start-up, its scan) are its own
    try:
        web.run_app(
            app,
            host=None if passed else config.host,
            port=None if passed else config.port,
            sock=[item.sock for item in passed] or None,
            backlog=backlog,
            print=ready,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
    except StartupError as exc:
        print(f"reactor serve: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"reactor serve: cannot listen on {config.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        close_shared(wait=False)  # splits under way end with the service, not after it
    if (failed := app[SERVED].writer_broken) is not None:
        print(f"reactor serve: stopped: {failed}", file=sys.stderr)
        return 1
    return 0
