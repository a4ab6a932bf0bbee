"""`reactor requeue`: release quarantined files back to the queue of a running reactor.

Quarantined files sit in `FAILED_<jobid>_<engineid>/` (or `UNKNOWN_…`) folders of the
input folder. Once a person has dealt with the cause (a fixed engine, a repaired file),
`reactor requeue FAILED_…` or `reactor requeue --all` asks the running service to put
them back at the front of the queue with fresh attempts. The service records the
release in `OUTPUTDIR/.reactor/requeued/<jobid>_<engineid>.json` and removes the folder of
links.

The service is found as `reactor status` finds it (`--url`, REACTOR_URL, or the listen
address and token of this host's settings: `--config`, REACTOR_CONFIG, REACTOR_LISTEN),
by the same client, `reactor.ops.service_client`. Exit codes: 0 done (also when nothing
was quarantined), 1 the service could not be reached or refused, 2 a mistake in the
command line or the settings; one line on stderr each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reactor.ops.service_client import ServiceClient, ServiceError, add_service_arguments
from reactor.settings.parsing import ConfigError

HELP = "release quarantined files back to the queue of a running reactor"
_PROG = "reactor requeue"
# Releasing moves links and writes the journal: allow it longer than a status read.
TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="FAILED_… folder names")
    parser.add_argument("--all", action="store_true", help="release every quarantine folder")
    add_service_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if bool(args.folders) == bool(args.all):
        print(f"{_PROG}: name FAILED_… folders, or give --all", file=sys.stderr)
        return 2
    try:
        service = ServiceClient.from_arguments(args, _PROG)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    query = [("all", "true")] if args.all else [("folder", folder_name(f)) for f in args.folders]
    try:
        answer = service.request("/requeue", method="POST", query=query, timeout_s=TIMEOUT_S)
        released = _released(service, answer)
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    for folder, names in released.items():
        print(f"{folder}: {len(names)} file(s) back in the queue")
    if not released:
        print("nothing was quarantined")
    return 0


def folder_name(folder: str) -> str:
    """Accept a path to the folder as well as its name."""
    return Path(folder).name


def _released(service: ServiceClient, answer: object) -> dict[str, list[str]]:
    """The answer's {"released": {folder: [file names]}}; a ServiceError if it is not one."""
    released = answer.get("released") if isinstance(answer, dict) else None
    if not isinstance(released, dict) or not all(
        isinstance(names, list) for names in released.values()
    ):
        raise service.not_a_reactor()
    return {str(folder): [str(name) for name in names] for folder, names in released.items()}
