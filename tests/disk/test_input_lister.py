"""The child that looks at INPUTDIR's files for the start-up scan (reactor.disk.input_lister),
run as the service runs it, its pipe read here and every entry recounted from the folder."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.core.names import POD5_SIGNATURE, output_stem, output_stems
from reactor.disk import input_lister
from reactor.disk.input_lister import (
    COMPLETE,
    DONE,
    HEADER,
    INCOMPLETE,
    OTHER,
    OTHER_FOLDER,
    SYMLINK,
    _Chunk,
    body_size,
    command,
    decode,
    spawn,
)
from reactor.disk.lister_report import ReportFailed, read_report
from tests.support.served import wait_for

WHOLE = POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE


def run_child(input_dir: Path, output_dir: Path) -> tuple[int, list[tuple[str, int, float]], int]:
    """(exit code, every entry reported, the largest chunk in bytes); asserts the end
    marker closes the output and nothing follows it."""
    done = subprocess.run(
        command(input_dir, output_dir), capture_output=True, timeout=60, check=False
    )
    entries, largest, ended = parse(done.stdout)
    assert ended
    return done.returncode, entries, largest


def parse(out: bytes) -> tuple[list[tuple[str, int, float]], int, bool]:
    """(every entry, the largest chunk in bytes, whether the end marker closed it);
    asserts nothing follows the end marker."""
    position, largest = 0, 0
    entries: list[tuple[str, int, float]] = []
    while position < len(out):
        count, names_bytes = HEADER.unpack_from(out, position)
        position += HEADER.size
        if count == 0:
            assert position == len(out), "bytes after the end"
            return entries, largest, True
        size = body_size(count, names_bytes)
        largest = max(largest, HEADER.size + size)
        listed = decode(count, out[position : position + size])
        position += size
        entries += list(zip(listed.names, listed.kinds, listed.mtimes, strict=True))
    return entries, largest, False


def expected_kind(folder: Path, name: str, stems: set[str]) -> int | None:
    """What the child must say of `name`, worked out here from the file itself."""
    path = folder / name
    visible_pod5 = name.endswith(".pod5") and not name.startswith(".") and len(name) > 5
    if not visible_pod5:
        return OTHER_FOLDER if path.is_dir() and not path.is_symlink() else OTHER
    if name[:-5] in stems:  # a symlink too: done before it could be refused
        return DONE
    if path.is_symlink():  # never opened by the child: the service decides
        return SYMLINK
    if not path.is_file():
        return INCOMPLETE
    data = path.read_bytes()
    whole = len(data) >= 16 and data[:8] == POD5_SIGNATURE and data[-8:] == POD5_SIGNATURE
    return COMPLETE if whole else INCOMPLETE


def test_every_entry_is_reported_once_with_what_the_file_is(tmp_path: Path) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for results in ("pass", "fail"):
        (outputs / results).mkdir(parents=True)
    names = [f"PAK_pass_{n}.pod5" for n in range(300)]  # every last digit: both lookers
    for number, name in enumerate(names):
        content = WHOLE if number % 3 else WHOLE[:-1]  # every third still being written
        (inputs / name).write_bytes(content)
    (inputs / "short.pod5").write_bytes(POD5_SIGNATURE)
    (inputs / "folder.pod5").mkdir()
    os.mkfifo(inputs / "fifo.pod5")  # opened without blocking, never read
    (inputs / "link.pod5").symlink_to(inputs / names[1])
    (inputs / "done-link.pod5").symlink_to(inputs / names[2])
    (inputs / ".hidden.pod5").write_bytes(WHOLE)
    (inputs / "notes.txt").write_text("x")
    (inputs / "ASSIGNED_1_e1").mkdir()
    (outputs / "pass" / f"{names[4][:-5]}.fastq").write_text("")
    (outputs / "fail" / f"{names[5][:-5]}.fastq.gz").write_text("")
    (outputs / "pass" / f"job_id_7_{names[7][:-5]}.bam").write_text("")
    (outputs / "pass" / "done-link.fastq").write_text("")
    stems = {names[4][:-5], names[5][:-5], names[7][:-5], "done-link"}

    code, entries, largest = run_child(inputs, outputs)

    assert code == 0
    reported = [name for name, _, _ in entries]
    assert sorted(reported) == sorted(os.listdir(inputs))  # each entry, once
    assert largest <= select.PIPE_BUF  # written whole: the lookers share the pipe
    for name, kind, mtime in entries:
        assert kind == expected_kind(inputs, name, stems), name
        if kind in (COMPLETE, INCOMPLETE) and (inputs / name).is_file():
            assert mtime == (inputs / name).stat().st_mtime, name
    kinds = {name: kind for name, kind, _ in entries}
    # 200 whole files (every third is not), 3 of them done by an output
    assert sum(kind == COMPLETE for kind in kinds.values()) == 200 - 3
    assert (kinds["link.pod5"], kinds["done-link.pod5"]) == (SYMLINK, DONE)


def test_a_folder_that_cannot_be_listed_fails_the_child(tmp_path: Path) -> None:
    """No end marker, an exit code, the cause on stderr (each looker says why): the
    service then scans by itself."""
    done = subprocess.run(
        command(tmp_path / "missing", tmp_path), capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert HEADER.pack(0, 0) not in done.stdout
    assert b"FileNotFoundError" in done.stderr


def test_names_that_are_not_utf8_come_through(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    name = os.fsdecode(b"caf\xe9_1.pod5")  # latin-1 bytes on disk
    (inputs / name).write_bytes(WHOLE)
    code, entries, _ = run_child(inputs, tmp_path)
    assert code == 0
    assert [(entry[0], entry[1]) for entry in entries] == [(name, COMPLETE)]


@given(st.lists(st.text(min_size=1, max_size=12), max_size=8), st.integers(1, 6))
def test_each_pod5_name_has_one_looker(stems: list[str], lookers: int) -> None:
    for stem in stems:
        assert 0 <= input_lister.share(f"{stem}.pod5", lookers) < lookers


_ODD = ["\u017f", "\u00e9"]  # a long s (its upper case is S), an e acute
_PARTS = st.sampled_from(
    ["a", "job_id_", "12", "_", ".", "fastq", "FASTQ", "fq", "gz", "GZ", "bam", "Bam", *_ODD]
)


@given(st.lists(st.lists(_PARTS, max_size=7).map("".join), max_size=30))
def test_output_stems_is_output_stem_of_each_name(names: list[str]) -> None:
    assert output_stems(names) == {s for name in names if (s := output_stem(name)) is not None}


def started_watching(process: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) for the child's first bytes: its watch began before its listing."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], 30.0)
    assert readable, "the child wrote nothing in 30 s"


def test_what_changes_before_the_service_watches_is_reported(tmp_path: Path) -> None:
    """Started before the service's watch, the child watches INPUTDIR, pass/ and fail/
    itself until its stdin ends, then reports every name that changed meanwhile
    (created, deleted, completed, renamed away and in); the looks (what is done by its
    list of the outputs too) and the end marker go to stdout as always."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for results in ("pass", "fail"):
        (outputs / results).mkdir(parents=True)
    for name in ("a.pod5", "b.pod5", "kept.pod5", "done.pod5"):
        (inputs / name).write_bytes(WHOLE)
    (inputs / "half.pod5").write_bytes(WHOLE[:-8])
    (outputs / "pass" / "done.fastq").write_text("")
    (outputs / "fail" / "job_id_7_other.bam").write_text("")
    process, report = spawn(inputs, outputs, until_watched=True)
    assert report is not None
    started_watching(process)
    (inputs / "new.pod5").write_bytes(WHOLE)
    (inputs / "a.pod5").unlink()
    with (inputs / "half.pod5").open("ab") as half:
        half.write(POD5_SIGNATURE)
    (inputs / "b.pod5").rename(inputs / "c.pod5")
    (inputs / "notes.txt").write_text("not a pod5: not reported")
    (outputs / "pass" / "kept.fastq").write_text("")
    out, err = process.communicate(timeout=60)  # closes stdin: "the watch is up"
    said = read_report(report, 30.0)
    os.close(report)

    assert process.returncode == 0, err
    entries, _, ended = parse(out)
    assert ended
    assert sorted(said.changed_inputs) == ["a.pod5", "b.pod5", "c.pod5", "half.pod5", "new.pod5"]
    assert said.changed_outputs == ["kept.fastq"]
    kinds = {name: kind for name, kind, _ in entries}
    assert {"kept.pod5", "half.pod5", "done.pod5"} <= set(kinds)  # listed: there all along
    assert kinds["done.pod5"] == DONE


# The real child, with a change made right after each of its listings (the outputs',
# then a looker's of INPUTDIR): caught only if each folder was watched before it was
# listed.
_CHANGING_AFTER_EACH_LISTING = """
import os, sys
from reactor.disk import input_lister as lister
listed, looked = lister.done_stems, lister._look
def done_stems(folder):
    stems = listed(folder)
    open(os.path.join(folder, "pass", "late.fastq"), "w").close()
    return stems
def _look(folder, stems, number, lookers, out):
    looked(folder, stems, number, lookers, out)
    if number == 0:
        open(os.path.join(folder, "late.pod5"), "wb").close()
lister.done_stems, lister._look = done_stems, _look
sys.exit(lister.main(sys.argv[1:]))
"""


def test_each_folder_is_watched_before_it_is_listed(tmp_path: Path) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for results in ("pass", "fail"):
        (outputs / results).mkdir(parents=True)
    (inputs / "a.pod5").write_bytes(WHOLE)
    program = [sys.executable, "-c", _CHANGING_AFTER_EACH_LISTING, str(inputs), str(outputs)]
    process, report = spawn(inputs, outputs, until_watched=True, program=program)
    assert report is not None
    try:
        wait_for((inputs / "late.pod5").exists, 30.0, "the looker's change")
        _out, err = process.communicate(timeout=60)
        said = read_report(report, 30.0)
    finally:
        os.close(report)
    assert process.returncode == 0, err
    assert said.changed_outputs == ["late.fastq"]  # pass/ watched before it was listed
    assert said.changed_inputs == ["late.pod5"]  # INPUTDIR watched before the looks


def test_a_watch_that_may_have_missed_changes_fails_the_child(tmp_path: Path) -> None:
    """INPUTDIR moved away and back while the child watched it: what changed meanwhile
    cannot be known, so its report says so, and it ends without its end marker."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for results in ("pass", "fail"):
        (tmp_path / results).mkdir()
    (inputs / "a.pod5").write_bytes(WHOLE)
    process, report = spawn(inputs, tmp_path, until_watched=True)
    assert report is not None
    started_watching(process)
    inputs.rename(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").rename(inputs)
    out, err = process.communicate(timeout=60)

    with pytest.raises(ReportFailed, match="a watched folder was moved"):
        read_report(report, 30.0)
    os.close(report)
    assert process.returncode != 0
    assert not parse(out)[2]
    assert b"a watched folder was moved" in err


def test_a_folder_that_cannot_be_watched_fails_the_child(tmp_path: Path) -> None:
    process, report = spawn(tmp_path / "missing", tmp_path, until_watched=True)
    assert report is not None
    out, err = process.communicate(timeout=60)
    with pytest.raises(ReportFailed, match="ended early"):
        read_report(report, 30.0)
    os.close(report)
    assert process.returncode != 0
    assert out == b""
    assert b"cannot watch the folder" in err


def test_a_full_pipe_keeps_the_chunks_and_a_flush_writes_them_in_order() -> None:
    """The lookers do not wait for the service while it imports: a chunk that finds the
    pipe full is kept; `flush` writes what was kept, in order, once it is read."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # one page: a chunk or so
    os.set_blocking(write_end, False)
    names = [f"PAK00000_pass_0123abcd_{number}.pod5" for number in range(3000)]
    chunk = _Chunk(write_end)
    for number, name in enumerate(names):
        chunk.add(name, COMPLETE, float(number))
    chunk.send()
    assert chunk.kept, "nothing was kept: the pipe never filled"
    received = bytearray()

    def drain() -> None:
        while data := os.read(read_end, 65536):
            received.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()
    chunk.flush()
    os.close(write_end)
    reader.join(30.0)
    os.close(read_end)
    entries, largest, ended = parse(bytes(received))
    assert not ended
    assert largest <= select.PIPE_BUF
    assert [(name, mtime) for name, _, mtime in entries] == [
        (name, float(number)) for number, name in enumerate(names)
    ]
