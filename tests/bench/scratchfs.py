"""A fresh filesystem for a trial whose figures hang on what a new file costs.

On a filesystem that has created and removed many files (a development machine that
runs the test suite, say), ext4 can take half a millisecond or more to find a free inode
for a new file, against some 20 µs on a fresh one, and the cost changes from run to run
with what was removed lately. The throughput trial makes about twenty new files a batch,
so on such a filesystem it would measure the filesystem's history, not the servers.

`fresh_ext4(under)` makes a sparse image file under `under` (so fsyncs still reach the
disk that holds it), formats it ext4 and mounts it through a loop device, and removes it
all afterwards. It needs root, `mkfs.ext4` and a loop device; without them it yields
`under` itself and says so. `create_cost_us(folder)` is the figure that tells the two apart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_BYTES = 4 << 30  # sparse: only what the trial writes takes space


@dataclass(frozen=True)
class Scratch:
    folder: Path
    what: str  # "a fresh ext4", or "the data folder, why"
    fresh: bool = False


@contextlib.contextmanager
def fresh_ext4(under: Path) -> Iterator[Scratch]:
    under.mkdir(parents=True, exist_ok=True)
    reason = _cannot(under)
    if reason:
        yield Scratch(under, f"the data folder, {reason}")
        return
    image = under / "scratch-ext4.img"
    mount_point = under / "scratch-ext4"
    _unmount(mount_point)  # a leftover of an interrupted run
    image.unlink(missing_ok=True)
    mount_point.mkdir(exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(IMAGE_BYTES)
    try:
        _run("mkfs.ext4", "-q", "-F", str(image))
        _run("mount", "-o", "loop", str(image), str(mount_point))
    except (OSError, subprocess.CalledProcessError) as exc:
        image.unlink(missing_ok=True)
        yield Scratch(under, f"the data folder, no fresh ext4 mounted ({exc})")
        return
    try:
        yield Scratch(mount_point, "a fresh ext4", fresh=True)
    finally:
        _unmount(mount_point)
        image.unlink(missing_ok=True)


def create_cost_us(folder: Path, count: int = 500) -> float:
    """Median µs to create, write and close a small new file in `folder` (in a fresh
    subfolder, removed after)."""
    trial = folder / f".create-cost-{os.getpid()}"
    trial.mkdir()
    spent = []
    try:
        for k in range(count):
            began = time.perf_counter()
            fd = os.open(trial / f"f{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, b"@r\nACGT\n+\n!!!!\n")
            os.close(fd)
            spent.append(time.perf_counter() - began)
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    spent.sort()
    return spent[len(spent) // 2] * 1e6


def _cannot(under: Path) -> str:
    if os.geteuid() != 0:
        return "not root: no fresh filesystem"
    missing = [tool for tool in ("mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    if missing:
        return f"no fresh filesystem: {', '.join(missing)} not found"
    return ""


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _unmount(mount_point: Path) -> None:
    if mount_point.is_mount():
        subprocess.run(["umount", str(mount_point)], check=False, capture_output=True, timeout=60)
