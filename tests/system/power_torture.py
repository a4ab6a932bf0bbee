"""Power-cut torture: the host loses power again and again during a live run.

The run folders live on the power-cut filesystem (tests/support/powercut_fs.py: a FUSE
mount that keeps only what was fsynced). Each round lets the run go on for a random
time, then cuts the power: every process on the host (`reactor serve`, the engines,
their basecallers) is `kill -9`ed, and the filesystem throws away what was not durable:
strictly (nothing that was not fsynced survives) or, in half the rounds, a random part
of it (each pending change kept with a random probability, the way a disk's cache may
have written some of it). Then everything starts again on what is left.

The files arrive as MinKNOW's do, one after another during the run; this driver writes
them itself, durably (written, fsynced, renamed into INPUTDIR, INPUTDIR fsynced), so a
cut never takes a file away: what the engines made of it is reactor's to keep or redo.

The verdict is the crash torture's (`tests.system.torture`): every read of every
`.pod5` exactly once in pass/ + fail/, quarantined files aside and counted.

    python -m tests.system.power_torture --rounds 200 --seed 1 --json power.json

Needs what the filesystem needs (fuse3, mfusepy, /dev/fuse) and root or a user allowed
to mount FUSE filesystems.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from reactor.sim.pod5_files import pod5_bytes
from tests.support.powercut import PowercutMount, missing, powercut_mount
from tests.system.torture import (
    Torture,
    TortureError,
    add_arguments,
    check,
    children,
    figures,
    kill_orphan,
    play,
    table,
)

PROG = "python -m tests.system.power_torture"


class PowerTorture(Torture):
    """The crash torture's processes and rounds, on a filesystem that loses power."""

    def __init__(self, args: argparse.Namespace, root: Path, fs: PowercutMount) -> None:
        self.fs = fs
        super().__init__(args, root)
        # The run folders on the mount; the logs stay off it, so a cut keeps them.
        self.input_dir = fs / "input"
        self.output_dir = fs / "output"
        for folder in (self.input_dir, self.output_dir):
            folder.mkdir(exist_ok=True)
        fs.sync()
        self.written: list[str] = []  # every .pod5 written, durably
        self.wave_left = 0
        self.next_file_at = 0.0
        self.strict_cuts = 0
        self.random_cuts = 0
        self.pending_at_cut: list[int] = []

    # -- files ---------------------------------------------------------------------------

    def start_wave(self) -> None:
        self.tally.waves += 1
        self.wave_left = self.args.files
        self.next_file_at = time.monotonic()

    def _simulator_done(self) -> bool:
        return self.wave_left == 0

    def _write_file(self) -> None:
        """One more `.pod5`, durable before its name appears in INPUTDIR."""
        wave = self.tally.waves
        number = self.args.files - self.wave_left
        name = f"PWR{wave:05d}_pass_{self.args.seed:04d}_{number:04d}.pod5"
        data = pod5_bytes(self.args.reads_per_file, self.args.seed * 1_000_003 + len(self.written))
        staging = self.input_dir / f".{name}.part"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        staging.rename(self.input_dir / name)
        folder = os.open(self.input_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self.written.append(name)
        self.wave_left -= 1

    def tend(self, *, more_files: bool) -> None:
        now = time.monotonic()
        while self.wave_left and now >= self.next_file_at:
            self._write_file()
            self.next_file_at += self.args.interval
        super().tend(more_files=more_files)

    # -- the power -----------------------------------------------------------------------

    def kill_server(self) -> None:
        """The power goes: every process of the host dies, then the disk keeps only
        what was durable (all of it strictly, or a random part of the rest)."""
        assert self.server is not None
        if self.server.poll() is not None:
            msg = f"reactor serve exited on its own with {self.server.returncode}; see {self.logs}"
            raise TortureError(msg)
        for engine in self.engines:
            if engine is not None:
                basecallers = children(engine.pid)
                engine.kill()
                engine.wait()
                for basecaller in basecallers:
                    kill_orphan(basecaller)
        for orphan in self.orphans:
            kill_orphan(orphan)
        self.orphans = []
        self.server.kill()
        self.server.wait()
        self.tally.server_kills += 1
        self.pending_at_cut.append(int(self.fs.state().get("pending_changes", 0)))
        if self.rng.random() < 0.5:
            self.fs.cut()
            self.strict_cuts += 1
        else:
            self.fs.cut(seed=self.rng.randrange(1 << 30), survive=self.rng.uniform(0.2, 0.9))
            self.random_cuts += 1
        lost = [name for name in self.written if not (self.input_dir / name).exists()]
        if lost:
            msg = f"the filesystem lost {len(lost)} durably written files ({lost[0]}, ...)"
            raise TortureError(msg)
        for index in range(self.args.engines):
            self.start_engine(index)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    lack = missing()
    if lack is not None:
        print(f"{PROG}: cannot mount the power-cut filesystem: {lack}", file=sys.stderr)
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-power-"))
    root.mkdir(parents=True, exist_ok=True)
    out.write(
        f"power torture: {args.rounds} cuts, seed {args.seed}, {args.engines} engines, waves "
        f"of {args.files} files x {args.reads_per_file} reads, in {root}\n"
    )
    out.flush()
    began = time.monotonic()
    result: dict[str, Any]
    with powercut_mount(root) as fs:
        torture = PowerTorture(args, root, fs)

        def progress(number: int) -> None:
            out.write(
                f"{time.monotonic() - began:7.1f}s  cut {number:4d}  "
                f"files written {len(torture.written)}\n"
            )
            out.flush()

        codes, drain_s, error = play(torture, args.rounds, progress)
        outcome = None
        if error is None:
            outcome = check(torture.input_dir, torture.output_dir, torture.last_status)
            present = {path.name for path in torture.input_dir.iterdir()}
            missing_files = len(set(torture.written) - present)
            if missing_files:
                error = f"{missing_files} durably written .pod5 files are gone"
        result = figures(args, torture, outcome, codes, time.monotonic() - began, drain_s, error)
        pending = torture.pending_at_cut or [0]
        result |= {
            "power_cuts": {
                "strict": torture.strict_cuts,
                "random": torture.random_cuts,
                "pending_changes_at_cut": {
                    "mean": round(sum(pending) / len(pending), 1),
                    "max": max(pending),
                },
            },
            "files_written": len(torture.written),
        }
        if not result["ok"]:  # keep what the cuts left, off the mount
            shutil.copytree(fs.mount, root / "left", symlinks=True, dirs_exist_ok=True)
    out.write("\n" + table(result).replace("kills: server", "power cuts") + "\n")
    cuts = result["power_cuts"]
    out.write(
        f"  power cuts: {cuts['strict']} strict, {cuts['random']} keeping a random part; "
        f"changes not yet durable at a cut: mean {cuts['pending_changes_at_cut']['mean']}, "
        f"max {cuts['pending_changes_at_cut']['max']}\n"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["ok"] and args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        out.write(f"  run folder kept: {root} (server logs: {root}/logs/serve-*.log)\n")
    return 0 if result["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Power-cut torture: cut the power of the host again and again during a "
        "live run, on a filesystem that keeps only what was fsynced.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
