"""The restart floor: the least any service can do to know a run folder after a restart.

A bare `os.scandir` of OUTPUTDIR/pass and /fail (the stems of outputs: those files are
done) and of INPUTDIR, plus reading the 8 leading and 8 trailing signature bytes of each
`.pod5` not done. Prints its figures as JSON; run as `python -m tests.bench.scanfloor
INPUTDIR OUTPUTDIR`, so it pays for an interpreter start like the service does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def signature_complete(path: str) -> bool:
    """Whether the 8 leading and 8 trailing bytes are the same (the POD5 signature)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, 8)
        os.lseek(fd, -8, os.SEEK_END)
        return head == os.read(fd, 8)
    finally:
        os.close(fd)


def scan(input_dir: str, output_dir: str) -> dict[str, int]:
    stems = set()
    for kind in ("pass", "fail"):
        for entry in os.scandir(os.path.join(output_dir, kind)):  # noqa: PTH118
            stem, dot, _ = entry.name.partition(".")
            if dot:
                stems.add(stem)
    seen = checked = complete = 0
    for entry in os.scandir(input_dir):
        name = entry.name
        if not name.endswith(".pod5"):
            continue
        seen += 1
        if name[:-5] in stems:
            continue
        complete += signature_complete(entry.path)
        checked += 1
    return {"pod5_seen": seen, "checked": checked, "complete": complete, "done": len(stems)}


def peak_rss_bytes() -> int:
    """VmHWM: reset by exec, unlike ru_maxrss, which keeps the forking parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    began = time.perf_counter()
    figures = scan(argv[0], argv[1])
    figures["scan_s"] = time.perf_counter() - began  # type: ignore[assignment]
    figures["maxrss_bytes"] = peak_rss_bytes()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
