"""`reactor demo`: a whole simulated live run here, ending with the exactly-once proof.

The demo is `reactor.sim.demo`; it needs the pod5 library (the `sim` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run a whole simulated live run here and prove every read was basecalled once"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=60, help="pod5 files in the run (60)")
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
    from reactor.sim.demo import run_demo

    return run_demo(args)
