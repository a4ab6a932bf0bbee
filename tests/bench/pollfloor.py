"""The polling baseline: watchdog's polling observer on a host's POD5 folders, as
single-run mode's `observer = polling` would watch them (one recursive watch each).

`python -m tests.bench.pollfloor SECONDS INTERVAL FOLDER...`: starts the observer (its
first snapshot of every tree), then measures SECONDS of idle polling; prints JSON with
the CPU seconds spent in that time and the RSS before and after the observer started.
"""

from __future__ import annotations

import json
import os
import sys
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers.polling import PollingObserver


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    seconds, interval, folders = float(argv[0]), float(argv[1]), argv[2:]
    before = rss_bytes()
    observer = PollingObserver(timeout=interval)
    for folder in folders:
        observer.schedule(FileSystemEventHandler(), folder, recursive=True)
    observer.start()
    time.sleep(2 * interval)  # the first snapshots are taken
    used = os.times()
    began = time.monotonic()
    time.sleep(seconds)
    after = os.times()
    wall = time.monotonic() - began
    cpu = (after.user + after.system) - (used.user + used.system)
    print(
        json.dumps({"cpu_s": cpu, "wall_s": wall, "rss_before": before, "rss_after": rss_bytes()})
    )
    observer.stop()
    observer.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
