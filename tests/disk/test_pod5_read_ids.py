"""The read ids of a job's `.pod5` files, the short way (`_read_table_ids`: the read
table's `read_id` column only) against the ids the pod5 library wrote, and what happens
when a file cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.disk.read_files import _read_table_ids, pod5_read_ids
from tests.support.pod5files import write_corrupt_pod5, write_pod5


@pytest.mark.parametrize("reads", [1, 3, 1500])
def test_the_short_way_reads_every_id_in_file_order(tmp_path: Path, reads: int) -> None:
    # 1,500 reads: more than one record batch of the read table.
    written = write_pod5(tmp_path / "a.pod5", reads, seed=reads)
    assert _read_table_ids(str(tmp_path / "a.pod5")) == written


def test_a_job_of_several_files_has_the_union_of_their_ids(tmp_path: Path) -> None:
    paths, written = [], set()
    for k in range(4):
        path = tmp_path / f"f{k}.pod5"
        written.update(write_pod5(path, 5, seed=100 + k))
        paths.append(str(path))
    assert pod5_read_ids(tuple(paths)) == written
    assert len(written) == 20


def test_a_damaged_file_raises_both_ways(tmp_path: Path) -> None:
    # Complete to the service (both signatures), garbage to any reader: the short way
    # fails, pod5's own reader is asked and fails too, and the caller hears of it.
    bad = tmp_path / "bad.pod5"
    write_corrupt_pod5(bad)
    with pytest.raises((OSError, RuntimeError)):  # pod5's footer reader raises RuntimeError
        _read_table_ids(str(bad))
    with pytest.raises((OSError, RuntimeError)):
        pod5_read_ids((str(bad),))


def test_a_file_cut_short_raises(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pod5"
    write_pod5(whole, 3, seed=7)
    cut = tmp_path / "cut.pod5"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2] + data[-24:])  # both ends kept, middle gone
    with pytest.raises((OSError, RuntimeError)):
        pod5_read_ids((str(cut),))
