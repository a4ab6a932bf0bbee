"""The `wait` trial's engine command: note when the command started, then basecall.

`python -S tests/bench/stamp.py LOG INPUT_DIR COMMAND...` appends one JSON line to LOG,
`{"at": time.monotonic(), "files": [names in INPUT_DIR]}`, then becomes COMMAND (the
driver passes the `fake` preset's command line, expanded by the engine), so the batch
completes as it would under that preset. The clock is read first, before any import that
is not built in (`-S` skips site too): the time is the command's start, not Python's.
CLOCK_MONOTONIC is one clock for every process of the machine on Linux, so the driver
compares it with the times it noted before each rename.

Run as a file, not as a module: it must not import the bench package or reactor.
"""

import time

STARTED_AT = time.monotonic()

import json  # noqa: E402 - after the clock on purpose
import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    log, input_dir, *command = sys.argv[1:]
    line = json.dumps({"at": STARTED_AT, "files": sorted(os.listdir(input_dir))}) + "\n"
    # One write on an O_APPEND descriptor: a whole line, even if two commands end at once.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    os.execv(command[0], command)  # noqa: S606 - the engine's own words, no shell


if __name__ == "__main__":
    main()
