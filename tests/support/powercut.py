"""A mount that loses power on command, for tests of durability.

    from tests.support.powercut import powercut_fs

    def test_rename_needs_the_folder_fsynced(tmp_path):
        with powercut_fs(tmp_path) as fs:
            (fs / "a").write_bytes(b"x")   # fs / name is a path on the mount
            ...
            fs.cut()                       # the power goes; only what was durable is left
            assert not (fs / "a").exists()

The filesystem (tests/support/powercut_fs.py, whose docstring states the model: what an
fsync makes durable, and what a cut keeps) runs in a process of its own, so a hung FUSE
operation cannot hang pytest; a socketpair is its control channel. `powercut_fs` mounts
it on `tmp_path/mnt` over the backing folder `tmp_path/powercut/backing`, waits for the
mount with a deadline, and always unmounts it when the block ends, however it ends.

Needs fusermount3 (Debian's fuse3), libfuse3 (libfuse3-3), /dev/fuse and the Python
library mfusepy (the test extra). Without them the test skips on a laptop and fails
under CI=true (tests/support/tools.py); `.ci/run` installs the Debian packages.

Nothing here imports pytest at module level, so a long-running driver (hundreds of
cuts) can use `powercut_mount`, the same context manager without the skip.
`python -m tests.support.powercut` measures mount and unmount times, a cut, and
small-file throughput beside a tmpfs.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FS_SCRIPT = Path(__file__).with_name("powercut_fs.py")
MOUNT_S = 10.0  # bound on the mount appearing
ANSWER_S = 30.0  # bound on one control request (a cut rebuilds the backing folder)
UNMOUNT_S = 5.0  # bound on each step of the unmount


class PowercutError(RuntimeError):
    """The filesystem did not start, did not answer, or refused a request."""


def missing() -> str | None:
    """What this machine lacks to mount the filesystem, or None."""
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse3 is not installed (Debian package libfuse3-3)"
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is not available (the kernel's FUSE module)"
    if importlib.util.find_spec("mfusepy") is None:
        return "the Python library mfusepy is not installed (pip install -e '.[test]')"
    return None


def require_powercut() -> None:
    """Skip the calling test if the filesystem cannot be mounted here; fail it under CI=true."""
    from tests.support.tools import require_tool

    lack = missing()
    require_tool(lack is None, f"power-cut filesystem: {lack}")


def is_mounted(path: Path) -> bool:
    """Is `path` a mount point? Read from /proc/self/mountinfo, so a filesystem that does
    not answer cannot make this hang (a stat of the mount point could)."""
    target = os.fsencode(os.path.realpath(path))
    with open("/proc/self/mountinfo", "rb") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[4].replace(b"\\040", b" ").replace(b"\\011", b"\t")
            if point.replace(b"\\012", b"\n").replace(b"\\134", b"\\") == target:
                return True
    return False


class PowercutMount:
    """One mounted power-cut filesystem: `mount` is its mount point; `cut()` cuts the power."""

    def __init__(self, root: Path, *, mount: Path | None = None, debug: bool = False) -> None:
        self.root = root / "powercut"
        self.backing = self.root / "backing"
        self.state_dir = self.root / "state"
        self.mount = mount if mount is not None else root / "mnt"
        for folder in (self.backing, self.state_dir, self.mount):
            folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "fs.log"
        self._control, theirs = socket.socketpair()
        self._control.settimeout(ANSWER_S)
        self._stream = self._control.makefile("rwb")
        args = [
            sys.executable, str(FS_SCRIPT),
            "--backing", str(self.backing),
            "--state", str(self.state_dir),
            "--control-fd", str(theirs.fileno()),
        ] + (["--debug"] if debug else []) + [str(self.mount)]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        theirs.close()
        try:
            self._wait_mounted()
        except BaseException:
            self.close()
            raise

    def __truediv__(self, name: str | os.PathLike[str]) -> Path:
        return self.mount / name

    def __fspath__(self) -> str:
        return str(self.mount)

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _wait_mounted(self) -> None:
        deadline = time.monotonic() + MOUNT_S
        while not is_mounted(self.mount):
            if self.process.poll() is not None:
                code = self.process.returncode
                message = f"the filesystem exited ({code}) before mounting:\n{self._log()}"
                raise PowercutError(message)
            if time.monotonic() > deadline:
                message = f"{self.mount} was not mounted within {MOUNT_S} s:\n{self._log()}"
                raise PowercutError(message)
            time.sleep(0.005)
        self.request("ping")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request on the control channel, answered within ANSWER_S."""
        try:
            self._stream.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            self._stream.flush()
            line = self._stream.readline()
        except (OSError, TimeoutError) as exc:
            message = f"{op}: no answer from the filesystem ({exc}):\n{self._log()}"
            raise PowercutError(message) from exc
        if not line:
            message = f"{op}: the filesystem closed its control channel:\n{self._log()}"
            raise PowercutError(message)
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            message = f"{op}: {answer.get('error')}"
            raise PowercutError(message)
        return answer

    def cut(self, *, seed: int | None = None, survive: float = 0.5) -> dict[str, Any]:
        """Cut the power: everything not durable is lost (strict). With a `seed`, each
        change not yet durable survives with probability `survive` instead."""
        if seed is None:
            return self.request("cut")
        return self.request("cut", seed=seed, survive=survive)

    def sync(self) -> None:
        """Make everything durable now, as a clean shutdown would."""
        self.request("sync")

    def state(self) -> dict[str, Any]:
        """What a cut would lose now: pending_changes (of names), dirty_files (data)."""
        return self.request("state")

    def close(self) -> None:
        """Unmount and stop the process, each step bounded; safe to call twice."""
        busy = is_mounted(self.mount) and not self._unmount(["fusermount3", "-u", str(self.mount)])
        with contextlib.suppress(OSError):  # the filesystem unmounts itself at this EOF too
            self._stream.close()
            self._control.close()
        if busy or is_mounted(self.mount):  # an fd or a cwd still in it
            busy = True
            self._unmount(["fusermount3", "-u", "-z", str(self.mount)])
        # Detached but busy, the filesystem would serve the last fd for as long as it is
        # open: a short wait, then SIGTERM (libfuse leaves its loop), then SIGKILL.
        for wait_s, then in ((0.5 if busy else UNMOUNT_S, signal.SIGTERM), (2.0, signal.SIGKILL)):
            try:
                self.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                self.process.send_signal(then)
        self.process.wait(timeout=UNMOUNT_S)
        if is_mounted(self.mount):
            self._unmount(["umount", "-l", str(self.mount)])

    @staticmethod
    def _unmount(command: list[str]) -> bool:
        """Run an unmount command, bounded; did it succeed?"""
        try:
            done = subprocess.run(command, check=False, capture_output=True, timeout=UNMOUNT_S)
        except (subprocess.TimeoutExpired, OSError):
            return False
        return done.returncode == 0


@contextlib.contextmanager
def powercut_mount(root: Path, **options: Any) -> Iterator[PowercutMount]:
    """Mount a power-cut filesystem under `root`, yield it, unmount it whatever happens
    in the block. For drivers (no pytest); tests use `powercut_fs`."""
    fs = PowercutMount(root, **options)
    try:
        yield fs
    finally:
        fs.close()


@contextlib.contextmanager
def powercut_fs(root: Path, **options: Any) -> Iterator[PowercutMount]:
    """Mount a power-cut filesystem under `root` (skipping, or failing under CI=true, if
    this machine cannot), yield it, and unmount it whatever happens in the block."""
    require_powercut()
    with powercut_mount(root, **options) as fs:
        yield fs


# -- `python -m tests.support.powercut`: how fast it mounts, cuts and works ----------------


def _atomic_writes(folder: Path, count: int) -> float:
    """Files written the durable way per second: tmp, write, fsync, close, rename, fsync
    of the folder."""
    started = time.perf_counter()
    for number in range(count):
        tmp, target = folder / f"{number}.tmp", folder / f"{number}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b'{"state": "done"}\n' * 4)
        os.fsync(fd)
        os.close(fd)
        tmp.replace(target)
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(folder_fd)
        os.close(folder_fd)
    return count / (time.perf_counter() - started)


def _plain_writes(folder: Path, count: int) -> float:
    """Files created, written and closed per second, no fsync."""
    started = time.perf_counter()
    for number in range(count):
        (folder / f"plain-{number}").write_bytes(b"x" * 100)
    return count / (time.perf_counter() - started)


def _ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return f"median {ordered[len(ordered) // 2] * 1000:5.1f} ms, max {ordered[-1] * 1000:5.1f} ms"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        prog="python -m tests.support.powercut",
        description="Mount and unmount times of the power-cut filesystem, the time of a cut, "
        "and its small-file throughput beside a tmpfs and its backing folder's filesystem.",
    )
    parser.add_argument("--mounts", type=int, default=20)
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args(argv)
    lack = missing()
    if lack is not None:
        print(f"cannot mount: {lack}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="powercut-")))
        mounts, unmounts = [], []
        for number in range(args.mounts):
            started = time.perf_counter()
            fs = PowercutMount(root / f"m{number}")
            mounted = time.perf_counter()
            fs.close()
            mounts.append(mounted - started)
            unmounts.append(time.perf_counter() - mounted)
        print(f"mount   (until it answers)  {_ms(mounts)}")
        print(f"unmount (until it exited)   {_ms(unmounts)}")
        (root / "disk").mkdir()
        places = {"backing folder's own fs": root / "disk"}
        if Path("/dev/shm").is_dir():  # the tmpfs every Linux has
            tmpfs = stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))
            places["tmpfs (/dev/shm)"] = Path(tmpfs)
        fs = stack.enter_context(powercut_mount(root / "pc"))
        places["power-cut mount"] = fs.mount
        print(f"\n{args.files} files, files/s     atomic+fsync     plain")
        for name, folder in places.items():
            atomic = _atomic_writes(folder, args.files)
            plain = _plain_writes(folder, args.files)
            print(f"{name:<26}{atomic:>14,.0f}{plain:>10,.0f}")
        started = time.perf_counter()
        fs.cut()
        print(f"\ncut with {2 * args.files} files: {(time.perf_counter() - started) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
