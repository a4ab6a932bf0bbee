"""`reactor fake-basecaller IN OUT`: the stand-in for dorado, for trials without a GPU.

The basecaller is `reactor.sim.fake_basecaller` (what it writes, its exit codes); it
needs the pod5 library (the `sim` extra), imported only when the command runs. The
engine's `fake` preset runs this verb.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reactor.commands import arguments

HELP = "stand-in for dorado: one FASTQ record per read of every .pod5 in a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="folder of .pod5 files")
    parser.add_argument("output", type=Path, metavar="OUT", help="folder for pass/ and fail/")
    parser.add_argument(
        "--delay-per-read",
        type=arguments.seconds,
        default=0.0,
        metavar="SECONDS",
        help="sleep this long per read, to look like a GPU (0)",
    )
    parser.add_argument(
        "--fail-rate",
        type=arguments.probability,
        default=0.0,
        metavar="P",
        help="probability that the whole run fails (exit 1) before writing anything (0)",
    )
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="NAME",
        help="exit 1 if this .pod5 name is in IN (a poison file); repeatable",
    )
    parser.add_argument(
        "--crash-after-reads",
        type=arguments.whole_number(0),
        default=None,
        metavar="N",
        help="write N reads, then die at once with exit code 137, leaving partial outputs",
    )
    parser.add_argument("--seed", type=int, default=None, help="makes --fail-rate repeatable")


def run(args: argparse.Namespace) -> int:
    from reactor.sim.fake_basecaller import basecall

    return basecall(args)
