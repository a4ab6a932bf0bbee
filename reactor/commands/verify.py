"""`reactor verify OUTPUT_DIR`: check a run's reads exactly once, from the disk alone.

OUTPUT_DIR is the run's output folder (the one with `.reactor/`): `output_dir` of a
single run, `RUN/reactor/` in host mode. The `.pod5` files its records say are done are
looked for under `--input-dir` (by default, in host mode, the run folder above it) and
their reads compared with every record of the outputs (`reactor.ops.verify`). Exit
codes: 0 every read once, 1 not (or a done file not found), 2 the run cannot be
checked; `--json` prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "check a run's reads exactly once, from its .pod5 files and its outputs"
_PROG = "reactor verify"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "output_dir", type=Path, metavar="OUTPUT_DIR",
        help="the run's output folder (output_dir; RUN/reactor/ in host mode)",
    )  # fmt: skip
    parser.add_argument(
        "--input-dir", type=Path, action="append", default=None, metavar="DIR",
        help="where the run's .pod5 files are (repeatable); host mode: found above "
        "OUTPUT_DIR",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from reactor.disk.read_requests import UnreadableOutput
    from reactor.ops.verify import VerifyError, report_lines, verify

    try:
        result = verify(args.output_dir, args.input_dir)
    except VerifyError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except UnreadableOutput as exc:
        print(f"{_PROG}: an output cannot be read: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for line in report_lines(str(args.output_dir), result):
            print(line)
    return 0 if result.exactly_once else 1
