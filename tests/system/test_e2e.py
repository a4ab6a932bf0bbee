"""End to end: `reactor serve` as a real process, 8 seed-protocol engines as real processes,
2,000 real `.pod5` files arriving while the run goes on; the second run `kill -9`s the
server half-way and restarts it. Both must end with every read id in pass/+fail/
exactly once."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pod5files import write_pod5, write_pod5_in_pieces
from tests.support.records import job_records
from tests.support.served import SeedEngineRun, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N_FILES = 2000
READS_PER_FILE = 3
N_ENGINES = 8


@dataclass(frozen=True)
class Corpus:
    folder: Path
    read_ids: dict[str, list[str]]  # file name -> read ids


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """2,000 real .pod5 files (3 reads each), written once for this module."""
    folder = tmp_path_factory.mktemp("corpus")
    read_ids = {}
    for i in range(N_FILES):
        name = f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5"
        read_ids[name] = write_pod5(folder / name, READS_PER_FILE, seed=i)
    return Corpus(folder, read_ids)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[SeedEngineRun]:
    the_run = SeedEngineRun(tmp_path)
    yield the_run
    the_run.stop()


def arrive(corpus: Corpus, run: SeedEngineRun, names: list[str]) -> None:
    """Files appear as MinKNOW's do: most renamed in whole, some written in pieces."""
    for i, name in enumerate(names):
        if i % 50 == 0:
            for _ in write_pod5_in_pieces(
                run.input_dir / name, READS_PER_FILE, 3, seed=_seed(name)
            ):
                pass
        else:
            staged = run.input_dir.parent / name
            shutil.copyfile(corpus.folder / name, staged)
            staged.rename(run.input_dir / name)


def _seed(name: str) -> int:
    return int(name.removesuffix(".pod5").rsplit("_", 1)[1])


def fastq_read_ids(output_dir: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for kind in ("pass", "fail"):
        for path in (output_dir / kind).iterdir():
            lines = path.read_text().splitlines()
            ids.update(line[1:] for line in lines[0::4])
    return ids


def assert_exactly_once(corpus: Corpus, run: SeedEngineRun) -> None:
    expected = Counter(rid for ids in corpus.read_ids.values() for rid in ids)
    found = fastq_read_ids(run.output_dir)
    missing = expected - found
    duplicated = {rid: n for rid, n in found.items() if n > 1}
    assert not missing, f"{len(missing)} reads lost"
    assert not duplicated, f"{len(duplicated)} reads basecalled more than once"
    assert found == expected
    # and each .pod5 was merged by exactly one job
    merged: Counter[str] = Counter()
    for record in job_records(run.output_dir):
        if record["state"] == "done":
            merged.update(record["files"])
    assert merged == Counter(dict.fromkeys(corpus.read_ids, 1))
    assert not list(run.input_dir.glob("ASSIGNED_*"))


def test_seed_protocol_engines_basecall_a_live_run_exactly_once(
    corpus: Corpus, run: SeedEngineRun
) -> None:
    """8 seed-protocol engines, 2,000 files arriving during the run: every read once."""
    names = sorted(corpus.read_ids, key=_seed)
    run.start_server()
    run.start_engines(N_ENGINES)
    for start in range(0, N_FILES, 200):
        arrive(corpus, run, names[start : start + 200])
    wait_for(lambda: run.files_done() == N_FILES, 240, "all files to be done")
    status = run.status()
    assert status["files"]["ready"] == status["files"]["assigned"] == 0
    assert len(status["engines"]) == N_ENGINES
    assert run.stop() == 0, "SIGTERM must end the server cleanly"
    assert_exactly_once(corpus, run)


def test_kill_9_and_restart_mid_run_loses_and_duplicates_nothing(
    corpus: Corpus, run: SeedEngineRun
) -> None:
    """The server is SIGKILLed half-way and restarted: nothing lost, nothing duplicated."""
    names = sorted(corpus.read_ids, key=_seed)
    run.start_server()
    run.start_engines(N_ENGINES)
    arrive(corpus, run, names[: N_FILES // 2])
    wait_for(lambda: run.files_done() >= N_FILES // 4, 240, "a quarter of the files done")
    assert run.server is not None
    run.server.kill()  # kill -9, wherever it is
    run.server.wait(timeout=10)
    arrive(corpus, run, names[N_FILES // 2 :])  # files keep arriving while it is down
    run.start_server()
    wait_for(lambda: run.files_done() == N_FILES, 240, "all files to be done after restart")
    assert run.stop() == 0
    assert_exactly_once(corpus, run)
