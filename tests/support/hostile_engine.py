"""An engine that speaks the seed's protocol and misbehaves on purpose, for the real-process
tests and the crash torture.

Run as `python -m tests.support.hostile_engine --url URL --engine-id ID ...` from the
repository. It takes batches like `seed_engine.py` and basecalls them the same way (every
read once, into the job's pass/ or fail/), but every `--every`-th batch it mishandles,
taking the kinds of `--mischief` in turn:

- `pass-link`: basecalls, then replaces its `pass/` with a link to INPUTDIR, and reports
  DONE (reactor must refuse it: merging through the link would move the inputs);
- `link-out`: basecalls, then adds a link among its outputs to a file outside the run
  (`--canary`), and reports DONE (refused);
- `gone`: basecalls, then removes its output folder, and reports DONE (refused);
- `late`: sends no keepalive, basecalls, and reports DONE long after its lease ran out
  (1.5 leases after the assignment): merged late if its files were not handed out again,
  else kept aside.

Every batch ends in one JSON line on stdout: the job, its files, the mischief (or
"none") and the answer to its report, so a test can account for every batch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from tests.support.seed_engine import Manager, basecall, keepalives

MISCHIEF = ("pass-link", "link-out", "gone", "late")
LATE_AFTER_LEASES = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hostile_engine")
    parser.add_argument("--url", required=True)
    parser.add_argument("--engine-id", required=True)
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--canary", type=Path, required=True, help="a file outside the run")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--every", type=int, default=1, help="mishandle every N-th batch (1)")
    parser.add_argument(
        "--mischief",
        default=",".join(MISCHIEF),
        help=f"kinds of mischief, taken in turn (default: {','.join(MISCHIEF)})",
    )
    parser.add_argument("--max-batches", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument("--retry-s", type=float, default=30.0)
    parser.add_argument("--idle-poll-s", type=float, default=0.05)
    args = parser.parse_args(argv)
    args.mischief = [kind for kind in args.mischief.split(",") if kind]
    unknown = set(args.mischief) - set(MISCHIEF)
    if unknown or not args.mischief or args.every < 1:
        parser.error(f"--mischief takes {', '.join(MISCHIEF)}; --every at least 1")
    return args


def spoil(kind: str, job_out: Path, input_dir: Path, canary: Path) -> None:
    """Make the job's output folder break the rules, after it was basecalled."""
    if kind == "pass-link":
        shutil.rmtree(job_out / "pass")
        (job_out / "pass").symlink_to(input_dir.resolve())
    elif kind == "link-out":
        (job_out / "pass" / "canary.fastq").symlink_to(canary.resolve())
    elif kind == "gone":
        shutil.rmtree(job_out)


def run_batch(
    manager: Manager, args: argparse.Namespace, work: dict[str, Any], mischief: str
) -> dict[str, Any]:
    job_in = args.input_dir / work["job_input_dir"]
    job_out = args.output_dir / work["job_output_dir"]
    lease_s = float(work["report_back_interval"])
    began = time.monotonic()
    stop, late = threading.Event(), threading.Event()
    pinger = None
    if mischief != "late":
        pinger = threading.Thread(
            target=keepalives,
            args=(manager, work["jobid"], lease_s / 2, stop, late),
            daemon=True,
        )
        pinger.start()
    basecall(work["batch"], job_in, job_out)
    if mischief == "late":
        time.sleep(max(0.0, began + LATE_AFTER_LEASES * lease_s - time.monotonic()))
    else:
        spoil(mischief, job_out, args.input_dir, args.canary)
    stop.set()
    if pinger is not None:
        pinger.join()
    if late.is_set():
        return {"told_late": True}
    try:
        return manager.get("completed", job_id=work["jobid"], job_state="DONE")
    except urllib.error.HTTPError as exc:
        return {"http_error": exc.code}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM is how a run's end stops it: exit 0, like any engine that stops when told.
    signal.signal(signal.SIGTERM, lambda _signal, _frame: sys.exit(0))
    manager = Manager(args.url, args.retry_s)
    batches = 0
    while not args.max_batches or batches < args.max_batches:
        try:
            work = manager.get("assignwork", engineid=args.engine_id, batchsize=args.batch_size)
        except urllib.error.HTTPError:  # a 503 while storage is away: ask again
            time.sleep(args.idle_poll_s)
            continue
        if work["batch_size"] == 0:
            time.sleep(args.idle_poll_s)
            continue
        batches += 1
        mischief = "none"
        if batches % args.every == 0:
            mischief = args.mischief[(batches // args.every - 1) % len(args.mischief)]
        answer = run_batch(manager, args, work, mischief)
        line = {
            "job_id": work["jobid"],
            "files": work["batch"],
            "mischief": mischief,
            "answer": answer,
        }
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
