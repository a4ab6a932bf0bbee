"""`reactor simulate-run DIR`: write real `.pod5` files into DIR over time, as MinKNOW does.

With `--flow-cells N`, DIR is a sequencer host's data root and N runs are played under
it at once, staggered, in MinKNOW's layouts (`reactor.sim.host_sim`). The simulator is
`reactor.sim.simulate` (it needs the pod5 library, the `sim` extra, imported only when
the command runs).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from reactor.commands import arguments

HELP = "write real .pod5 files into a folder over time, the way MinKNOW does"
_FLOW_CELL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")


def _flow_cell(text: str) -> str:
    if _FLOW_CELL_RE.fullmatch(text) is None:
        msg = f"{text!r} is not a flow cell id: use letters, digits and '-', e.g. PAK00000"
        raise argparse.ArgumentTypeError(msg)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, metavar="DIR", help="run folder to write into")
    parser.add_argument(
        "--files",
        type=arguments.whole_number(0),
        default=20,
        metavar="N",
        help="files to write (20)",
    )
    parser.add_argument(
        "--reads-per-file",
        type=arguments.whole_number(1),
        default=50,
        metavar="R",
        help="reads in each file (50)",
    )
    parser.add_argument(
        "--interval",
        type=arguments.seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between file starts (1.0)",
    )
    parser.add_argument(
        "--pieces",
        type=arguments.whole_number(1),
        default=4,
        metavar="K",
        help="chunks each file is written in (4)",
    )
    parser.add_argument(
        "--piece-interval",
        type=arguments.seconds,
        default=0.0,
        metavar="SECONDS",
        help="seconds between chunks (0)",
    )
    parser.add_argument(
        "--concurrent",
        type=arguments.whole_number(1),
        default=1,
        metavar="M",
        help="files open at once, at most (1)",
    )
    parser.add_argument(
        "--flow-cell",
        type=_flow_cell,
        default="PAK00000",
        metavar="ID",
        help="flow cell id, first part of every file name (PAK00000)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, metavar="N", help="run ids and read ids follow from it (1)"
    )
    parser.add_argument(
        "--flow-cells",
        type=arguments.whole_number(0),
        default=0,
        metavar="N",
        help="play a host: N runs under DIR as a MinKNOW data root, --files each (0: one "
        "run, its files straight in DIR)",
    )
    parser.add_argument(
        "--stagger",
        type=arguments.seconds,
        default=5.0,
        metavar="SECONDS",
        help="with --flow-cells: seconds between the runs' starts (5.0)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per completed file")


def run(args: argparse.Namespace) -> int:
    if args.flow_cells:
        from reactor.sim.host_sim import write_host

        return write_host(args)
    from reactor.sim.simulate import write_run

    return write_run(args)
