"""`reactor status`: a running reactor's progress, rate, ETA, engines and quarantine.

The service is `--url`, else REACTOR_URL, else the `listen` address of this host's
settings (`--config`, REACTOR_CONFIG, REACTOR_LISTEN), reached on loopback. With a URL
(`--url` or REACTOR_URL) the settings file is not read at all: the token is `--token`
or REACTOR_TOKEN only, so a token from this host's settings is never sent to another
host, and a broken settings file does not stand in the way. Those rules and the
request are `reactor.ops.service_client`, shared with `reactor requeue`; the view is
`reactor.ops.status`.
"""

from __future__ import annotations

import argparse
import sys

from reactor.ops.service_client import ServiceClient, add_service_arguments
from reactor.ops.status import DEFAULT_WATCH_S, show_once, watch
from reactor.settings.parsing import ConfigError

HELP = "show a running reactor's progress, rate, ETA, engines and quarantined files"
_PROG = "reactor status"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    parser.add_argument(
        "--watch", metavar="SECONDS", nargs="?", type=float, const=DEFAULT_WATCH_S,
        default=None, help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the /status JSON as it is")


def run(args: argparse.Namespace) -> int:
    try:
        service = ServiceClient.from_arguments(args, _PROG)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    if args.watch is not None and not args.watch > 0:
        print(f"{_PROG}: --watch takes seconds above 0, not {args.watch:g}", file=sys.stderr)
        return 2
    try:
        if args.watch is None:
            return show_once(service, as_json=args.json)
        return watch(service, args.watch, as_json=args.json)
    except KeyboardInterrupt:
        return 0 if args.watch is not None else 130
