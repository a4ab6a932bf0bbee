"""The ingest floor: reactor's own watchdog observer (`reactor.serve.watcher.Watcher`) delivering
each event to a bare callback on an asyncio loop, which notes `time.monotonic()` the first
time it sees a `.pod5` arrive. No signature check, no state, no HTTP.

`python -m tests.bench.watchfloor INPUTDIR OUTPUTDIR`: prints `ready` once watching, and
when its stdin closes prints `{name: monotonic seconds}` as JSON and exits. The monotonic
clock is the machine's, so the driver's rename times compare with it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from reactor.core.events import Area, Change, FsEvent
from reactor.serve.watcher import Watcher

ARRIVALS = frozenset({Change.MOVED_IN, Change.CLOSED, Change.CREATED})


async def watch(input_dir: Path, output_dir: Path) -> dict[str, float]:
    seen: dict[str, float] = {}

    def on_event(event: FsEvent) -> None:
        if event.area is Area.INPUT and event.change in ARRIVALS:
            seen.setdefault(event.name, time.monotonic())

    loop = asyncio.get_running_loop()
    watcher = Watcher(input_dir, output_dir, on_event=on_event, on_lost=print, loop=loop)
    watcher.start()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the driver closes stdin
    watcher.stop()
    return seen


def main(argv: list[str]) -> int:
    seen = asyncio.run(watch(Path(argv[0]), Path(argv[1])))
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
