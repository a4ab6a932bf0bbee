"""The child that looks at INPUTDIR's files for the start-up scan (reactor.disk.input_lister),
run as the service runs it, its pipe read here and every entry recounted from the folder."""

from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path

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
    body_size,
    command,
    decode,
)

WHOLE = POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE


def run_child(input_dir: Path, output_dir: Path) -> tuple[int, list[tuple[str, int, float]], int]:
    """(exit code, every entry reported, the largest chunk in bytes); asserts the end
    marker closes the output and nothing follows it."""
    done = subprocess.run(
        command(input_dir, output_dir), capture_output=True, timeout=60, check=False
    )
    out, position, largest = done.stdout, 0, 0
    entries: list[tuple[str, int, float]] = []
    while True:
        count, names_bytes = HEADER.unpack_from(out, position)
        position += HEADER.size
        if count == 0:
            break
        size = body_size(count, names_bytes)
        largest = max(largest, HEADER.size + size)
        listed = decode(count, out[position : position + size])
        position += size
        entries += list(zip(listed.names, listed.kinds, listed.mtimes, strict=True))
    assert position == len(out), "bytes after the end"
    return done.returncode, entries, largest


def expected_kind(folder: Path, name: str, stems: set[str]) -> int | None:
    """What the child must say of `name`, worked out here from the file itself."""
    path = folder / name
    visible_pod5 = name.endswith(".pod5") and not name.startswith(".") and len(name) > 5
    if not visible_pod5:
        return OTHER_FOLDER if path.is_dir() and not path.is_symlink() else OTHER
    if path.is_symlink():  # never opened by the child, done or not: the service decides
        return SYMLINK
    if name[:-5] in stems:
        return DONE
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
    assert (kinds["link.pod5"], kinds["done-link.pod5"]) == (SYMLINK, SYMLINK)


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
