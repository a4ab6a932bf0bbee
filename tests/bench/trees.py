"""Run folders of many `.pod5` files, built once and cached between runs.

A tree of N files is one INPUTDIR with N hardlinks of one small real `.pod5` (written by
`reactor.sim.pod5_files`; hardlinks are the fastest way to make 10^6 files, and the service
reads only names and signature bytes, so copies of one file are as good as distinct
files). ext4 allows 65,000 links per inode, so a new source file is written every
LINKS_PER_SOURCE links. Two OUTPUTDIRs share the INPUTDIR:

- `output-0`: nothing done;
- `output-50`: half the files done, by the seed's rule that recovery honours (a FASTQ in
  `pass/` whose stem is the `.pod5`'s stem; hardlinks of one small FASTQ).

Both hold the same jobs in flight: `jobs` jobs of FILES_PER_JOB files each, created by
`reactor.disk.journal.Journal.assign` itself (ASSIGNED_ links in INPUTDIR, TMPOUTPUT in
OUTPUTDIR, the job's record in OUTPUTDIR/.reactor/jobs), so the layout is exactly what a
running service leaves behind. `output-50` gets a copy of the same state folder.

A tree is reused when its `tree.json` matches what is asked for; `fresh=True` rebuilds it.
A tree built before `output-50` had the records (so that every restart on it took the run
over from its job folders, `reactor.disk.migration`) gets them when it is reused. Trials
must leave it as they found it: `clean_input()` removes job folders a trial made, and
`touch_leases()` renews the jobs' lease marks (their records' mtimes) so that no restart
expires them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reactor.core.names import is_pod5_name, parse_job_folder
from reactor.core.state import Job, JobState
from reactor.disk.journal import Journal, record_name
from reactor.disk.state_dir import JOBS, STATE_NAME
from reactor.serve.service import new_job_id
from reactor.sim.pod5_files import pod5_bytes

TREE_FORMAT = 1
LINKS_PER_SOURCE = 60_000  # under ext4's 65,000 links per inode
FILES_PER_JOB = 2
FASTQ = b"@read\nACGT\n+\nIIII\n"


def pod5_name(number: int) -> str:
    return f"PAK00000_pass_bench000_0123abcd_{number}.pod5"


class _Linker:
    """Hardlinks of one source file, starting a new source before the link limit."""

    def __init__(self, sources: Path, kind: str, content: bytes) -> None:
        self.sources = sources
        self.kind = kind
        self.content = content
        self.made = 0
        self.source = sources

    def link(self, target: Path) -> None:
        if self.made % LINKS_PER_SOURCE == 0:
            self.source = self.sources / f"{self.kind}-{self.made // LINKS_PER_SOURCE}"
            self.source.write_bytes(self.content)
        os.link(self.source, target)
        self.made += 1


@dataclass(frozen=True)
class Tree:
    root: Path
    files: int
    jobs: int

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    def output_dir(self, done_percent: int) -> Path:
        return self.root / f"output-{done_percent}"

    @property
    def job_folders(self) -> list[str]:
        data = json.loads((self.root / "tree.json").read_text())
        folders: list[str] = data["job_folders"]
        return folders

    def touch_leases(self) -> None:
        """A keepalive's mark for every job in flight (the mtime of its record, which
        recovery reads as its last sign of life): a restart counts its lease from now."""
        for name in self.job_folders:
            folder = parse_job_folder(name)
            assert folder is not None, name
            for done in (0, 50):
                os.utime(self.output_dir(done) / STATE_NAME / JOBS / record_name(folder.job_id))

    def clean_input(self) -> int:
        """Remove what trials left in INPUTDIR (their jobs' folders); how many."""
        keep = set(self.job_folders)
        removed = 0
        for entry in os.scandir(self.input_dir):
            if entry.name not in keep and not is_pod5_name(entry.name):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        missing = [name for name in keep if not (self.input_dir / name).is_dir()]
        if missing:
            msg = f"{self.root} lost job folders ({missing[0]}, ...): rerun with --fresh"
            raise RuntimeError(msg)
        return removed

    def fresh_output(self, target: Path) -> Path:
        """A copy of `output-0` (jobs in flight, nothing done) that a trial may change."""
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.output_dir(0), target, symlinks=True)
        return target


def build(data_dir: Path, files: int, jobs: int, *, fresh: bool = False) -> Tree:
    """The tree of `files` files and `jobs` jobs in flight, built unless cached."""
    jobs = max(0, min(jobs, files // (4 * FILES_PER_JOB)))
    tree = Tree(data_dir / f"files-{files}", files, jobs)
    marker = tree.root / "tree.json"
    if not fresh and marker.exists():
        data = json.loads(marker.read_text())
        if data.get("format") == TREE_FORMAT and (data["files"], data["jobs"]) == (files, jobs):
            _copy_records(tree)  # a tree built before output-50 had them
            return tree
    shutil.rmtree(tree.root, ignore_errors=True)
    began = time.perf_counter()
    sources = tree.root / "sources"
    for folder in (sources, tree.input_dir):
        folder.mkdir(parents=True)
    for done in (0, 50):
        for kind in ("pass", "fail"):
            (tree.output_dir(done) / kind).mkdir(parents=True)
    pod5 = _Linker(sources, "pod5", pod5_bytes(2, seed=0))
    for number in range(files):
        pod5.link(tree.input_dir / pod5_name(number))
        _progress(number, files, "input files")
    fastq = _Linker(sources, "fastq", FASTQ)
    passed = tree.output_dir(50) / "pass"
    for number in range(files // 2):
        fastq.link(passed / f"{pod5_name(number).removesuffix('.pod5')}.fastq")
        _progress(number, files // 2, "outputs in pass/")
    folders = _jobs_in_flight(tree)
    marker.write_text(
        json.dumps({"format": TREE_FORMAT, "files": files, "jobs": jobs, "job_folders": folders})
    )
    print(
        f"  built {tree.root} ({files:,} files) in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    return tree


def first_job(engine_id: str, names: list[str], at: float = 0.0) -> Job:
    """A new job handing `names` to `engine_id` for the first time at `at`, with an
    hour's lease (no lease runs out during a trial)."""
    return Job(
        job_id=new_job_id(),
        engine_id=engine_id,
        files=dict.fromkeys(names, 1),
        state=JobState.ASSIGNED,
        assigned_at=at,
        last_seen=at,
        lease_s=3600.0,
    )


def _jobs_in_flight(tree: Tree) -> list[str]:
    """`jobs` jobs over files of the half that is never done, made by the journal."""
    journal = Journal(tree.input_dir, tree.output_dir(0))
    first = tree.files // 2
    folders = []
    for k in range(tree.jobs):
        names = [pod5_name(first + k * FILES_PER_JOB + j) for j in range(FILES_PER_JOB)]
        job = first_job(f"bench-gpu{k % 16:02d}", names)
        journal.assign(job)
        folders.append(journal.input_folder(job).name)
        output = journal.output_folder(job)
        shutil.copytree(output, tree.output_dir(50) / output.name, symlinks=True)
    _copy_records(tree)
    return folders


def _copy_records(tree: Tree) -> None:
    """`output-50` gets the jobs' records, as `output-0` has them (mode 0700 kept)."""
    source, records = (tree.output_dir(done) / STATE_NAME for done in (0, 50))
    if source.is_dir() and not records.exists():
        shutil.copytree(source, records, symlinks=True)


def _progress(number: int, total: int, what: str) -> None:
    if total >= 200_000 and number and number % 200_000 == 0:
        print(f"  {number:,} of {total:,} {what}", file=sys.stderr)


def empty_tree(data_dir: Path) -> Tree:
    """A run folder with no files at all (the memory baseline)."""
    return build(data_dir, 0, 0)
