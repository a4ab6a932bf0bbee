"""`reactor status`: a running reactor's progress, rate, ETA, engines and quarantine.

The service is `--url`, else REACTOR_URL, else the `listen` address of this host's
settings (`--config`, REACTOR_CONFIG, REACTOR_LISTEN), reached on loopback. With a URL
(`--url` or REACTOR_URL) the settings file is not read at all: the token is `--token`
or REACTOR_TOKEN only, so a token from this host's settings is never sent to another
host, and a broken settings file does not stand in the way. The view is
`reactor.ops.status`.
"""

from __future__ import annotations

import argparse
import os
import sys

from reactor.ops.status import DEFAULT_WATCH_S, show_once, watch
from reactor.settings.parsing import ConfigError
from reactor.settings.serve import client_token, local_service

HELP = "show a running reactor's progress, rate, ETA, engines and quarantined files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None,
        help="the running service, such as http://seqhost:40765 (REACTOR_URL; default: "
        "the listen address of this host's settings, on loopback)",
    )  # fmt: skip
    parser.add_argument(
        "--token", default=None,
        help="the service's token (prefer REACTOR_TOKEN: ps shows flags to other users)",
    )  # fmt: skip
    parser.add_argument(
        "--config", metavar="FILE", default=None,
        help="serve's TOML settings file, for its listen address and token (REACTOR_CONFIG); "
        "not read when --url or REACTOR_URL is given",
    )  # fmt: skip
    parser.add_argument(
        "--watch", metavar="SECONDS", nargs="?", type=float, const=DEFAULT_WATCH_S,
        default=None, help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the /status JSON as it is")


def run(args: argparse.Namespace) -> int:
    try:
        url, token = _service(args)
    except ConfigError as exc:
        print(f"reactor status: {exc}", file=sys.stderr)
        return 2
    if args.watch is not None and not args.watch > 0:
        print(f"reactor status: --watch takes seconds above 0, not {args.watch:g}", file=sys.stderr)
        return 2
    try:
        if args.watch is None:
            return show_once(url, token, as_json=args.json)
        return watch(url, token, args.watch, as_json=args.json)
    except KeyboardInterrupt:
        return 0 if args.watch is not None else 130


def _service(args: argparse.Namespace) -> tuple[str, str | None]:
    given_url = args.url or os.environ.get("REACTOR_URL")
    if given_url:
        url, token = str(given_url).rstrip("/"), client_token(args, os.environ)
    else:
        url, token = local_service(args, os.environ)
    if not url.startswith(("http://", "https://")):
        msg = f"--url must start with http:// or https://, as in http://seqhost:40765 (got {url!r})"
        raise ConfigError(msg)
    return url, token
