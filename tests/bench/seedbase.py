"""The baseline: a Flask server that behaves as the seed's manager does, for the
throughput trial (`tests.bench.throughput`). Written for this benchmark from the seed's
description (docs/protocol.md, "The seed compatibility"), not copied from it.

What it keeps of the seed, since that is what the trial measures:

- one Flask app on Werkzeug's threaded server, one lock around every change of state,
  and Werkzeug's request log on stderr, as the seed ran;
- the queue is a Python list of names, filled by one scan of INPUTDIR at start (a `.pod5`
  with no FASTQ of its stem in `pass/` or `fail/`, and in no `ASSIGNED_`/`FAILED_`
  folder), and a batch is taken with `pop(0)` one name at a time;
- a job id is `uuid4().int` in decimal; `/assignwork` makes `ASSIGNED_<job>_<engine>` of
  absolute symlinks in INPUTDIR and an empty `TMPOUTPUT_<job>_<engine>` in OUTPUTDIR;
- the jobs are a dict of batches, the tracker a dict of `[last seen, state, period]`;
- `/completed` DONE moves each output of the job's `pass/` and `fail/` into OUTPUTDIR's
  with the `job_id_<job>_` prefix, removes the folder of links and renames the output
  folder `LOGOUTPUT_`; FAILED renames both folders `FAILED…`; any other state `UNKNOWN…`.
- nothing is fsynced and nothing is recorded: a crash forgets every job.

`python -m tests.bench.seedbase INPUTDIR OUTPUTDIR PORT [BATCH]`; loopback only.
"""

# The seed works on string paths with os and os.path: kept, so the baseline makes the
# same calls the seed made.
# ruff: noqa: PTH102, PTH104, PTH110, PTH118, PTH211

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request

LEASE_S = 90
SHUTDOWN_INTERVAL_S = 100


@dataclass
class Batch:
    """A job as the seed keeps it (its fields are the /assignwork answer)."""

    report_back_period: int = 300
    jobid: str = "-1"
    job_input_dir: str = ""
    job_output_dir: str = ""
    bc_engine_id: str = ""
    batch_size: int = 0
    batch: list[str] = field(default_factory=list)


def _stems(folder: str, suffix: str) -> list[str]:
    return [
        entry.name[: -len(suffix)]
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.lower().endswith(suffix)
    ]


class Workload:
    """The files still to basecall and the jobs handed out (no I/O beyond the run folders)."""

    def __init__(self, input_dir: str, output_dir: str, batch_size: int) -> None:
        self.input_dir = input_dir
        self.output_dir = output_dir
        self.default_batch_size = batch_size
        self.unassigned: list[str] = []
        self.assigned: dict[str, Batch] = {}

    def scan(self) -> None:
        """The seed's start: FASTQs done, links of jobs, and what is left (lists, as
        the seed kept them: each membership test walks a list)."""
        done: list[str] = []
        for kind in ("pass", "fail"):
            done += _stems(os.path.join(self.output_dir, kind), ".fastq")
        potential: list[str] = []
        taken: list[str] = []
        for entry in os.scandir(self.input_dir):
            if entry.is_dir() and entry.name.startswith(("ASSIGNED", "FAILED")):
                taken += [
                    link.name[:-5]
                    for link in os.scandir(entry.path)
                    if link.is_symlink() and link.name.lower().endswith(".pod5")
                ]
            elif entry.is_file() and entry.name.lower().endswith(".pod5"):
                stem = entry.name[:-5]
                if stem not in done:
                    potential.append(stem)
        self.unassigned = [stem + ".pod5" for stem in potential if stem not in taken]

    def assign(self, engine_id: str, batch_size: int) -> Batch:
        if not self.unassigned:
            return Batch()
        if batch_size <= 0:
            batch_size = self.default_batch_size
        batch_size = min(batch_size, len(self.unassigned))
        batch = [self.unassigned.pop(0) for _ in range(batch_size)]
        job_id = str(uuid.uuid4().int)
        input_name = f"ASSIGNED_{job_id}_{engine_id}"
        links = os.path.join(self.input_dir, input_name)
        os.mkdir(links)
        for name in batch:
            os.symlink(os.path.join(self.input_dir, name), os.path.join(links, name))
        output_name = f"TMPOUTPUT_{job_id}_{engine_id}"
        os.mkdir(os.path.join(self.output_dir, output_name))
        work = Batch(
            jobid=job_id,
            job_input_dir=input_name,
            job_output_dir=output_name,
            bc_engine_id=engine_id,
            batch_size=batch_size,
            batch=batch,
        )
        self.assigned[job_id] = work
        return work

    def completed(self, job_id: str, job_state: str) -> None:
        work = self.assigned.pop(job_id)
        links = os.path.join(self.input_dir, work.job_input_dir)
        outputs = os.path.join(self.output_dir, work.job_output_dir)
        if job_state == "DONE":
            for kind in ("pass", "fail"):
                source = os.path.join(outputs, kind)
                target = os.path.join(self.output_dir, kind)
                if os.path.exists(source) and os.path.exists(target):
                    for entry in os.scandir(source):
                        os.rename(entry.path, os.path.join(target, f"job_id_{job_id}_{entry.name}"))
            shutil.rmtree(links)
            os.rename(outputs, outputs.replace("TMPOUTPUT", "LOGOUTPUT"))
            return
        kind = "FAILED" if job_state == "FAILED" else "UNKNOWN"
        os.rename(links, links.replace("ASSIGNED", kind))
        os.rename(outputs, outputs.replace("TMPOUTPUT", f"{kind}OUTPUT"))


def create_app(workload: Workload) -> Flask:
    app = Flask(__name__)
    lock = threading.Lock()
    tracker: dict[str, list[Any]] = {}
    activity = [time.time()]

    def touched() -> None:
        with lock:
            activity[0] = time.time()

    @app.get("/assignwork")
    def assignwork() -> str:
        batch_size = int(request.args["batchsize"])
        engine_id = request.args["engineid"]
        with lock:
            work = workload.assign(engine_id, batch_size)
            answer = {**work.__dict__, "report_back_interval": LEASE_S}
            tracker[work.jobid] = [time.time(), "ASSIGNED", LEASE_S]
        touched()
        return json.dumps(answer)

    @app.get("/keepalive")
    def keepalive() -> str:
        job_id, job_state = request.args["job_id"], request.args["job_state"]
        with lock:
            entry = tracker[job_id].copy()
            entry[0], entry[1] = time.time(), job_state
            tracker[job_id] = entry
        touched()
        return json.dumps({"late": False})

    @app.get("/completed")
    def completed() -> str:
        job_id, job_state = request.args["job_id"], request.args["job_state"]
        with lock:
            del tracker[job_id]
            workload.completed(job_id, job_state)
        touched()
        return json.dumps({"ok": True})

    @app.get("/heartbeat")
    def heartbeat() -> str:
        idle = time.time() - activity[0]
        return json.dumps({"status": str(idle >= SHUTDOWN_INTERVAL_S).lower(),
                           "inactivity_interval": idle})  # fmt: skip

    return app


def main(argv: list[str]) -> int:
    input_dir, output_dir, port = argv[0], argv[1], int(argv[2])
    batch_size = int(argv[3]) if len(argv) > 3 else 10
    workload = Workload(input_dir, output_dir, batch_size)
    workload.scan()
    create_app(workload).run(host="127.0.0.1", port=port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
