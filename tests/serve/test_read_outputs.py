"""The reads of each job's outputs: counted, split into MinKNOW's layout, exact.

An engine here writes what dorado writes: every read it called in one stream (FASTQ with
dorado's header tags, or unaligned BAM), no pass/fail split, some reads split into
subreads that carry their parent in `pi`, some short reads dropped, barcoded reads with
`BC`. The test decides each read itself (its own random draws, kept as the truth) and
recounts everything its own way: the records by parsing the outputs with dnaio and
pysam, N50 by sorting lengths. The service's figures must equal the recount.
"""

from __future__ import annotations

import gzip
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dnaio
import pysam
import pytest

from reactor.core.names import Folder
from reactor.core.state import Job
from reactor.disk.journal import Journal
from reactor.serve.service import Reactor, ReadRules
from reactor.sim.pod5_files import RunIdentity, write_pod5
from tests.support.blocking import Blocking, started
from tests.support.crash_at import CrashAt, SimulatedCrash
from tests.support.runs import ManualClock, RunDirs

RUN = RunIdentity(
    flow_cell_id="PAQ12345",
    protocol_run_id="deadbeef-0000-4000-8000-000000000000",
    acquisition_id="cafebabe" + "0" * 32,
)
NAME = "PAQ12345_{verdict}_{alias}deadbeef_cafebabe_{batch}"
MIN_Q = 10.0


@dataclass(frozen=True)
class Record:
    """One record the engine wrote: the truth the test keeps."""

    read_id: str
    parent: str | None
    qs: float
    sequence: str
    barcode: str | None

    @property
    def counted_as(self) -> str:
        return self.parent or self.read_id

    def header(self) -> str:
        tags = [f"qs:f:{self.qs}", "ch:i:7", "st:Z:2026-12-05T10:00:00.000+00:00", "RG:Z:r_m"]
        if self.parent:
            tags.append(f"pi:Z:{self.parent}")
        if self.barcode:
            tags.append(f"BC:Z:SQK-NBD114-24_{self.barcode}")
        return "\t".join([self.read_id, *tags])


def basecall(read_ids: list[str], rng: random.Random, barcodes: bool = False) -> list[Record]:
    """What a dorado-like engine writes for these reads: some dropped, some split."""
    records = []
    for read_id in read_ids:
        roll = rng.random()
        if roll < 0.1:
            continue  # dropped
        barcode = rng.choice(["barcode01", "barcode02", None]) if barcodes else None
        pieces = 2 if roll > 0.85 else 1
        for piece in range(pieces):
            length = rng.randint(1, 3000)
            sequence = "".join(rng.choice("ACGT") for _ in range(length))
            qs = round(rng.uniform(3, 25), 2)
            if pieces == 1:
                records.append(Record(read_id, None, qs, sequence, barcode))
            else:
                child = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                records.append(Record(child, read_id, qs, sequence, barcode))
            del piece
    return records


def write_fastq(path: Path, records: list[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for r in records:
            out.write(f"@{r.header()}\n{r.sequence}\n+\n{'5' * len(r.sequence)}\n")


def write_bam(path: Path, records: list[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "HD": {"VN": "1.6", "SO": "unknown"},
        "PG": [{"ID": "basecaller", "PN": "dorado", "VN": "1.1.1"}],
        "RG": [{"ID": "r_m", "PU": "PAQ12345"}],
    }
    with pysam.AlignmentFile(str(path), "wb", header=header) as bam:
        for r in records:
            segment = pysam.AlignedSegment(bam.header)
            segment.query_name = r.read_id
            segment.flag = 4
            segment.query_sequence = r.sequence
            segment.query_qualities = pysam.qualitystring_to_array("5" * len(r.sequence))
            tags: list[tuple[str, object, str]] = [("qs", r.qs, "f"), ("RG", "r_m", "Z")]
            if r.parent:
                tags.append(("pi", r.parent, "Z"))
            if r.barcode:
                tags.append(("BC", f"SQK-NBD114-24_{r.barcode}", "Z"))
            segment.set_tags(tags)
            bam.write(segment)


def n50_of(lengths: list[int]) -> int:
    """N50, counted the plain way: lengths sorted longest first, summed until half."""
    total = sum(lengths)
    running = 0
    for length in sorted(lengths, reverse=True):
        running += length
        if running * 2 >= total:
            return length
    return 0


@dataclass
class Run:
    dirs: RunDirs
    clock: ManualClock
    reads: dict[str, list[str]]  # .pod5 name -> read ids
    ids: Callable[[], str]

    def reactor(
        self, checkpoint: Callable[[str], None] | None = None, **settings: object
    ) -> Blocking:
        config = self.dirs.config(output_layout="minknow", min_qscore=MIN_Q, **settings)
        journal = Journal(config.input_dir, config.output_dir, checkpoint or (lambda _s: None))
        return started(Reactor(config, clock=self.clock, journal=journal, job_id_factory=self.ids))

    def engine_folder(self, reactor: Blocking, job: Job) -> Path:
        return self.dirs.output_dir / reactor.journal.output_folder(job, Folder.TMPOUTPUT).name


def make_run(tmp_path: Path, files: int = 4, reads: int = 30) -> Run:
    dirs = RunDirs(tmp_path / "input", tmp_path / "output")
    dirs.input_dir.mkdir()
    dirs.output_dir.mkdir()
    names = {}
    for number in range(files):
        name = f"PAQ12345_deadbeef_cafebabe_{number}.pod5"
        names[name] = write_pod5(dirs.input_dir / name, reads, seed=number + 1, run=RUN)
    numbers = itertools.count(1)
    return Run(dirs, ManualClock(), names, lambda: str(next(numbers)))


def fastq_records(path: Path) -> list[tuple[str, str]]:
    with dnaio.open(path) as reader:
        return [(record.name, record.sequence) for record in reader]


def split_outputs(output_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Relative path of every file of MinKNOW's layout -> its (header, sequence)s."""
    found = {}
    for folder in ("fastq_pass", "fastq_fail"):
        for path in sorted((output_dir / folder).rglob("*.fastq.gz")):
            found[str(path.relative_to(output_dir))] = fastq_records(path)
    for folder in ("bam_pass", "bam_fail"):
        for path in sorted((output_dir / folder).rglob("*.bam")):
            with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
                found[str(path.relative_to(output_dir))] = [
                    (str(s.query_name), str(s.query_sequence)) for s in bam.fetch(until_eof=True)
                ]
    return found


def finish(run: Run, reactor: Blocking, job: Job, rng: random.Random, **kind: bool) -> list[Record]:
    """The engine basecalls its batch into one output, then reports DONE."""
    ids = [read_id for name in sorted(job.files) for read_id in run.reads[name]]
    records = basecall(ids, rng, barcodes=kind.get("barcodes", False))
    folder = run.engine_folder(reactor, job)
    if kind.get("bam"):
        write_bam(folder / "pass" / f"{job.job_id}.bam", records)
    else:
        write_fastq(folder / "pass" / f"{job.job_id}.fastq", records)
    reactor.complete(job.job_id, "DONE")
    return records


def test_reads_split_at_min_qscore_into_minknows_names_and_counted_exactly(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path)
    rng = random.Random(7)
    reactor = run.reactor()
    written: list[Record] = []
    while (job := reactor.assign("gpu", 2)) is not None:
        written += finish(run, reactor, job, rng)
    output = run.dirs.output_dir

    files = split_outputs(output)
    expected_names = {
        f"fastq_{v}/{NAME.format(verdict=v, alias='', batch=b)}.fastq.gz"
        for v in ("pass", "fail")
        for b in (0, 1)
    }
    assert set(files) == expected_names
    truth = {r.read_id: r for r in written}
    for path, records in files.items():
        for header, sequence in records:
            record = truth[header.split("\t")[0]]
            assert header == record.header() and sequence == record.sequence
            assert ("fastq_pass" in path) == (record.qs >= MIN_Q), (path, record.qs)
    found = sorted(h.split("\t")[0] for records in files.values() for h, _ in records)
    assert found == sorted(truth), "every record the engines wrote, once"
    # the engine's own outputs went (their reads are in the split files), its folder stays
    for logs in output.glob("LOGOUTPUT_*"):
        assert list((logs / "pass").iterdir()) == []
    assert not list((output / ".reactor" / "split").iterdir())

    view = reactor.status()["reads"]
    lengths = [len(r.sequence) for r in written]
    passed = [r for r in written if r.qs >= MIN_Q]
    all_ids = {read_id for ids in run.reads.values() for read_id in ids}
    parents = {r.counted_as for r in written}
    assert (view["reads"], view["bases"]) == (len(written), sum(lengths))
    assert (view["pass_reads"], view["pass_bases"]) == (
        len(passed),
        sum(len(r.sequence) for r in passed),
    )
    assert view["n50"] == n50_of(lengths)
    assert view["min_qscore"] == MIN_Q
    assert sum(view["mean_q"].values()) == len(written)
    assert view["accounting"] == {
        "pod5_reads": len(all_ids),
        "records": len(written),
        "counted": len(parents),
        "subreads": sum(1 for r in written if r.parent),
        "dropped": len(all_ids - parents),
        "unknown": 0,
        "duplicates": 0,
        "exactly_once": True,
    }
    assert view["accounting"]["subreads"] > 0 and view["accounting"]["dropped"] > 0

    # a restart keeps the figures (from the records), and the batch numbers go on
    reactor.close()
    for number in (4, 5):
        name = f"PAQ12345_deadbeef_cafebabe_{number}.pod5"
        run.reads[name] = write_pod5(run.dirs.input_dir / name, 10, seed=number + 1, run=RUN)
    again = run.reactor()
    assert again.status()["reads"] == view
    while (job := again.assign("gpu", 1)) is not None:
        written += finish(run, again, job, rng)
    batches = Counter(int(path.rsplit("_", 1)[1].split(".")[0]) for path in split_outputs(output))
    assert set(batches) == {0, 1, 2, 3}, "numbers unique in the run, across the restart"
    assert again.status()["reads"]["reads"] == len(written)


def test_barcoded_reads_go_to_their_alias_folders(tmp_path: Path) -> None:
    run = make_run(tmp_path, files=2)
    reactor = run.reactor()
    # as host mode says from the run's kit and sample sheet
    rules = ReadRules(MIN_Q, barcoded=True, aliases={"barcode01": "patient_a"})
    reactor.reactor.read_rules = lambda: rules
    job = reactor.assign("gpu", 2)
    assert job is not None
    written = finish(run, reactor, job, random.Random(3), barcodes=True)
    files = split_outputs(run.dirs.output_dir)
    folders = {path.rsplit("/", 1)[0] for path in files}
    assert folders <= {
        f"fastq_{v}/{a}"
        for v in ("pass", "fail")
        for a in ("patient_a", "barcode02", "unclassified")
    }
    assert "fastq_pass/patient_a" in folders and "fastq_pass/unclassified" in folders
    for path, records in files.items():
        alias = path.split("/")[1]
        assert f"_{alias}_deadbeef_" in path
        for header, _ in records:
            record = next(r for r in written if r.read_id == header.split("\t")[0])
            wanted = {"barcode01": "patient_a", None: "unclassified"}.get(
                record.barcode, record.barcode
            )
            assert alias == wanted
    view = reactor.status()["reads"]
    assert view["barcodes"]["patient_a"]["reads"] == sum(
        1 for r in written if r.barcode == "barcode01"
    )


@pytest.mark.parametrize("output_format", ["auto", "fastq.gz", "both"])
def test_bam_outputs_split_into_bam_or_fastq_with_their_provenance(
    tmp_path: Path, output_format: str
) -> None:
    run = make_run(tmp_path, files=2)
    reactor = run.reactor(output_format=output_format)
    job = reactor.assign("gpu", 2)
    assert job is not None
    written = finish(run, reactor, job, random.Random(5), bam=True)
    files = split_outputs(run.dirs.output_dir)
    kinds = {path.split("_")[0] for path in files}
    assert (
        kinds == {"auto": {"bam"}, "fastq.gz": {"fastq"}, "both": {"bam", "fastq"}}[output_format]
    )
    for kind in kinds:
        got = sorted(
            (h.split("\t")[0], s)
            for path, rs in files.items()
            if path.startswith(kind)
            for h, s in rs
        )
        assert got == sorted((r.read_id, r.sequence) for r in written)
    if "bam" in kinds:
        path = next(run.dirs.output_dir / p for p in files if p.endswith(".bam"))
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
            programs = bam.header.to_dict()["PG"]
        assert [p["ID"] for p in programs] == ["basecaller", "reactor"]
        assert programs[1]["PP"] == "basecaller"
        assert f"job={job.job_id}" in programs[1]["DS"] and "engine=gpu" in programs[1]["DS"]
    if "fastq" in kinds:  # from BAM: dorado's tags in the header, qs as a float
        header = next(h for p, rs in files.items() if p.startswith("fastq") for h, _ in rs)
        assert "\tqs:f:" in header and "\tRG:Z:r_m" in header


def test_outputs_that_are_not_what_their_name_says_are_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, files=1)
    reactor = run.reactor()
    job = reactor.assign("gpu", 1)
    assert job is not None
    folder = run.engine_folder(reactor, job) / "pass"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calls.fastq").write_bytes(gzip.compress(b"not a fastq\n") + b"\x00garbage")
    reactor.complete(job.job_id, "DONE")
    assert reactor.state.jobs[job.job_id].reason.startswith("its reads could not be split")
    assert reactor.count_fields()["ready"] == 1, "its file back in the queue"
    assert split_outputs(run.dirs.output_dir) == {}
    assert reactor.status()["reads"]["reads"] == 0


@pytest.mark.parametrize("step", ["merge:decided", "merge:output_moved", "merge:logged"])
def test_a_crash_mid_merge_counts_each_read_once(tmp_path: Path, step: str) -> None:
    run = make_run(tmp_path, files=3)
    rng = random.Random(11)
    crash = CrashAt(step)
    reactor = run.reactor(checkpoint=crash)
    first = reactor.assign("gpu", 3)
    assert first is not None
    ids = [read_id for name in sorted(first.files) for read_id in run.reads[name]]
    written = basecall(ids, rng)
    write_fastq(run.engine_folder(reactor, first) / "pass" / "calls.fastq", written)
    with pytest.raises(SimulatedCrash):
        reactor.complete(first.job_id, "DONE")
    reactor.close()
    again = run.reactor()  # the decision was recorded: recovery finishes the merge
    files = split_outputs(run.dirs.output_dir)
    found = sorted(h.split("\t")[0] for rs in files.values() for h, _ in rs)
    assert found == sorted(r.read_id for r in written)
    view = again.status()["reads"]
    assert view["reads"] == len(written)
    assert view["bases"] == sum(len(r.sequence) for r in written)
    assert again.assign("gpu", 3) is None, "nothing basecalled twice"


def test_a_crash_before_the_decision_leaves_nothing_and_the_batch_is_done_again(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path, files=2)
    reactor = run.reactor()
    job = reactor.assign("gpu", 2)
    assert job is not None
    # the split was written, the process died before the record: nothing counts
    stage = run.dirs.output_dir / ".reactor" / "split" / job.job_id
    stage.mkdir(parents=True)
    (stage / "PAQ12345_pass_deadbeef_cafebabe_0.fastq.gz").write_bytes(b"half")
    reactor.close()
    again = run.reactor()
    assert not stage.exists(), "what a crash left of a split is removed"
    assert again.status()["reads"]["reads"] == 0
    assert split_outputs(run.dirs.output_dir) == {}


def test_a_split_file_whose_name_is_taken_is_kept_with_the_job_never_lost(
    tmp_path: Path,
) -> None:
    """A name in the results taken by someone else (MinKNOW's own outputs in the same
    folder, say) after the service started: the split file stays with the job's
    leftovers, and the engine's own outputs are not removed."""
    run = make_run(tmp_path, files=2)
    reactor = run.reactor()
    job = reactor.assign("gpu", 2)
    assert job is not None
    name = NAME.format(verdict="fail", alias="", batch=0) + ".fastq.gz"
    taken = run.dirs.output_dir / "fastq_fail" / name
    taken.parent.mkdir()
    taken.write_bytes(b"someone else's")
    written = finish(run, reactor, job, random.Random(2))
    assert taken.read_bytes() == b"someone else's"
    logs = run.dirs.output_dir / reactor.journal.output_folder(job, Folder.LOGOUTPUT).name
    kept = logs / "not_merged" / taken.name
    assert kept.exists(), "the split file that could not be merged, kept"
    assert (logs / "pass" / f"{job.job_id}.fastq").exists(), "and the engine's own output"
    passed = run.dirs.output_dir / "fastq_pass" / name.replace("_fail_", "_pass_")
    held = fastq_records(kept) + fastq_records(passed)
    assert sorted(h.split("\t")[0] for h, _ in held) == sorted(r.read_id for r in written)
    assert not list((run.dirs.output_dir / ".reactor" / "split").iterdir())


def test_batch_numbers_never_reuse_a_name_in_the_results_even_without_records(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path, files=2)
    reactor = run.reactor()
    job = reactor.assign("gpu", 1)
    assert job is not None
    finish(run, reactor, job, random.Random(4))
    reactor.close()
    for record in (run.dirs.output_dir / ".reactor" / "jobs").iterdir():
        record.write_text("not a record")  # lost: its file is basecalled again
    again = run.reactor()
    while (job := again.assign("gpu", 1)) is not None:
        finish(run, again, job, random.Random(5))
    names = list(split_outputs(run.dirs.output_dir))
    assert len(names) == len(set(names))
    assert {int(n.rsplit("_", 1)[1].split(".")[0]) for n in names} == {0, 1, 2}


@pytest.mark.parametrize(
    ("what", "content"),
    [
        ("an aligned BAM", "aligned"),
        ("CRAM named .bam", "cram"),
        ("a BAM of another shape", "text"),
    ],
)
def test_outputs_the_reads_cannot_be_split_from_are_refused_in_time(
    tmp_path: Path, what: str, content: str
) -> None:
    run = make_run(tmp_path, files=1)
    reactor = run.reactor()
    job = reactor.assign("gpu", 1)
    assert job is not None
    out = run.engine_folder(reactor, job) / "pass" / "calls.bam"
    out.parent.mkdir(parents=True, exist_ok=True)
    if content == "aligned":
        header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr1", "LN": 1000}]}
        with pysam.AlignmentFile(str(out), "wb", header=header) as bam:
            segment = pysam.AlignedSegment(bam.header)
            segment.query_name, segment.query_sequence = "r", "ACGT"
            segment.reference_id, segment.reference_start, segment.cigarstring = 0, 5, "4M"
            bam.write(segment)
    elif content == "cram":
        out.write_bytes(b"CRAM\x03\x00" + b"\x00" * 100)
    else:
        out.write_text("@HD\tVN:1.6\nr\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t5555\n")
    reactor.complete(job.job_id, "DONE")
    reason = reactor.state.jobs[job.job_id].reason
    assert reason.startswith("its reads could not be split"), (what, reason)
    assert reactor.count_fields()["ready"] == 1
    assert not (run.dirs.output_dir / ".reactor" / "split" / job.job_id).exists()


def test_a_barcode_that_cannot_be_a_folder_goes_to_unclassified(tmp_path: Path) -> None:
    run = make_run(tmp_path, files=1)
    reactor = run.reactor()
    reactor.reactor.read_rules = lambda: ReadRules(MIN_Q, barcoded=True)
    job = reactor.assign("gpu", 1)
    assert job is not None
    (read_id, *_rest) = run.reads[next(iter(job.files))]
    out = run.engine_folder(reactor, job) / "pass" / "calls.fastq"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"@{read_id}\tqs:f:20\tBC:Z:SQK-X_..\nACGT\n+\nIIII\n")
    reactor.complete(job.job_id, "DONE")
    found = [p.relative_to(run.dirs.output_dir) for p in run.dirs.output_dir.rglob("*.gz")]
    assert [p.parts[:2] for p in found] == [("fastq_pass", "unclassified")]
