"""The host restart floor: the least any service can do to know a MinKNOW root.

A bare walk of `{root}/{group}/{sample}/{run}/`, each run folder's top level listed;
for a run without a final summary, its POD5 folders and their barcode folders listed
and each `.pod5`'s 8 leading and 8 trailing bytes read. Prints its figures as JSON;
`python -m tests.bench.hostfloor ROOT`, so it pays for an interpreter start like the
service does.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tests.bench.scanfloor import signature_complete


def _folders(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return [e.path for e in entries if not e.name.startswith(".") and e.is_dir()]


def scan(root: str) -> dict[str, int]:
    runs = live = files = complete = 0
    for group in _folders(root):
        for sample in _folders(group):
            for run in _folders(sample):
                runs += 1
                names = os.listdir(run)
                if any(n.startswith("final_summary_") for n in names):
                    continue
                live += 1
                pending = [f"{run}/{n}" for n in names if n.startswith("pod5")]
                for folder in pending:
                    for entry in os.scandir(folder):
                        if entry.is_dir():
                            pending.append(entry.path)
                            continue
                        if not entry.name.endswith(".pod5"):
                            continue
                        files += 1
                        complete += signature_complete(entry.path)
    return {"runs": runs, "live": live, "files": files, "complete": complete}


def main(argv: list[str]) -> int:
    began = time.perf_counter()
    figures: dict[str, float] = dict(scan(argv[0]))
    figures["scan_s"] = time.perf_counter() - began
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
