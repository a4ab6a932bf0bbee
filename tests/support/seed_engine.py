"""A basecalling engine that speaks only the seed's protocol, for end-to-end tests.

Run as a subprocess: `python tests/support/seed_engine.py --url URL --engine-id ID ...`.
It does what the seed's engine does (GET + query parameters; a keepalive every
`report_back_interval / 2`; `/completed` with DONE), with a stand-in basecaller: it
reads every `.pod5` of its batch through the job's symlink folder with the `pod5`
library and writes one FASTQ record per read, named by the read id, into the job's
`pass/` or `fail/` (by a fixed rule on the read id). So the read ids in the final
pass/+fail/ prove that every read was basecalled exactly once.

Unlike the seed's engine it rides out a manager that is briefly away (for the kill -9
test): connection errors are retried for `--retry-s` seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pod5


class Manager:
    def __init__(self, url: str, retry_s: float) -> None:
        self.url = url.rstrip("/")
        self.retry_s = retry_s

    def get(self, verb: str, **params: Any) -> dict[str, Any]:
        """GET a verb; retry connection errors (not HTTP errors) for `retry_s`."""
        query = urllib.parse.urlencode(params)
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/{verb}?{query}", timeout=10) as reply:  # noqa: S310
                    result: dict[str, Any] = json.load(reply)
                    return result
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def basecall_as_dorado(job_id: str, job_in: Path, job_out: Path) -> None:
    """The stand-in basecaller as dorado (`reactor fake-basecaller --dorado`), its BAM
    stream into the job's pass/, as the `dorado-bam` preset does."""
    with (job_out / "pass" / f"{job_id}.bam").open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", "reactor", "fake-basecaller", "--dorado", str(job_in)],
            stdout=out,
            check=True,
        )


def basecall(batch: list[str], job_in: Path, job_out: Path) -> None:
    for name in batch:
        stem = name.removesuffix(".pod5")
        records = {"pass": [], "fail": []}  # type: dict[str, list[str]]
        with pod5.Reader(job_in / name) as reader:
            for read in reader.reads():
                read_id = str(read.read_id)
                kind = "fail" if read_id[0] in "01" else "pass"
                records[kind].append(f"@{read_id}\nACGT\n+\nIIII\n")
        for kind, lines in records.items():
            if lines:
                (job_out / kind / f"{stem}.fastq").write_text("".join(lines))


def keepalives(
    manager: Manager, job_id: str, period_s: float, stop: threading.Event, late: threading.Event
) -> None:
    while not stop.wait(period_s):
        try:
            if manager.get("keepalive", job_id=job_id, job_state="PROCESSING")["late"]:
                late.set()
                return
        except urllib.error.HTTPError:
            late.set()
            return
        except OSError:
            continue


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--engine-id", required=True)
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--retry-s", type=float, default=30.0)
    parser.add_argument("--idle-poll-s", type=float, default=0.05)
    parser.add_argument("--dorado", action="store_true", help="run the stand-in as dorado")
    args = parser.parse_args()
    manager = Manager(args.url, args.retry_s)
    while True:
        work = manager.get("assignwork", engineid=args.engine_id, batchsize=args.batch_size)
        if work["batch_size"] == 0:
            time.sleep(args.idle_poll_s)
            continue
        stop, late = threading.Event(), threading.Event()
        pinger = threading.Thread(
            target=keepalives,
            args=(manager, work["jobid"], work["report_back_interval"] / 2, stop, late),
            daemon=True,
        )
        pinger.start()
        job_in = args.input_dir / work["job_input_dir"]
        job_out = args.output_dir / work["job_output_dir"]
        if args.dorado:
            basecall_as_dorado(work["jobid"], job_in, job_out)
        else:
            basecall(work["batch"], job_in, job_out)
        stop.set()
        pinger.join()
        if late.is_set():
            continue
        try:
            manager.get("completed", job_id=work["jobid"], job_state="DONE")
        except urllib.error.HTTPError as exc:
            print(f"completed {work['jobid']}: HTTP {exc.code}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
