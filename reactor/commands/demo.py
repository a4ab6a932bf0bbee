"""`reactor demo`: a whole simulated live run here, ending with the exactly-once proof.

With `--flow-cells N`, a whole sequencer host instead: N runs at once under one
`reactor serve --watch-root` (`make demo` runs four), with the proof per run. The demo
is `reactor.sim.demo` (`reactor.sim.host_demo`); it needs the pod5 library (the `sim`
extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run a whole simulated live run here and prove every read was basecalled once"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--files", type=int, default=None,
        help="pod5 files in the run (60); with --flow-cells, in each run (15)",
    )  # fmt: skip
    parser.add_argument(
        "--flow-cells", type=int, default=0,
        help="a host: this many runs at once under one reactor serve --watch-root (0: one run)",
    )  # fmt: skip
    parser.add_argument(
        "--stagger", type=float, default=3.0,
        help="with --flow-cells: seconds between the runs' starts (3.0)",
    )  # fmt: skip
    parser.add_argument("--reads-per-file", type=int, default=40, help="reads per file (40)")
    parser.add_argument("--engines", type=int, default=3, help="engines to start (3)")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between new files (0.5)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the run (default: a new temporary folder, removed at the end)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder afterwards")


def run(args: argparse.Namespace) -> int:
    if args.flow_cells < 0:
        print("reactor demo: --flow-cells must be 0 or more", file=sys.stderr)
        return 2
    if args.flow_cells:
        args.files = 15 if args.files is None else args.files
        from reactor.sim.host_demo import run_host_demo

        return run_host_demo(args)
    args.files = 60 if args.files is None else args.files
    from reactor.sim.demo import run_demo

    return run_demo(args)
