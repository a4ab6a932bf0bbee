"""Trial 5: host mode at a PromethION's scale, side by side with single-run mode.

A MinKNOW-like root: `live` runs of `files` `.pod5` each (hard links of one real file:
reactor reads names and signature bytes only), spread over barcode folders, and
`finished` run folders that a host served before (their run-complete marker is there).
Figures, each beside its baseline from the same run:

- ready after a restart (Popen to the first 200 of /readyz), beside the floor: a bare
  walk of the root at MinKNOW's depth, the live runs' POD5 folders listed and each
  file's signature bytes read (`python -m tests.bench.hostfloor`, an interpreter start
  included), and beside one single-run `reactor serve` on a flat folder of as many files;
- memory per live file (VmRSS at ready minus a host's on an empty root, over the live
  files; every run's own overhead included), beside single-run mode's on the same count
  (VmRSS minus a single-run serve's on empty folders);
- threads and inotify watches at ready, per live run (watches counted from the process's
  inotify descriptors in /proc);
- discovery: a new run folder appears with its first complete `.pod5` (made in `tmp/`,
  renamed into `pod5/`, as MinKNOW does); from just before the run folder is made to the
  file being ready (its `file_ready` event, or the new run's first scan finding it:
  `recovered` with ready 1; log timestamps and the clock here are both wall clock),
  `new_runs` times; p50 and p99.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reactor.core.names import POD5_SIGNATURE
from reactor.sim.pod5_files import pod5_bytes
from tests.bench.figures import Figure
from tests.bench.servers import Served, reactor_serve, run_to_end
from tests.support.launch import free_port

READY_TIMEOUT_S = 600.0
TARGET_READY_S = 2.0
TARGET_BYTES_PER_FILE = 1024
TARGET_DISCOVERY_MS = 100.0
TARGET_POLL_CPU = 0.05  # of one core
STAGE_FILE_BYTES = 25 * 2**20


@dataclass(frozen=True)
class Polling:
    """The polling trial's size: files across the runs, seconds idle, poll interval."""

    files: int = 100_000
    idle_s: float = 20.0
    interval_s: float = 2.0


BARCODES = 4
RUNID = "0f1d7e9e"
LINKS_PER_SOURCE = 30_000


@dataclass(frozen=True)
class Shape:
    live: int = 48
    files: int = 500
    finished: int = 2000
    new_runs: int = 20


class _Links:
    """Hard links of one real `.pod5`, a new source before the link limit."""

    def __init__(self, sources: Path) -> None:
        self.sources = sources
        sources.mkdir(parents=True, exist_ok=True)
        self.content = pod5_bytes(2, seed=1)
        self.made = 0
        self.source = sources / "source-0.pod5"

    def link(self, target: Path) -> None:
        if self.made % LINKS_PER_SOURCE == 0:
            self.source = self.sources / f"source-{self.made // LINKS_PER_SOURCE}.pod5"
            self.source.write_bytes(self.content)
        os.link(self.source, target)
        self.made += 1


def _key(i: int) -> tuple[str, str]:
    return f"PAW{i:05d}", f"{i:08x}"


def build(data: Path, shape: Shape) -> Path:
    """The root (cached by its shape under `data`)."""
    root = data / f"host-{shape.live}x{shape.files}-{shape.finished}"
    done = root / ".built"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    links = _Links(data / "host-sources")
    for i in range(shape.live):
        fc, prid = _key(i)
        run = root / f"group{i % 4}" / f"sample{i % 12}" / f"20261205_1200_X{i}_{fc}_{prid}"
        for n in range(shape.files):
            barcode = f"barcode{n % BARCODES + 1:02d}"
            folder = run / "pod5" / barcode
            folder.mkdir(parents=True, exist_ok=True)
            links.link(folder / f"{fc}_{prid}_{RUNID}_{n}.pod5")
    for i in range(shape.finished):
        fc, prid = _key(100_000 + i)
        run = root / f"group{i % 4}" / f"old{i % 400}" / f"20240101_0000_X{i}_{fc}_{prid}"
        (run / "pod5").mkdir(parents=True)
        (run / f"final_summary_{fc}_{prid}_{RUNID}.txt").write_text("x=1\n")
        state = run / "reactor" / ".reactor"
        state.mkdir(parents=True, mode=0o700)
        (state / "run-complete.json").write_text("{}\n")
    done.write_text("")
    return root


OLD = time.mktime((2024, 1, 1, 0, 0, 0, 0, 0, -1))


def reset(root: Path) -> None:
    """Forget what a host did to the live runs (their reactor/ folders), so each trial
    starts from the same place: untouched live runs written to just now, finished runs
    with their marker whose folders have not changed since 2024."""
    for output in root.glob("group*/sample*/*/reactor"):
        shutil.rmtree(output)
    for run in [*root.glob("group*/new*"), *root.glob("group*/sample*/20261205_1300_N*")]:
        shutil.rmtree(run)  # what an interrupted trial left
    now = time.time()
    for folder in [*root.glob("group*/sample*/*/pod5"), *root.glob("group*/sample*/*")]:
        os.utime(folder, (now, now))
    for folder in root.glob("group*/sample*"):
        os.utime(folder, (now, now))
    for folder in [*root.glob("group*/old*/*"), *root.glob("group*/old*")]:
        os.utime(folder, (OLD, OLD))


def inotify_watches(pid: int) -> int:
    """Watches held by the process: `inotify wd:` lines of its inotify descriptors."""
    count = 0
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for entry in fdinfo.iterdir():
        try:
            count += sum(
                1 for line in entry.read_text().splitlines() if line.startswith("inotify wd:")
            )
        except OSError:
            continue
    return count


def host_serve(root: Path, log: Path) -> Served:
    port = free_port()
    args = [
        "-m", "reactor", "serve", "--watch-root", str(root),
        "--listen", f"127.0.0.1:{port}", "--report-back-interval", "3600",
        "--log-format", "json", "--log-level", "info",
    ]  # fmt: skip
    return Served(args=args, log=log, port=port)


def _started(served: Served, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
    ready_s = served.start(timeout_s)
    assert served.process is not None
    return {
        "ready_s": ready_s,
        "memory": served.memory_at_ready,
        "threads": served.threads(),
        "watches": inotify_watches(served.process.pid),
    }


def _wall(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def discovery(served: Served, root: Path, count: int) -> list[float]:
    """Milliseconds from a new run folder to its first file ready, `count` times."""
    content = pod5_bytes(2, seed=2)
    latencies: list[float] = []
    for i in range(count):
        fc, prid = _key(900_000 + i)
        sample = root / "group0" / "sample0"
        run = sample / f"20261205_1300_N{i}_{fc}_{prid}"
        staging = root / "group0" / f"new-staging-{i}"
        staging.mkdir()
        staged = staging / f"{fc}_{prid}_{RUNID}_0.pod5"
        staged.write_bytes(content)
        began = time.time()
        (run / "pod5").mkdir(parents=True)
        staged.rename(run / "pod5" / staged.name)
        deadline = time.monotonic() + 10
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            # ready: by its own event, or in the run's first scan (`recovered`, ready 1)
            found = [
                e
                for e in served.log_events("file_ready", "recovered")
                if e.get("name") == staged.name
                or (e.get("run") == f"{fc}_{prid}" and e.get("ready", 0) >= 1)
            ]
            if not found:
                time.sleep(0.01)
        shutil.rmtree(staging)
        if not found:
            msg = f"a new run's file was not ready within 10 s; see {served.log}"
            raise RuntimeError(msg)
        latencies.append(1000 * (_wall(found[0]) - began))
    for i in range(count):
        fc, prid = _key(900_000 + i)
        shutil.rmtree(root / "group0" / "sample0" / f"20261205_1300_N{i}_{fc}_{prid}")
    return latencies


def run(data: Path, logs: Path, shape: Shape) -> tuple[list[Figure], dict[str, Any]]:
    root = build(data, shape)
    live = shape.live * shape.files
    raw: dict[str, Any] = {"shape": shape.__dict__}
    empty_root = data / "host-empty"
    empty_root.mkdir(exist_ok=True)
    empty = host_serve(empty_root, logs / "host-empty.jsonl")
    try:
        raw["empty"] = _started(empty)
    finally:
        empty.stop()
    reset(root)
    first = host_serve(root, logs / "host-first.jsonl")
    try:
        raw["first"] = _started(first)
    finally:
        first.stop()
    restart = host_serve(root, logs / "host-restart.jsonl")
    try:
        raw["restart"] = _started(restart)
        latencies = discovery(restart, root, shape.new_runs)
    finally:
        restart.stop()
    raw["discovery_ms"] = latencies
    floor = run_to_end(["-m", "tests.bench.hostfloor", str(root)], READY_TIMEOUT_S)
    raw["floor"] = json.loads(floor.stdout)
    # single-run mode on as many files, in one flat folder
    flat = data / f"host-flat-{live}"
    if not (flat / ".built").exists():
        shutil.rmtree(flat, ignore_errors=True)
        (flat / "input").mkdir(parents=True)
        links = _Links(data / "host-sources-flat")
        for n in range(live):
            links.link(flat / "input" / f"PAW00000_00000000_{RUNID}_{n}.pod5")
        (flat / ".built").write_text("")
    shutil.rmtree(flat / "output", ignore_errors=True)
    (flat / "output").mkdir()
    single = reactor_serve(flat / "input", flat / "output", logs / "host-single.jsonl")
    try:
        raw["single"] = _started(single)
    finally:
        single.stop()
    nothing = data / "host-flat-empty"
    shutil.rmtree(nothing, ignore_errors=True)
    for folder in ("input", "output"):
        (nothing / folder).mkdir(parents=True)
    bare = reactor_serve(nothing / "input", nothing / "output", logs / "host-single-empty.jsonl")
    try:
        raw["single_empty"] = _started(bare)
    finally:
        bare.stop()
    return _figures(shape, raw, floor.wall_s), raw


def _figures(shape: Shape, raw: dict[str, Any], floor_s: float) -> list[Figure]:
    live = shape.live * shape.files
    label = f"host {shape.live} live runs x {shape.files:,} files + {shape.finished:,} finished"
    restart, single, empty = raw["restart"], raw["single"], raw["empty"]
    per_file = (restart["memory"].get("VmRSS", 0) - empty["memory"].get("VmRSS", 0)) / live
    single_base = raw["single_empty"]["memory"].get("VmRSS", 0)
    single_per_file = (single["memory"].get("VmRSS", 0) - single_base) / live
    latencies = sorted(raw["discovery_ms"])
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return [
        Figure(f"{label}: ready after a restart", restart["ready_s"], "s", floor_s, "floor",
               target=f"< {TARGET_READY_S:g} s", met=restart["ready_s"] < TARGET_READY_S),
        Figure(f"{label}: ready, single-run mode on {live:,} files", restart["ready_s"], "s",
               single["ready_s"], "single-run"),
        Figure(f"{label}: first start (every run adopted)", raw["first"]["ready_s"], "s",
               floor_s, "floor"),
        Figure(f"{label}: memory per live file", per_file, "B", single_per_file,
               "single-run", target=f"< {TARGET_BYTES_PER_FILE} B",
               met=per_file < TARGET_BYTES_PER_FILE),
        Figure(f"{label}: threads per live run", restart["threads"] / shape.live, "",
               empty["threads"], "empty host, total"),
        Figure(f"{label}: inotify watches per live run", restart["watches"] / shape.live, "",
               1 + 1 + BARCODES, "run + pod5 + barcodes", compare="difference"),
        Figure(f"host: new run to its first file ready, p50 ({shape.new_runs} runs)",
               statistics.median(latencies), "ms"),
        Figure(f"host: new run to its first file ready, p99 ({shape.new_runs} runs)", p99, "ms",
               target=f"< {TARGET_DISCOVERY_MS:g} ms", met=p99 < TARGET_DISCOVERY_MS),
    ]  # fmt: skip


# ------------------------------------------------------------------ polling


def build_polled(data: Path, runs: int, files: int) -> tuple[Path, list[Path]]:
    """`files` across `runs` live runs (4 barcode folders each), cached."""
    each = -(-files // runs)
    root = data / f"host-poll-{runs}x{each}"
    pod5_folders = [
        root / "g" / f"s{i % 12}" / f"20261205_1200_P{i}_{_key(i)[0]}_{_key(i)[1]}" / "pod5"
        for i in range(runs)
    ]
    if not (root / ".built").exists():
        shutil.rmtree(root, ignore_errors=True)
        links = _Links(data / "host-sources-poll")
        for i, folder in enumerate(pod5_folders):
            fc, prid = _key(i)
            for n in range(each):
                barcode = folder / f"barcode{n % BARCODES + 1:02d}"
                barcode.mkdir(parents=True, exist_ok=True)
                links.link(barcode / f"{fc}_{prid}_{RUNID}_{n}.pod5")
        (root / ".built").write_text("")
    for output in root.glob("g/s*/*/reactor"):
        shutil.rmtree(output)
    now = time.time()
    for folder in [*root.glob("g/s*/*/pod5/*"), *root.glob("g/s*/*/pod5"), *root.glob("g/s*/*")]:
        os.utime(folder, (now, now))
    return root, pod5_folders


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def polled_host(root: Path, log: Path, observer: str, interval_s: float) -> Served:
    port = free_port()
    args = [
        "-m", "reactor", "serve", "--watch-root", str(root), "--listen", f"127.0.0.1:{port}",
        "--report-back-interval", "3600", "--log-format", "json", "--log-level", "info",
        "--observer", observer, "--poll-interval", str(interval_s),
    ]  # fmt: skip
    return Served(args=args, log=log, port=port)


def polling(
    data: Path, logs: Path, runs: int, size: Polling
) -> tuple[list[Figure], dict[str, Any]]:
    """CPU and memory of host mode's poller at `size.files` idle files across `runs` runs,
    beside watchdog's polling observer on the same folders; and how soon it sees a file."""
    root, folders = build_polled(data, runs, size.files)
    files = sum(1 for folder in folders for _ in folder.glob("*/*.pod5"))
    raw: dict[str, Any] = {"files": files, "runs": runs, "interval_s": size.interval_s}
    native = polled_host(root, logs / "host-poll-native.jsonl", "native", size.interval_s)
    try:
        raw["native"] = _started(native)
    finally:
        native.stop()
    build_polled(data, runs, size.files)  # the same start again: fresh outputs
    polled = polled_host(root, logs / "host-poll-polling.jsonl", "polling", size.interval_s)
    try:
        raw["polling"] = _started(polled)
        assert polled.process is not None
        pid = polled.process.pid
        time.sleep(2 * size.interval_s)  # past the first polls
        before, began = cpu_seconds(pid), time.monotonic()
        time.sleep(size.idle_s)
        raw["poll_cpu"] = (cpu_seconds(pid) - before) / (time.monotonic() - began)
        raw["poll_rss"] = polled.memory().get("VmRSS", 0)
        raw["seen_ms"] = _polled_arrivals(polled, folders[0], size.interval_s)
    finally:
        polled.stop()
    floor = run_to_end(
        ["-m", "tests.bench.pollfloor", str(size.idle_s), str(size.interval_s),
         *map(str, folders)],
        READY_TIMEOUT_S,
    )  # fmt: skip
    raw["watchdog"] = json.loads(floor.stdout)
    return _polling_figures(raw), raw


def _polled_arrivals(
    served: Served, folder: Path, interval_s: float, count: int = 5
) -> list[float]:
    """Milliseconds from a rename into a polled barcode folder to the file ready."""
    content = pod5_bytes(2, seed=3)
    staging = folder.parent / "tmp"
    staging.mkdir(exist_ok=True)
    fc, prid = folder.parent.name.rsplit("_", 2)[-2:]
    seen: list[float] = []
    for i in range(count):
        name = f"{fc}_{prid}_{RUNID}_{800_000 + i}.pod5"
        (staging / name).write_bytes(content)
        began = time.time()
        (staging / name).rename(folder / "barcode01" / name)
        deadline = time.monotonic() + 5 * interval_s
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            found = [e for e in served.log_events("file_ready") if e.get("name") == name]
            if not found:
                time.sleep(0.02)
        if not found:
            msg = f"a polled file was not ready within {5 * interval_s} s; see {served.log}"
            raise RuntimeError(msg)
        seen.append(1000 * (_wall(found[0]) - began))
        (folder / "barcode01" / name).unlink()
    shutil.rmtree(staging)
    return seen


def _polling_figures(raw: dict[str, Any]) -> list[Figure]:
    files, runs = raw["files"], raw["runs"]
    interval_s = raw["interval_s"]
    label = f"host polling, {files:,} idle files across {runs} runs, every {interval_s:g} s"
    watchdog = raw["watchdog"]
    watchdog_cpu = watchdog["cpu_s"] / watchdog["wall_s"]
    per_file = (raw["poll_rss"] - raw["native"]["memory"].get("VmRSS", 0)) / files
    watchdog_per_file = (watchdog["rss_after"] - watchdog["rss_before"]) / files
    worst = max(raw["seen_ms"])
    limit_ms = 1000 * interval_s + 100
    return [
        Figure(f"{label}: CPU, share of a core", 100 * raw["poll_cpu"], "%",
               100 * watchdog_cpu, "watchdog's polling observer",
               target=f"< {100 * TARGET_POLL_CPU:g} %", met=raw["poll_cpu"] < TARGET_POLL_CPU),
        Figure(f"{label}: memory per file (over native events)", per_file, "B",
               watchdog_per_file, "watchdog's polling observer",
               target=f"< {TARGET_BYTES_PER_FILE} B", met=per_file < TARGET_BYTES_PER_FILE),
        Figure(f"{label}: a new file ready, worst of {len(raw['seen_ms'])}", worst, "ms",
               1000 * interval_s, "poll_interval", compare="difference",
               target="< poll_interval + 100 ms", met=worst < limit_ms),
    ]  # fmt: skip


# ------------------------------------------------------------------ staging


def staging(data: Path, files: int) -> tuple[list[Figure], dict[str, Any]]:
    """Staging's copy (checked and fsynced, as `stage_to` makes them) beside a plain copy
    and a plain copy with an fsync, of the same files, in MB/s."""
    from reactor.serve.stager import copy_verified

    source = data / f"stage-source-{files}x{STAGE_FILE_BYTES}"
    if not (source / ".built").exists():
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        # POD5s of a real run are hundreds of MB: the size a copy's cost shows at. What
        # the copy checks is the size and the signatures at both ends.
        signature = POD5_SIGNATURE
        body = os.urandom(STAGE_FILE_BYTES - 2 * len(signature))
        for n in range(files):
            path = source / f"PAW00000_00000000_{RUNID}_{n}.pod5"
            path.write_bytes(signature + body + signature)
        (source / ".built").write_text("")
    names = sorted(p.name for p in source.glob("*.pod5"))
    size = sum((source / n).stat().st_size for n in names)

    def timed(copy: Callable[[str, Path], None]) -> float:
        target = data / "stage-target"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        began = time.perf_counter()
        for name in names:
            copy(name, target)
        elapsed = time.perf_counter() - began
        shutil.rmtree(target)
        return size / 1e6 / elapsed

    def plain(name: str, target: Path) -> None:
        shutil.copyfile(source / name, target / name)

    def synced(name: str, target: Path) -> None:
        shutil.copyfile(source / name, target / name)
        fd = os.open(target / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def staged(name: str, target: Path) -> None:
        copy_verified(source / name, target, name)

    timed(plain)  # the sources in the page cache first, for every copy alike
    raw = {
        "files": len(names),
        "bytes": size,
        # best of two each, alternating
        "plain_mb_s": max(timed(plain), timed(plain)),
        "fsync_mb_s": max(timed(synced), timed(synced)),
        "staged_mb_s": max(timed(staged), timed(staged)),
    }
    label = f"staging copy, {len(names)} files of {size / len(names) / 1e6:.2f} MB"
    figures = [
        Figure(f"{label}: checked and fsynced", raw["staged_mb_s"], "MB/s",
               raw["fsync_mb_s"], "copy + fsync"),
        Figure(f"{label}: checked and fsynced, beside a plain copy", raw["staged_mb_s"], "MB/s",
               raw["plain_mb_s"], "plain copy"),
    ]  # fmt: skip
    return figures, raw
