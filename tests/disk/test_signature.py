"""`check_pod5`: complete only when both signatures are in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reactor.core.names import POD5_SIGNATURE
from reactor.disk.signature import Pod5Check, check_pod5
from tests.support.pod5files import pod5_bytes, read_ids, write_pod5, write_pod5_in_pieces


def test_signature_constant_matches_the_spec() -> None:
    assert POD5_SIGNATURE == b"\x8bPOD\r\n\x1a\n"


def test_a_file_written_by_pod5_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "PAK00000_pass_abcdef12_0123abcd_0.pod5"
    ids = write_pod5(path, 3, seed=1)
    info = path.stat()

    assert check_pod5(path) == Pod5Check(complete=True, size=info.st_size, mtime=info.st_mtime)
    assert read_ids(path) == ids


def test_a_file_being_written_is_complete_only_once_its_last_bytes_land(tmp_path: Path) -> None:
    path = tmp_path / "growing.pod5"
    seen: list[tuple[int, bool]] = []
    for written in write_pod5_in_pieces(path, 3, pieces=5, seed=2):
        check = check_pod5(path)
        assert check is not None
        assert check.size == written
        seen.append((written, check.complete))
        with open(path, "rb") as f:
            assert f.read(8) == POD5_SIGNATURE  # the head is there from the first piece

    assert [complete for _, complete in seen] == [False, False, False, False, True]
    assert read_ids(path) == write_pod5(tmp_path / "same.pod5", 3, seed=2)


def test_a_file_cut_short_by_one_byte_is_not_complete(tmp_path: Path) -> None:
    path = tmp_path / "cut.pod5"
    path.write_bytes(pod5_bytes(2)[:-1])

    check = check_pod5(path)
    assert check is not None
    assert not check.complete


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(POD5_SIGNATURE, id="head-only"),
        pytest.param(POD5_SIGNATURE + POD5_SIGNATURE[:-1], id="15-bytes-overlapping"),
        pytest.param(POD5_SIGNATURE + b"\0" * 100, id="garbage-after-head"),
        pytest.param(b"\0" * 100 + POD5_SIGNATURE, id="garbage-before-tail"),
        pytest.param(b"\0" * 100, id="garbage"),
    ],
)
def test_short_or_garbage_files_are_not_complete(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.pod5"
    path.write_bytes(content)

    assert check_pod5(path) == Pod5Check(
        complete=False, size=len(content), mtime=path.stat().st_mtime
    )


def test_two_bare_signatures_are_complete_by_the_rule(tmp_path: Path) -> None:
    """16 bytes is the shortest complete file; the rule looks at nothing else."""
    path = tmp_path / "bare.pod5"
    path.write_bytes(POD5_SIGNATURE * 2)

    check = check_pod5(path)
    assert check is not None
    assert check.complete


def test_garbage_with_both_signatures_around_it_is_complete(tmp_path: Path) -> None:
    """The check is a completeness check, not validation: a bad body shows later."""
    path = tmp_path / "wrapped.pod5"
    path.write_bytes(POD5_SIGNATURE + os.urandom(64) + POD5_SIGNATURE)

    check = check_pod5(path)
    assert check is not None
    assert check.complete


def test_a_missing_file_gives_none(tmp_path: Path) -> None:
    assert check_pod5(tmp_path / "gone.pod5") is None


def test_a_file_deleted_after_writing_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "x.pod5"
    write_pod5(path, 1)
    path.unlink()

    assert check_pod5(path) is None


def test_a_directory_is_not_complete(tmp_path: Path) -> None:
    path = tmp_path / "folder.pod5"
    path.mkdir()

    check = check_pod5(path)
    assert check is not None
    assert not check.complete


def test_a_fifo_is_not_complete_and_does_not_block(tmp_path: Path) -> None:
    """open() on a FIFO with no writer would block the event loop forever."""
    path = tmp_path / "pipe.pod5"
    os.mkfifo(path)

    check = check_pod5(path)
    assert check is not None
    assert not check.complete


def test_a_symlink_to_a_complete_file_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "real.pod5"
    write_pod5(target, 1)
    link = tmp_path / "link.pod5"
    link.symlink_to(target)

    check = check_pod5(link)
    assert check is not None
    assert check.complete
    assert check.size == target.stat().st_size


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_not_complete(tmp_path: Path) -> None:
    path = tmp_path / "locked.pod5"
    write_pod5(path, 1)
    path.chmod(0)
    try:
        check = check_pod5(path)
    finally:
        path.chmod(0o644)

    assert check is not None
    assert not check.complete


def test_a_huge_file_is_checked_by_its_ends(tmp_path: Path) -> None:
    """1 GiB (sparse) between the signatures: only the ends are read."""
    path = tmp_path / "big.pod5"
    with open(path, "wb") as f:
        f.write(POD5_SIGNATURE)
        f.seek(1 << 30)
        f.write(POD5_SIGNATURE)

    check = check_pod5(path)
    assert check is not None
    assert check.complete
    assert check.size == (1 << 30) + 8
