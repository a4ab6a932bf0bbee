"""Crash states, many: a recorded run cut at every point, strict and at random, each recovered.

The long version of tests/disk/test_crash_states.py. A real run that takes every
journal transition is recorded (every change and fsync reactor makes, what its engine
writes, each answer it gives: tests/support/crash_run.py); then, for every cut point,
the strict state (only what was fsynced) and, seed after seed, random states (a random
part of what was not fsynced kept as well) are built by the power-cut model of
tests/support/powercut_fs.py (tests/support/crash_states.py), written out and recovered
by a fresh reactor, which must keep every answer already given and, driven to the end,
have every read exactly once (tests/support/crash_checks.py).

    python -m tests.system.crash_states --states 20000 --seed 1
    python -m tests.system.crash_states --states 20000 --layout minknow

The strict states come first, then seeds `--seed`, `--seed`+1, ... at every cut point
until `--states` states are checked. A table of what was checked goes to stdout; the
exit status is 1 if anything was violated (the first violations are listed, with the
cut point and seed that reproduce them), else 0. `--ignore-fsync` builds the states as
if no fsync made anything durable: it must find violations (the checks can fail).
`--layout minknow` records and checks the same run in MinKNOW's output layout (the
reads of each DONE split into fastq_pass/ and fastq_fail/ by the read worker first;
docs/journal.md, "Done"); the default is the seed's (pass/, fail/).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from tests.support.crash_checks import StateChecker
from tests.support.crash_run import LAYOUTS, N_FILES, READS_PER_FILE, Recording, record_run
from tests.support.crash_states import CrashState, crash_states

PROG = "python -m tests.system.crash_states"
LISTED = 20  # violations listed in full


def states_of(recording: Recording, first_seed: int, *, honour_fsync: bool) -> Iterator[CrashState]:
    """The strict state at every cut point, then a random one per cut point and seed,
    seed after seed, without end."""
    yield from crash_states(recording.base, recording.ops, honour_fsync=honour_fsync)
    for seed in itertools.count(first_seed):
        yield from crash_states(
            recording.base, recording.ops, [seed], strict=False, honour_fsync=honour_fsync
        )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up now: a test may have replaced it
    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-crash-states-"))
    root.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        recording = record_run(root / "recorded", args.layout)
        cuts = len(recording.ops) + 1
        out.write(
            f"crash states: {args.states} states of a run of {len(recording.ops)} ops "
            f"({cuts} cut points, {len(recording.answers)} answers) in the {args.layout} "
            f"layout, seeds from {args.seed}"
            f"{', fsyncs ignored' if args.ignore_fsync else ''}, in {root}\n"
        )
        out.flush()
        checker = StateChecker(recording, root)
        violations: dict[str, tuple[int, int | None, int]] = {}  # -> (cut, seed, how often)
        strict = random = 0
        every = max(1, args.states // 10)
        states = states_of(recording, args.seed, honour_fsync=not args.ignore_fsync)
        for number, state in enumerate(itertools.islice(states, args.states), 1):
            if state.seed is None:
                strict += 1
            else:
                random += 1
            for problem in checker.check(state):
                cut, seed, seen = violations.get(problem, (state.cut, state.seed, 0))
                violations[problem] = (cut, seed, seen + 1)
            if number % every == 0:
                out.write(
                    f"{time.monotonic() - began:7.1f}s  {number:6d} states  "
                    f"{checker.recovered:6d} recovered  {len(violations)} kinds of violation\n"
                )
                out.flush()
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    took = time.monotonic() - began
    rows = [
        ("recorded run", f"{len(recording.ops)} ops, {len(recording.answers)} answers, "
                         f"{N_FILES} files x {READS_PER_FILE} reads, "
                         f"{args.layout} layout"),
        ("cut points", f"{cuts}"),
        ("states checked", f"{checker.checked} ({strict} strict, {random} random)"),
        ("recovered", f"{checker.recovered} (distinct disks with the jobs engines knew; "
                      "each recovered and driven to the end)"),
        ("violations", f"{sum(seen for _, _, seen in violations.values())} "
                       f"({len(violations)} kinds)"),
        ("time", f"{took:.1f} s ({took / max(1, checker.recovered) * 1000:.1f} ms a recovery)"),
    ]  # fmt: skip
    out.write("\n" + "\n".join(f"  {name:<16} {value}" for name, value in rows) + "\n")
    for problem, (cut, seed, seen) in list(violations.items())[:LISTED]:
        where = "strict" if seed is None else f"seed {seed}"
        out.write(f"  - cut {cut}, {where} (and {seen - 1} more): {problem}\n")
    if violations:
        return 1
    out.write("  every answer kept and every read exactly once, in every state\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Crash states in-process: a recorded run cut at every point, strict and "
        "keeping a random part of what was not fsynced; each state recovered and checked.",
    )
    parser.add_argument("--states", type=int, default=20_000, help="states to check")
    parser.add_argument("--seed", type=int, default=1, help="the first random seed")
    parser.add_argument(
        "--workdir", type=Path, help="work here and keep it (default: a temporary folder)"
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="seed",
        help="the output layout recorded and checked (default: %(default)s)",
    )
    parser.add_argument(
        "--ignore-fsync",
        action="store_true",
        help="build the states as if no fsync made anything durable (must find violations)",
    )
    args = parser.parse_args(argv)
    if args.states < 1:
        parser.error("--states must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
