"""Power loss, in-process: every crash state of a recorded run, and the model behind them.

A real run that takes every journal transition is recorded (tests/support/crash_run.py:
every change and fsync reactor makes, what its engine writes, each answer it gives).
For every cut point, the strict state (only what was fsynced) and seeded random states
(part of the rest kept too) are built by the power-cut model of powercut_fs.py
(tests/support/crash_states.py), written out, and recovered by a fresh reactor: the
answers given before the cut must hold, and the run, driven to its end, must have every
read exactly once (tests/support/crash_checks.py). The checks are shown to fail on a run
whose fsyncs do nothing.

The model is checked on small hand-written histories first: what an fsync makes
durable, in which order, and what a cut keeps of the rest; the recorder against the real
filesystem it watched.
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from pathlib import Path

import pytest

from reactor.disk import fsops
from reactor.disk.journal import Journal
from reactor.serve.service import Reactor
from tests.support.blocking import started
from tests.support.crash_checks import StateChecker
from tests.support.crash_run import Recording, record_run
from tests.support.crash_states import (
    CrashState,
    Entry,
    Model,
    Op,
    Recorder,
    crash_states,
    materialize,
    on_disk,
)
from tests.support.pod5files import write_pod5
from tests.support.runs import ManualClock, RunDirs

SEEDS = range(40)
RUN_SEEDS = range(6)  # random states per cut point of the recorded run, beside the strict one


def base_with(tmp_path: Path, files: dict[str, bytes], folders: tuple[str, ...] = ()) -> Path:
    """A base folder holding `folders` and `files` (all of it durable)."""
    base = tmp_path / "base"
    base.mkdir()
    for folder in folders:
        (base / folder).mkdir()
    for name, data in files.items():
        (base / name).write_bytes(data)
    return base


def cut_after(base: Path, ops: list[Op], *, honour_fsync: bool = True) -> list[CrashState]:
    """The strict state after all `ops`, then a random one per seed."""
    return list(crash_states(base, ops, SEEDS, honour_fsync=honour_fsync, cuts=[len(ops)]))


def listing(state: CrashState) -> dict[str, bytes | str]:
    """path -> a file's bytes (read from the base when it is the base's), a link's
    target, or "dir"."""
    found: dict[str, bytes | str] = {}
    for entry in state.entries:
        if entry.kind == "dir":
            found[entry.path] = "dir"
        elif entry.kind == "symlink":
            found[entry.path] = f"-> {entry.target}"
        else:
            content = entry.content
            found[entry.path] = content.read_bytes() if isinstance(content, Path) else content
    return found


def test_the_strict_state_keeps_only_what_was_fsynced(tmp_path: Path) -> None:
    """A new file's data is durable at its fsync, its name at its folder's, and the
    folder's own name at its parent's: each missing fsync loses what it would have kept."""
    base = base_with(tmp_path, {})
    made = [
        Op("mkdir", "d"),
        Op("create", "d/f"),
        Op("write", "d/f", data=b"data"),
        Op("fsync", "d/f"),
        Op("fsync", "d"),
    ]
    strict = [listing(cut_after(base, made[:n])[0]) for n in range(len(made) + 1)]
    assert strict == [{}] * 6  # the folder's name was never made durable
    named = [*made, Op("fsync", "")]
    assert listing(cut_after(base, named)[0]) == {"d": "dir", "d/f": b"data"}
    unsynced_file = [op for op in named if op != Op("fsync", "d/f")]
    assert listing(cut_after(base, unsynced_file)[0]) == {"d": "dir", "d/f": b""}
    unsynced_folder = [op for op in named if op != Op("fsync", "d")]
    assert listing(cut_after(base, unsynced_folder)[0]) == {"d": "dir"}


def test_a_rename_can_survive_while_the_renamed_files_data_does_not(tmp_path: Path) -> None:
    """Written, renamed, the folder fsynced but not the file: the new name survives and
    the data does not (strictly), or either way in random states."""
    base = base_with(tmp_path, {})
    ops = [
        Op("create", "a.tmp"),
        Op("write", "a.tmp", data=b"record"),
        Op("rename", "a.tmp", other="a"),
        Op("fsync", ""),
    ]
    strict, *randoms = cut_after(base, ops)
    assert listing(strict) == {"a": b""}
    assert {listing(state)["a"] for state in randoms} == {b"", b"record"}
    fsynced = [*ops[:2], Op("fsync", "a.tmp"), *ops[2:]]
    assert {listing(state)["a"] for state in cut_after(base, fsynced)} == {b"record"}


def test_a_rename_between_folders_is_atomic_and_durable_once_both_are_fsynced(
    tmp_path: Path,
) -> None:
    """Until both folders are fsynced after it, a cut brings the file back under its old
    name; a random cut never shows it under both names, nor under none."""
    base = base_with(tmp_path, {"x/f": b"old"}, folders=("x", "y"))
    moved = [Op("rename", "x/f", other="y/f")]
    names = {"x/f", "y/f"}
    assert names & set(listing(cut_after(base, moved)[0])) == {"x/f"}
    half = [*moved, Op("fsync", "y")]
    assert names & set(listing(cut_after(base, half)[0])) == {"x/f"}
    both = [*half, Op("fsync", "x")]
    assert names & set(listing(cut_after(base, both)[0])) == {"y/f"}
    seen = [names & set(listing(state)) for state in cut_after(base, moved)]
    assert {frozenset(found) for found in seen} == {frozenset({"x/f"}), frozenset({"y/f"})}
    assert all(listing(state).get("y/f", b"old") == b"old" for state in cut_after(base, moved))


def test_a_folders_changes_survive_in_the_order_they_were_made(tmp_path: Path) -> None:
    """Random cuts keep a prefix of a folder's changes, never a later one without an
    earlier one."""
    base = base_with(tmp_path, {})
    names = [f"n{i}" for i in range(6)]
    ops = [Op("mkdir", name) for name in names]
    prefixes = {tuple(names[:k]) for k in range(len(names) + 1)}
    kept = {tuple(n for n in names if n in listing(state)) for state in cut_after(base, ops)}
    assert kept <= prefixes
    assert len(kept) > 2  # the random states are not all the strict one


def test_a_lost_unlink_brings_the_file_back_with_its_durable_content(tmp_path: Path) -> None:
    """An unlink not made durable is undone by a cut: the file is back with the content
    of its last fsync, not what was written after it."""
    base = base_with(tmp_path, {"f": b"base"})
    ops = [
        Op("create", "g"),
        Op("write", "g", data=b"synced"),
        Op("fsync", "g"),
        Op("fsync", ""),
        Op("write", "g", data=b" and more"),
        Op("unlink", "g"),
        Op("unlink", "f"),
    ]
    assert listing(cut_after(base, ops)[0]) == {"f": b"base", "g": b"synced"}
    assert listing(cut_after(base, [*ops, Op("fsync", "")])[0]) == {}


def test_with_fsyncs_ignored_nothing_made_after_the_base_survives_a_strict_cut(
    tmp_path: Path,
) -> None:
    """The mode of the checks' self-test, as if durability were off: a strict cut keeps
    only the base, and random ones any part of the rest (a disk still writes some)."""
    base = base_with(tmp_path, {"f": b"base"})
    ops = [Op("create", "g"), Op("write", "g", data=b"x"), Op("fsync", "g"), Op("fsync", "")]
    strict, *randoms = cut_after(base, ops, honour_fsync=False)
    assert listing(strict) == {"f": b"base"}
    assert {listing(state).get("g") for state in randoms} == {None, b"", b"x"}


def test_the_recorder_writes_down_what_fsops_did_with_paths_resolved(tmp_path: Path) -> None:
    """Each fsops call becomes an op on paths relative to the root, descriptors resolved
    when the call happens; replayed, they rebuild exactly what is on disk."""
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (root / "in" / "old").write_bytes(b"before")
    with Recorder(root, tmp_path / "base") as recorder:
        folder = os.open(root / "in", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fsops.mkdir("sub", dir_fd=folder)
            fd = fsops.create("rec.tmp", 0o600, dir_fd=folder)
            fsops.write_all(fd, b"hello")
            fsops.fsync(fd)
            os.close(fd)
            fsops.rename("rec.tmp", "sub/rec", src_dir_fd=folder, dst_dir_fd=folder)
            fsops.symlink("../old", "sub/link", dir_fd=folder)
            fsops.unlink("old", dir_fd=folder)
            fsops.fsync(folder)
        finally:
            os.close(folder)
        (root / "in" / "sub" / "out.fastq").write_bytes(b"@r\n")
        recorder.engine_wrote(root / "in" / "sub" / "out.fastq", b"@r\n")
        recorder.answered("done", {"job": "1"})
    assert recorder.ops == [
        Op("mkdir", "in/sub"),
        Op("create", "in/rec.tmp"),
        Op("write", "in/rec.tmp", data=b"hello"),
        Op("fsync", "in/rec.tmp"),
        Op("rename", "in/rec.tmp", other="in/sub/rec"),
        Op("symlink", "in/sub/link", other="../old"),
        Op("unlink", "in/old"),
        Op("fsync", "in"),
        Op("put", "in/sub/out.fastq", data=b"@r\n"),
    ]
    assert [(a.after, a.kind) for a in recorder.answers] == [(9, "done")]
    assert fsops.observe(None) is None  # the observer is gone with the block
    model = Model(tmp_path / "base")
    for op in recorder.ops:
        model.apply(op)
    assert model.now() == on_disk(root)


def test_materialize_writes_folders_files_and_links_with_reactors_modes(tmp_path: Path) -> None:
    """A state written out is what it says, its state folder private as reactor makes it."""
    base = base_with(tmp_path, {"in.pod5": b"pod5"})
    state = CrashState(
        0,
        None,
        0.0,
        (
            Entry("in.pod5", "file", base / "in.pod5"),
            Entry("out", "dir"),
            Entry("out/.reactor", "dir"),
            Entry("out/.reactor/jobs", "dir"),
            Entry("out/.reactor/jobs/1.json", "file", b"{}"),
            Entry("out/pass", "dir"),
            Entry("out/pass/x.fastq", "file", b"@x\n"),
            Entry("out/pass/link", "symlink", target="../../in.pod5"),
        ),
    )
    target = tmp_path / "state"
    materialize(state, target)
    expected = [
        Entry(e.path, e.kind, b"pod5" if e.path == "in.pod5" else e.content, e.target)
        for e in state.entries
    ]
    assert on_disk(target) == tuple(sorted(expected, key=lambda entry: entry.path))
    modes = {
        path: stat.S_IMODE((target / path).lstat().st_mode)
        for path in ("out", "out/.reactor", "out/.reactor/jobs", "out/pass")
    }
    assert modes == {"out": 0o755, "out/.reactor": 0o700, "out/.reactor/jobs": 0o700,
                     "out/pass": 0o755}  # fmt: skip
    assert stat.S_IMODE((target / "out/.reactor/jobs/1.json").stat().st_mode) == 0o600


def with_modes(root: Path) -> list[tuple[Entry, int]]:
    """Each entry below `root` with its mode (a link's is not its own to keep)."""
    return [
        (entry, 0 if entry.kind == "symlink" else stat.S_IMODE((root / entry.path).stat().st_mode))
        for entry in on_disk(root)
    ]


def test_a_state_written_over_another_is_the_one_written_afresh(tmp_path: Path) -> None:
    """Written over what an earlier state became (files removed, added, changed, folders
    made and their modes changed), a state is exactly what it is written afresh."""
    base = base_with(tmp_path, {"in.pod5": b"pod5", "other.pod5": b"other"})
    first = CrashState(0, None, 0.0, (
        Entry("in.pod5", "file", base / "in.pod5"),
        Entry("out", "dir"),
        Entry("out/.reactor", "dir"),
        Entry("out/.reactor/1.json", "file", b"{1}"),
        Entry("out/gone", "dir"),
        Entry("out/gone/x", "file", b"x"),
        Entry("out/kept.fastq", "file", b"@a\n"),
        Entry("out/link", "symlink", target="../in.pod5"),
    ))  # fmt: skip
    second = CrashState(1, None, 0.0, (
        Entry("in.pod5", "file", b"now written"),
        Entry("other.pod5", "file", base / "other.pod5"),
        Entry("out", "dir"),
        Entry("out/.reactor", "dir"),
        Entry("out/.reactor/1.json", "file", b"{2}"),
        Entry("out/gone", "file", b"a file now"),
        Entry("out/kept.fastq", "file", b"@a\n"),
        Entry("out/link", "symlink", target="../other.pod5"),
        Entry("out/new", "dir"),
    ))  # fmt: skip
    reused = tmp_path / "reused"
    materialize(first, reused)
    (reused / "out" / "stray").mkdir()
    (reused / "out" / "stray" / "f").write_bytes(b"stray")
    (reused / "out" / ".reactor").chmod(0o755)
    (reused / "out" / "kept.fastq").chmod(0o600)
    materialize(second, reused)
    materialize(second, tmp_path / "afresh")
    assert with_modes(reused) == with_modes(tmp_path / "afresh")
    assert (reused / "out/kept.fastq").read_bytes() == b"@a\n"
    assert (base / "in.pod5").read_bytes() == b"pod5"  # never written through its link


def test_a_quarantine_folder_keeps_its_links_through_a_power_cut(tmp_path: Path) -> None:
    """A FAILED that quarantines a file and an unknown state that sets a job aside each
    make a folder of links in INPUTDIR. Wherever the power goes, a folder whose name
    survives holds its links (recovery takes a quarantine folder that is there as made):
    strictly, once the next assignment fsynced INPUTDIR; in random states, also when the
    disk wrote the rename on its own."""
    root = tmp_path / "run"
    dirs = RunDirs(root / "input", root / "output")
    dirs.input_dir.mkdir(parents=True)
    dirs.output_dir.mkdir()
    for i in range(3):
        write_pod5(dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    config = dirs.config(max_attempts=1)
    ids = itertools.count(1)
    reactor = started(
        Reactor(
            config,
            clock=ManualClock(),
            journal=Journal(config.input_dir, config.output_dir, durable=True),
            job_id_factory=lambda: str(next(ids)),
        )
    )
    with Recorder(root, tmp_path / "base") as recorder:
        failed = reactor.assign("e1", 1)
        assert failed is not None
        assert reactor.complete(failed.job_id, "FAILED").quarantine
        stopped = reactor.assign("e1", 1)
        assert stopped is not None
        reactor.complete(stopped.job_id, "STOPPED")
        assert reactor.assign("e1", 1) is not None
    links = {
        f"input/{kind}_{job.job_id}_e1": name
        for kind, job in (("FAILED", failed), ("UNKNOWN", stopped))
        for name in job.files
    }
    (strict,) = crash_states(recorder.base, recorder.ops, cuts=[len(recorder.ops)])
    assert set(links) <= set(listing(strict))
    for state in crash_states(recorder.base, recorder.ops, SEEDS):
        found = listing(state)
        kept = {folder: name for folder, name in links.items() if folder in found}
        assert {f: found.get(f"{f}/{name}") for f, name in kept.items()} == {
            f: f"-> ../{name}" for f, name in kept.items()
        }, (state.cut, state.seed)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return record_run(tmp_path_factory.mktemp("recorded"))


def test_the_recorded_run_takes_every_transition_and_misses_no_change(
    recording: Recording,
) -> None:
    """The script answers every kind of decision, and the ops replayed on the base
    rebuild exactly what the run left on disk (nothing changed outside fsops)."""
    assert {answer.kind for answer in recording.answers} == {
        "assigned", "done", "failed", "released", "unknown", "expired", "superseded",
        "late_not_merged", "refused", "requeued",
    }  # fmt: skip
    assert any(answer.details.get("quarantine") for answer in recording.answers)
    assert any(answer.details.get("requeue") for answer in recording.answers)
    model = Model(recording.base)
    for op in recording.ops:
        model.apply(op)
    assert model.now() == on_disk(recording.root)


def test_every_crash_state_of_the_run_keeps_its_answers_and_every_read_once(
    recording: Recording, tmp_path: Path
) -> None:
    """After a power cut anywhere in the run, strict or keeping a random part of what
    was not fsynced, recovery starts, keeps every answer already given, and the run ends
    with every read of every file exactly once (quarantined files' reads nowhere)."""
    checker = StateChecker(recording, tmp_path)
    found: dict[str, tuple[int, int | None]] = {}
    began = time.perf_counter()
    for state in crash_states(recording.base, recording.ops, RUN_SEEDS):
        for problem in checker.check(state):
            found.setdefault(problem, (state.cut, state.seed))
    took = time.perf_counter() - began
    cuts = len(recording.ops) + 1
    assert checker.checked == cuts * (1 + len(RUN_SEEDS)) >= 2000
    assert checker.recovered > cuts  # random states are not merely the strict ones again
    first = [f"cut {cut}, seed {seed}: {problem}" for problem, (cut, seed) in found.items()]
    assert first[:10] == [], f"{len(found)} kinds of violation in {took:.0f} s"


def test_the_checks_find_what_a_run_without_fsyncs_loses(
    recording: Recording, tmp_path: Path
) -> None:
    """The same checks on states built as if no fsync made anything durable (durability
    off) find lost answers and lost reads: the model and the checks can fail."""
    checker = StateChecker(recording, tmp_path)
    wanted = {"an answer lost": "was answered", "reads lost": "reads missing"}
    found: set[str] = set()
    for state in crash_states(recording.base, recording.ops, range(2), honour_fsync=False):
        problems = checker.check(state)
        found |= {what for what, says in wanted.items() if any(says in p for p in problems)}
        if found == set(wanted):
            break
    assert found == set(wanted)


def test_crash_states_written_over_the_last_checked_are_the_ones_written_afresh(
    recording: Recording, tmp_path: Path
) -> None:
    """The checker writes each state over what recovery and the run's end made of the
    last one: the result is the state as written afresh, every time."""
    checker = StateChecker(recording, tmp_path)
    states = list(crash_states(recording.base, recording.ops, [0]))[1::23]
    for number, state in enumerate(states):
        materialize(state, tmp_path / "state")
        materialize(state, tmp_path / f"afresh-{number}")
        assert with_modes(tmp_path / "state") == with_modes(tmp_path / f"afresh-{number}")
        checker.check(state)
    assert checker.recovered > 10  # each a recovery and a run to the end, messing the folder
