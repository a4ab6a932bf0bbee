"""`reactor requeue`: release quarantined files back to the queue of a running reactor.

Quarantined files sit in `FAILED_<jobid>_<engineid>/` (or `UNKNOWN_…`) folders of the
input folder. Once a person has dealt with the cause (a fixed engine, a repaired file),
`reactor requeue FAILED_…` or `reactor requeue --all` asks the running service to put
them back at the front of the queue with fresh attempts. The service records the
release in `OUTPUTDIR/REQUEUED_<jobid>_<engineid>/` and removes the folder of links.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HELP = "release quarantined files back to the queue of a running reactor"
DEFAULT_URL = "http://127.0.0.1:40765"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="FAILED_… folder names")
    parser.add_argument("--all", action="store_true", help="release every quarantine folder")
    parser.add_argument(
        "--url", default=os.environ.get("REACTOR_URL", DEFAULT_URL),
        help=f"the running service (REACTOR_URL; default {DEFAULT_URL})",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if bool(args.folders) == bool(args.all):
        print("reactor requeue: name FAILED_… folders, or give --all", file=sys.stderr)
        return 2
    query = [("all", "true")] if args.all else [("folder", folder_name(f)) for f in args.folders]
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own service
        f"{args.url.rstrip('/')}/requeue?{urllib.parse.urlencode(query)}", method="POST"
    )
    token = os.environ.get("REACTOR_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            released: dict[str, list[str]] = json.load(reply)["released"]
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        print(f"reactor requeue: {args.url} answered {exc.code}: {detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"reactor requeue: cannot reach {args.url} ({exc}); is reactor serve running?",
              file=sys.stderr)  # fmt: skip
        return 1
    for folder, names in released.items():
        print(f"{folder}: {len(names)} file(s) back in the queue")
    if not released:
        print("nothing was quarantined")
    return 0


def folder_name(folder: str) -> str:
    """Accept a path to the folder as well as its name."""
    return Path(folder).name


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["detail"])
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason if isinstance(exc.reason, str) else "error"
