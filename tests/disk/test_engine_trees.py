"""What engines write, read as data (`reactor.disk.engine_trees`), and what a hostile
output does to a run.

A DONE's outputs are inspected without following anything and refused when they break
the rules; a merge never moves what changed since it was inspected, nor through a link
swapped in afterwards; a link left in place of a job folder is renamed or removed
itself, never what it leads to. And a refused job, beside a good one, is that job's
trouble only (docs/journal.md, "Trust").
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reactor.core.names import POD5_SIGNATURE, job_tag
from reactor.core.state import CompletionAction, FileState, JobState
from reactor.disk import engine_trees
from reactor.disk.engine_trees import MAX_OUTPUTS, Refused
from reactor.serve.service import Reactor
from tests.support.blocking import Blocking, started
from tests.support.runs import ManualClock, RunDirs

FOLDER = "TMPOUTPUT_1_e"
TAG = job_tag("1")


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """OUTPUTDIR with one job folder, its pass/ and fail/ empty, and a folder outside it
    that links may lead to."""
    out = tmp_path / "output"
    for kind in ("pass", "fail"):
        (out / FOLDER / kind).mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.fastq").write_text("not the engine's\n")
    return out


@pytest.fixture
def output_fd(output_dir: Path) -> Iterator[int]:
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def outside(output_dir: Path) -> Path:
    return output_dir.parent / "outside"


def write(path: Path, text: str = "@r\nACGT\n+\n!!!!\n") -> None:
    path.write_text(text)


def test_plain_outputs_are_listed_in_merge_order(output_dir: Path, output_fd: int) -> None:
    for name in ("b.fastq", "a.fastq"):
        write(output_dir / FOLDER / "pass" / name)
    write(output_dir / FOLDER / "fail" / "c.fastq")
    write(output_dir / FOLDER / "engine.log")  # beside pass/ and fail/: not an output
    found = engine_trees.inspect(output_fd, FOLDER, TAG)
    assert found.entries == (("pass", "a.fastq"), ("pass", "b.fastq"), ("fail", "c.fastq"))


def _symlink(job: Path, out: Path) -> None:
    (job / "pass" / "x.fastq").symlink_to(outside(out) / "precious.fastq")


def _dangling(job: Path, out: Path) -> None:
    (job / "pass" / "x.fastq").symlink_to(out / "nowhere")


def _folder(job: Path, out: Path) -> None:
    (job / "pass" / "barcode01").mkdir()
    write(job / "pass" / "barcode01" / "x.fastq")


def _fifo(job: Path, out: Path) -> None:
    os.mkfifo(job / "fail" / "x.fastq")


def _hard_link(job: Path, out: Path) -> None:
    os.link(outside(out) / "precious.fastq", job / "pass" / "x.fastq")


def _hidden(job: Path, out: Path) -> None:
    write(job / "pass" / ".x.fastq")


def _control(job: Path, out: Path) -> None:
    write(job / "pass" / "x\nINFO fake log line.fastq")


def _too_long(job: Path, out: Path) -> None:
    write(job / "pass" / ("x" * (255 - len(TAG)) + ".fq"))


def _pass_is_a_link(job: Path, out: Path) -> None:
    shutil.rmtree(job / "pass")
    (job / "pass").symlink_to(outside(out))


def _pass_is_a_file(job: Path, out: Path) -> None:
    shutil.rmtree(job / "pass")
    write(job / "pass")


def _folder_is_a_link(job: Path, out: Path) -> None:
    job.rename(out / "elsewhere")
    job.symlink_to(out / "elsewhere")


def _folder_is_a_file(job: Path, out: Path) -> None:
    shutil.rmtree(job)
    write(job)


def _folder_gone(job: Path, out: Path) -> None:
    shutil.rmtree(job)


def _too_many(job: Path, out: Path) -> None:
    for n in range(MAX_OUTPUTS + 1):
        (job / "pass" / f"r{n}.fastq").touch()


HOSTILE = [
    pytest.param(_symlink, "pass/'x.fastq' is a symbolic link", id="symlink"),
    pytest.param(_dangling, "pass/'x.fastq' is a symbolic link", id="dangling-symlink"),
    pytest.param(_folder, "pass/'barcode01' is a folder", id="folder"),
    pytest.param(_fifo, "fail/'x.fastq' is not a regular file", id="fifo"),
    pytest.param(_hard_link, "pass/'x.fastq' is a hard link to another file", id="hard-link"),
    pytest.param(_hidden, "pass/'.x.fastq' is a hidden name", id="hidden"),
    pytest.param(_control, "is a name with control characters", id="control-characters"),
    pytest.param(_too_long, "is a name too long to be merged", id="too-long"),
    pytest.param(_pass_is_a_link, f"{FOLDER}/pass is a link or a file", id="pass-is-a-link"),
    pytest.param(_pass_is_a_file, f"{FOLDER}/pass is a link or a file", id="pass-is-a-file"),
    pytest.param(_folder_is_a_link, f"{FOLDER} is a link or a file", id="folder-is-a-link"),
    pytest.param(_folder_is_a_file, f"{FOLDER} is a link or a file", id="folder-is-a-file"),
    pytest.param(_folder_gone, f"its output folder {FOLDER} is gone", id="folder-gone"),
    pytest.param(_too_many, f"holds more than {MAX_OUTPUTS:,} outputs", id="too-many"),
]


@pytest.mark.parametrize(("make", "words"), HOSTILE)
def test_outputs_that_break_the_rules_are_refused_naming_what_was_found(
    output_dir: Path, output_fd: int, make: Callable[[Path, Path], None], words: str
) -> None:
    write(output_dir / FOLDER / "pass" / "good.fastq")
    make(output_dir / FOLDER, output_dir)
    with pytest.raises(Refused) as refused:
        engine_trees.inspect(output_fd, FOLDER, TAG)
    assert words in str(refused.value)
    assert (outside(output_dir) / "precious.fastq").read_text() == "not the engine's\n"


def test_a_merge_leaves_an_entry_that_changed_after_it_was_inspected(
    output_dir: Path, output_fd: int
) -> None:
    job = output_dir / FOLDER
    write(job / "pass" / "a.fastq")
    write(job / "pass" / "b.fastq")
    found = engine_trees.inspect(output_fd, FOLDER, TAG)
    (job / "pass" / "b.fastq").unlink()
    (job / "pass" / "b.fastq").symlink_to(outside(output_dir) / "precious.fastq")
    moved = engine_trees.move(output_fd, FOLDER, found, TAG)
    assert (moved.moved, moved.kept) == (1, ["pass/b.fastq: a symbolic link"])
    assert sorted(os.listdir(output_dir / "pass")) == [f"{TAG}a.fastq"]
    assert (job / "pass" / "b.fastq").is_symlink()


def test_a_merge_never_moves_over_a_name_in_the_results(output_dir: Path, output_fd: int) -> None:
    write(output_dir / FOLDER / "pass" / "a.fastq")
    (output_dir / "pass").mkdir()
    write(output_dir / "pass" / f"{TAG}a.fastq", "somebody else's\n")
    moved = engine_trees.move(output_fd, FOLDER, engine_trees.inspect(output_fd, FOLDER, TAG), TAG)
    assert (moved.moved, moved.kept) == (0, ["pass/a.fastq: its name is taken in the results"])
    assert (output_dir / "pass" / f"{TAG}a.fastq").read_text() == "somebody else's\n"


def test_a_result_folder_swapped_for_a_link_after_inspection_is_not_followed(
    output_dir: Path, output_fd: int
) -> None:
    job = output_dir / FOLDER
    write(job / "pass" / "a.fastq")
    found = engine_trees.inspect(output_fd, FOLDER, TAG)
    (job / "pass").rename(job / "real-pass")
    (job / "pass").symlink_to(outside(output_dir))
    write(outside(output_dir) / "a.fastq", "outside\n")
    with pytest.raises(NotADirectoryError):
        engine_trees.move(output_fd, FOLDER, found, TAG)
    assert (outside(output_dir) / "a.fastq").read_text() == "outside\n"
    assert not (output_dir / "pass" / f"{TAG}a.fastq").exists()


def test_a_link_in_place_of_a_job_folder_is_renamed_and_removed_itself(
    output_dir: Path, output_fd: int
) -> None:
    target = outside(output_dir)
    (output_dir / "TMPOUTPUT_2_e").symlink_to(target)
    assert engine_trees.rename_folder(output_fd, "TMPOUTPUT_2_e", "REFUSEDOUTPUT_2_e")
    assert (output_dir / "REFUSEDOUTPUT_2_e").is_symlink()
    engine_trees.remove_folder(output_fd, "REFUSEDOUTPUT_2_e")
    assert not os.path.lexists(output_dir / "REFUSEDOUTPUT_2_e")
    assert (target / "precious.fastq").read_text() == "not the engine's\n"
    assert not engine_trees.rename_folder(output_fd, "TMPOUTPUT_9_e", "LOGOUTPUT_9_e")


# --- a hostile engine beside a good one -------------------------------------------------


def pod5(path: Path) -> None:
    """A file with both POD5 signatures: complete, as far as reactor looks."""
    path.write_bytes(POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE)


def start(dirs: RunDirs, clock: ManualClock) -> Blocking:
    numbers = itertools.count(1)
    reactor = Reactor(
        dirs.config(report_back_interval=60.0, bench_after=0),
        clock=clock,
        job_id_factory=lambda: str(next(numbers)),
    )
    return started(reactor)


def test_a_refused_job_is_its_engines_trouble_only(run_dirs: RunDirs) -> None:
    """One engine's FIFO among its outputs: its DONE merges nothing, its files go back
    to the front with nothing counted against them, its engine is blamed, the job is held
    with the reason, before and after a restart; the good engine's job beside it merges
    as usual."""
    for n in range(5):
        pod5(run_dirs.input_dir / f"f{n}.pod5")
    clock = ManualClock()
    reactor = start(run_dirs, clock)
    good = reactor.assign("good", 2)
    bad = reactor.assign("bad", 2)
    assert good is not None
    assert bad is not None
    for name in good.files:
        write(reactor.journal.output_folder(good) / "pass" / name.replace(".pod5", ".fastq"))
    os.mkfifo(reactor.journal.output_folder(bad) / "pass" / "reads.fastq")

    refused = reactor.complete(bad.job_id, "DONE")
    merged = reactor.complete(good.job_id, "DONE")

    assert refused.action is CompletionAction.REFUSE
    assert "'reads.fastq' is not a regular file" in refused.reason
    assert merged.action is CompletionAction.MERGE
    out = run_dirs.output_dir
    assert sorted(os.listdir(out / "pass")) == sorted(
        f"{job_tag(good.job_id)}{name.replace('.pod5', '.fastq')}" for name in good.files
    )
    assert (out / f"REFUSEDOUTPUT_{bad.job_id}_bad" / "pass" / "reads.fastq").exists()
    assert not (run_dirs.input_dir / f"ASSIGNED_{bad.job_id}_bad").exists()
    state = reactor.state
    assert list(state.ready_names())[:2] == list(bad.files)  # back in front
    assert all(state.files[name].failures == 0 for name in bad.files)
    assert (state.engines["bad"].jobs_failed, state.engines["bad"].failure_streak) == (1, 1)
    assert state.engines["good"].jobs_done == 1
    assert [(job.job_id, job.state) for job in state.held_jobs()] == [
        (bad.job_id, JobState.REFUSED)
    ]

    restarted = start(run_dirs, clock)
    again = restarted.state
    assert [(job.job_id, job.reason) for job in again.held_jobs()] == [(bad.job_id, refused.reason)]
    assert {name: again.files[name].state for name in good.files} == dict.fromkeys(
        good.files, FileState.DONE
    )
    assert {name: again.files[name].state for name in bad.files} == dict.fromkeys(
        bad.files, FileState.READY
    )
    assert restarted.complete(bad.job_id, "DONE").action is CompletionAction.LATE_NOT_MERGED


def test_a_job_folder_that_cannot_be_read_may_hold_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine's chmod 000 on its folder (root reads anyway, so the refusal is made
    here): recovery must keep such a folder for a person, not remove it nor stop."""
    (tmp_path / "TMPOUTPUT_1_e" / "pass").mkdir(parents=True)
    real_listdir = os.listdir

    def refuse(folder: int | str) -> list[str]:
        if isinstance(folder, int):
            raise PermissionError(13, "Permission denied")
        return real_listdir(folder)

    monkeypatch.setattr(engine_trees.os, "listdir", refuse)
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert engine_trees.holds_anything(parent, "TMPOUTPUT_1_e")
    finally:
        os.close(parent)
