"""A run's folders of .pod5 files: where each name is, moves between folders, links."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.core.minknow import parse_pod5_name
from reactor.disk.inputs import InputFolders


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(path.name)
    return path


def test_a_minknow_runs_folders_with_barcodes_and_links_that_lead_to_each_file(
    tmp_path: Path,
) -> None:
    run = tmp_path / "20261205_1412_1A_PAW00001_aaaaaaaa"
    files = [
        touch(run / "pod5_pass" / "barcode01" / "PAW00001_pass_barcode01_aaaaaaaa_0f1d7e9e_0.pod5"),
        touch(run / "pod5_pass" / "barcode02" / "PAW00001_pass_barcode02_aaaaaaaa_0f1d7e9e_0.pod5"),
        touch(run / "pod5_fail" / "PAW00001_fail_aaaaaaaa_0f1d7e9e_0.pod5"),
    ]
    touch(run / "pod5_pass" / "barcode01" / "deeper" / "PAW00001_aaaaaaaa_0f1d7e9e_9.pod5")
    touch(run / "pod5_pass" / "notes.txt")
    inputs = InputFolders([run / "pod5_pass", run / "pod5_fail"], barcodes=True, within=run)

    found = {entry.name: Path(entry.path) for entry in inputs.scan()}

    assert found == {f.name: f for f in files}, "one level of barcode folders, .pod5 only"
    for path in files:
        assert inputs.path(path.name) == path
    # the links a job folder gets lead to the files, from wherever the jobs folder is
    jobs = run / "reactor" / "batches"
    target = inputs.link_target(jobs)
    job = jobs / "ASSIGNED_1_e"
    job.mkdir(parents=True)
    for path in files:
        (job / path.name).symlink_to(target(path.name))
        assert (job / path.name).read_text() == path.name
        assert not (job / path.name).readlink().is_absolute()
    assert inputs.contains(files[0].resolve())
    assert not inputs.contains(tmp_path.resolve())


def test_a_file_moved_to_another_folder_of_the_run_is_not_gone(tmp_path: Path) -> None:
    pod5 = tmp_path / "pod5"
    skip = tmp_path / "pod5_skip"
    name = "PAW00001_aaaaaaaa_0f1d7e9e_3.pod5"
    touch(pod5 / name)
    inputs = InputFolders([pod5, skip], within=tmp_path)
    assert [e.name for e in inputs.scan()] == [name]  # pod5_skip/ not made yet: skipped
    # MinKNOW's "Stop basecalling" moves it: the new place is seen, then the old one empties
    (pod5 / name).rename(touch(skip / "x").parent / name)
    inputs.seen(name, skip)
    assert not inputs.gone(name, pod5), "it left pod5/, but it is in pod5_skip/"
    assert inputs.path(name) == skip / name
    assert inputs.gone(name, skip)


def test_a_pooled_run_takes_only_its_own_names(tmp_path: Path) -> None:
    pod5 = tmp_path / "pod5"
    mine = touch(pod5 / "PAW00001_aaaaaaaa_0f1d7e9e_0.pod5")
    touch(pod5 / "PAW00002_bbbbbbbb_0f1d7e9e_0.pod5")

    def accept(name: str) -> bool:
        parsed = parse_pod5_name(name)
        return parsed is not None and str(parsed.key) == "PAW00001_aaaaaaaa"

    inputs = InputFolders([pod5], barcodes=True, accept=accept, within=tmp_path)
    assert inputs.names() == {mine.name}


def test_one_flat_folder_keeps_nothing_per_file_and_must_exist(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    touch(folder / "a.pod5")
    inputs = InputFolders.flat(folder)
    assert inputs.names() == {"a.pod5"}
    assert inputs.link_target(folder)("a.pod5") == "../a.pod5"
    inputs.seen("a.pod5", tmp_path)  # one folder: nothing to remember
    assert inputs.path("a.pod5") == folder / "a.pod5"
    with pytest.raises(FileNotFoundError):
        list(InputFolders.flat(tmp_path / "missing").scan())
    with pytest.raises(ValueError, match="at least one folder"):
        InputFolders([])
