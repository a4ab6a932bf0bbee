"""`reactor run`: manage the runs of a service in host mode (`watch_root`).

    reactor run add RUN              serve a run the adoption rule left (an older one)
    reactor run prioritise RUN [--weight W]
                                     the run takes W files (default 10) for each of a
                                     normal run's, while both have work
    reactor run params RUN --set model=sup [--set kit_name=…] [--rebasecall]
                                     the run's basecall parameters, by hand: before its
                                     first batch they join the rules' choice; once pinned,
                                     only with --rebasecall (files still to do get them)
    reactor run close RUN [--reason TEXT]
                                     end the run now with what is done (a stalled run):
                                     its on_complete runs with REACTOR_RUN_END "closed: …"

RUN is a run's name as `reactor status` lists it (flow cell and protocol run, such as
`PAW12345_fd97ea7b`) or its folder. The service is found as `reactor status` finds it
(`reactor.ops.service_client`). Exit codes: 0 done, 1 the service could not be reached
or refused (an unknown run, a service serving one run), 2 a mistake in the command line
or the settings; one line on stderr each.
"""

from __future__ import annotations

import argparse
import sys

from reactor.ops.service_client import ServiceClient, ServiceError, add_service_arguments
from reactor.settings.parsing import ConfigError

HELP = "manage a host's runs: add an older one, prioritise, set parameters, close"
_PROG = "reactor run"
TIMEOUT_S = 60.0  # adding a run recovers and scans it before the answer
DEFAULT_WEIGHT = 10.0
OUTCOMES = {
    "started": "is served now",
    "known": "was served already",
    "finished": "is complete (its run-complete marker is there): nothing to serve",
    "failed": "could not be started: reactor status says why",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=("add", "prioritise", "params", "close"), help="what to do"
    )
    parser.add_argument("run", metavar="RUN", help="the run's name (PAW12345_fd97ea7b) or folder")
    parser.add_argument(
        "--weight", type=float, default=DEFAULT_WEIGHT,
        help=f"prioritise: files it takes for each of a normal run's (default {DEFAULT_WEIGHT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--reason", default="closed by hand", help="close: why, for the log and on_complete"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="params: a parameter (model, kit_name, sources), more than once if need be",
    )  # fmt: skip
    parser.add_argument(
        "--rebasecall", action="store_true",
        help="params: change pinned parameters (files still to do get them)",
    )  # fmt: skip
    add_service_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        service = ServiceClient.from_arguments(args, _PROG)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    if args.action == "add":
        path, query = "/runs/add", [("run", args.run)]
    elif args.action == "close":
        path, query = "/runs/close", [("run", args.run), ("reason", args.reason)]
    elif args.action == "params":
        if not args.set:
            print(f"{_PROG}: params needs --set KEY=VALUE (model=sup, say)", file=sys.stderr)
            return 2
        query = [("run", args.run), *(("set", item) for item in args.set)]
        if args.rebasecall:
            query.append(("rebasecall", "true"))
        path = "/runs/params"
    else:
        path, query = "/runs/prioritise", [("run", args.run), ("weight", f"{args.weight:g}")]
    try:
        answer = service.request(path, method="POST", query=query, timeout_s=TIMEOUT_S)
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not isinstance(answer, dict) or "run" not in answer:
        print(service.not_a_reactor(), file=sys.stderr)
        return 1
    if args.action == "add":
        outcome = str(answer.get("outcome"))
        print(f"{answer['run']} {OUTCOMES.get(outcome, outcome)}")
        return 0 if outcome != "failed" else 1
    if args.action == "params":
        shown = ", ".join(f"{k}={v}" for k, v in answer.get("params", {}).items())
        print(f"{answer['run']} basecalls with {shown or 'no parameters'}")
        return 0
    if args.action == "close":
        done = "closed: its on_complete runs now" if answer.get("closed") else "had ended already"
        print(f"{answer['run']} {done}")
        return 0
    print(f"{answer['run']} takes {answer['weight']:g} files for each of a normal run's")
    return 0
