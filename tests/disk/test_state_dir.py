"""Folders opened without following links: what is there instead is said."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor.disk.state_dir import open_folder


def test_a_folder_opens_and_a_missing_one_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    os.close(open_folder(None, tmp_path / "sub"))
    with pytest.raises(FileNotFoundError):
        open_folder(None, tmp_path / "gone")


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda path: path.symlink_to(path.parent), "a symbolic link"),
        (lambda path: path.symlink_to(path.parent / "nowhere"), "a symbolic link"),
        (lambda path: path.write_text(""), "a file"),
        (os.mkfifo, "a special file (a device, a FIFO or a socket)"),
    ],
    ids=["link-to-a-folder", "dangling-link", "file", "fifo"],
)
def test_what_stands_where_a_folder_should_be_is_said(
    tmp_path: Path, make: Callable[[Path], object], what: str
) -> None:
    make(tmp_path / "pass")
    parent = open_folder(None, tmp_path)
    try:
        with pytest.raises(NotADirectoryError) as raised:
            open_folder(parent, "pass")
    finally:
        os.close(parent)
    assert raised.value.strerror == f"pass is {what}, not a folder"
