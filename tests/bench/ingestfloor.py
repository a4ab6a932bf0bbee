"""The ingest journal floor: what any correct server must do before it may hand a new
`.pod5` out, and nothing else. Reactor's own watchdog observer (`reactor.serve.watcher`),
the signature check (`reactor.disk.signature.check_pod5`), then a durable assignment
through reactor's `Journal.assign_step` and its `DiskWriter` (group commit included), for
POLLERS takers that each take up to POLL_BATCH ready files as soon as there are some and
wait for their step: no HTTP, no state machine, no logs. The time noted for a file is
when its assignment is durable, the moment a server may first answer with it
(docs/durability.md, "The promise").

`python -m tests.bench.ingestfloor INPUTDIR OUTPUTDIR POLLERS POLL_BATCH`: prints `ready`
once watching, and when its stdin closes (after the steps under way are durable) prints
`{name: monotonic seconds}` as JSON and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path

from reactor.core.events import Area, FsEvent
from reactor.disk.journal import Journal
from reactor.disk.signature import check_pod5
from reactor.serve.watcher import Watcher
from reactor.serve.writer import DiskWriter
from tests.bench.trees import first_job
from tests.bench.watchfloor import ARRIVALS


async def assign(input_dir: Path, output_dir: Path, pollers: int, batch: int) -> dict[str, float]:
    durable_at: dict[str, float] = {}
    ready: deque[str] = deque()
    seen: set[str] = set()
    news = asyncio.Event()
    done = asyncio.Event()

    def on_event(event: FsEvent) -> None:
        if event.area is not Area.INPUT or event.change not in ARRIVALS or event.name in seen:
            return
        check = check_pod5(input_dir / event.name)
        if check is not None and check.complete:
            seen.add(event.name)
            ready.append(event.name)
            news.set()

    journal = Journal(input_dir, output_dir, durable=True)
    journal.open()
    writer = DiskWriter(durable=True)
    writer.start()

    async def taker(number: int) -> None:
        while True:
            if not ready:
                if done.is_set():
                    return
                news.clear()
                await news.wait()
                continue
            names = [ready.popleft() for _ in range(min(batch, len(ready)))]
            job = first_job(f"floor{number}", names, time.time())
            await writer.run(journal.assign_step(job))
            at = time.monotonic()
            for name in names:
                durable_at[name] = at

    loop = asyncio.get_running_loop()
    watcher = Watcher(input_dir, output_dir, on_event=on_event, on_lost=print, loop=loop)
    watcher.start()
    takers = [asyncio.ensure_future(taker(k)) for k in range(pollers)]
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the driver closes stdin
    watcher.stop()
    done.set()
    news.set()
    await asyncio.gather(*takers)
    await writer.stop()
    journal.close()
    return durable_at


def main(argv: list[str]) -> int:
    input_dir, output_dir = Path(argv[0]), Path(argv[1])
    durable_at = asyncio.run(assign(input_dir, output_dir, int(argv[2]), int(argv[3])))
    print(json.dumps(durable_at))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
