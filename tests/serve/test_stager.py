"""Staging's copy: whole, checked and durable, or nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.core.names import POD5_SIGNATURE
from reactor.serve.stager import STAGING_PREFIX, CopyFailed, copy_verified


def test_a_whole_pod5_is_copied_and_renamed_into_place(tmp_path: Path) -> None:
    source = tmp_path / "a.pod5"
    source.write_bytes(POD5_SIGNATURE + b"reads" * 1000 + POD5_SIGNATURE)
    folder = tmp_path / "stage"
    folder.mkdir()
    assert copy_verified(source, folder, "a.pod5") == source.stat().st_size
    assert (folder / "a.pod5").read_bytes() == source.read_bytes()
    assert [p.name for p in folder.iterdir()] == ["a.pod5"]


def test_a_copy_without_its_trailing_signature_is_refused_and_removed(tmp_path: Path) -> None:
    source = tmp_path / "cut.pod5"
    source.write_bytes(POD5_SIGNATURE + b"reads" * 1000)  # cut short: no trailing signature
    folder = tmp_path / "stage"
    folder.mkdir()
    with pytest.raises(CopyFailed, match="no POD5 signature"):
        copy_verified(source, folder, "cut.pod5")
    assert list(folder.iterdir()) == [], f"nothing left, no {STAGING_PREFIX} file either"
    with pytest.raises(FileNotFoundError):
        copy_verified(tmp_path / "gone.pod5", folder, "gone.pod5")
    assert list(folder.iterdir()) == []
