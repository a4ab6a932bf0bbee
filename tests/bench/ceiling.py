"""The throughput trial's ceilings (`tests.bench.throughput`): the fastest servers the same
engines can meet on the same harness, so a target over the seed is read against what any
server could reach here.

- `memory`: a bare aiohttp handler that hands out the run's names from a list and touches
  no disk (job_output_dir is OUTPUTDIR itself, so the engines' outputs land in `pass/`):
  what the engines alone cost.
- `protocol`: the same handler making the seed protocol's own folder changes (the seed's
  `Workload` of `tests.bench.seedbase`: a folder of links and an output folder per job,
  the outputs moved into `pass/` with the job's prefix, the links removed, the output
  folder renamed): what any server that keeps the wire protocol and its folders must do,
  with nothing recorded, nothing fsynced and nothing logged.

`python -m tests.bench.ceiling memory|protocol INPUTDIR OUTPUTDIR PORT [BATCH]`; loopback
only.
"""

from __future__ import annotations

import itertools
import os
import sys

from aiohttp import web

from tests.bench.seedbase import Workload


def memory_app(input_dir: str, batch_size: int) -> web.Application:
    queue = sorted(entry.name for entry in os.scandir(input_dir) if entry.name.endswith(".pod5"))
    queue.reverse()
    job_ids = itertools.count(1)

    async def assignwork(request: web.Request) -> web.Response:
        size = int(request.query.get("batchsize", batch_size)) or batch_size
        batch = [queue.pop() for _ in range(min(size, len(queue)))]
        return web.json_response(
            {
                "jobid": str(next(job_ids)) if batch else "-1",
                "job_input_dir": ".",
                "job_output_dir": ".",
                "bc_engine_id": request.query.get("engineid", ""),
                "batch_size": len(batch),
                "batch": batch,
                "report_back_interval": 90,
            }
        )

    return _app(assignwork, _answer({"ok": True}))


def protocol_app(input_dir: str, output_dir: str, batch_size: int) -> web.Application:
    workload = Workload(input_dir, output_dir, batch_size)
    workload.scan()

    async def assignwork(request: web.Request) -> web.Response:
        work = workload.assign(request.query["engineid"], int(request.query["batchsize"]))
        return web.json_response({**work.__dict__, "report_back_interval": 90})

    async def completed(request: web.Request) -> web.Response:
        workload.completed(request.query["job_id"], request.query["job_state"])
        return web.json_response({"ok": True})

    return _app(assignwork, completed)


def _answer(body: dict[str, object]) -> web.Handler:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    return answer


def _app(assignwork: web.Handler, completed: web.Handler) -> web.Application:
    app = web.Application()
    app.router.add_get("/assignwork", assignwork)
    app.router.add_get("/completed", completed)
    app.router.add_get("/{tail:.*}", _answer({"late": False, "status": "false"}))
    return app


def main(argv: list[str]) -> int:
    kind, input_dir, output_dir, port = argv[0], argv[1], argv[2], int(argv[3])
    batch_size = int(argv[4]) if len(argv) > 4 else 10
    if kind == "memory":
        app = memory_app(input_dir, batch_size)
    elif kind == "protocol":
        app = protocol_app(input_dir, output_dir, batch_size)
    else:
        print(f"unknown ceiling {kind!r}: memory or protocol", file=sys.stderr)
        return 2
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
