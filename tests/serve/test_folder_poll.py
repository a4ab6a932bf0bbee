"""Host mode's poller: folders listed only when their mtime changed; new and gone names
become events, in barcode folders too; nothing is news at registration."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from reactor.core.events import Change, FsEvent
from reactor.core.names import is_pod5_name
from reactor.serve.folder_poll import FolderPoller
from tests.support.endrun import wait_until

OLD_NS = 1_000_000_000_000_000_000  # 2001: far older than the two-second fresh window


def age(folder: Path) -> None:
    """Make a folder's mtime old, as a quiet folder's is."""
    os.utime(folder, ns=(OLD_NS, OLD_NS))


async def test_new_and_gone_files_become_events_and_quiet_folders_are_not_listed(
    tmp_path: Path,
) -> None:
    pod5 = tmp_path / "pod5"
    (pod5 / "barcode01").mkdir(parents=True)
    (pod5 / "before.pod5").write_bytes(b"x")
    (pod5 / "notes.txt").write_text("x")
    for folder in (pod5 / "barcode01", pod5):
        age(folder)
    seen: list[FsEvent] = []
    poller = FolderPoller(asyncio.get_running_loop(), interval_s=0.02)
    handle = poller.register([pod5], nested=True, accept=is_pod5_name, post=seen.append)
    poller.start()
    try:
        await wait_until(lambda: poller.polls >= 5, "a few polls")
        assert seen == [], "what was there at registration is not news"
        listed = poller.listings
        await wait_until(lambda: poller.polls >= 10, "more polls")
        assert poller.listings == listed, "quiet folders are stat'ed, not listed"

        (pod5 / "barcode01" / "new.pod5").write_bytes(b"x")
        await wait_until(lambda: len(seen) == 1, "the new file")
        (event,) = seen
        assert (event.change, event.name, event.folder) == (
            Change.CREATED,
            "new.pod5",
            str(pod5 / "barcode01"),
        )
        (pod5 / "before.pod5").unlink()
        await wait_until(lambda: len(seen) == 2, "the file gone")
        assert (seen[1].change, seen[1].name, seen[1].folder) == (
            Change.GONE,
            "before.pod5",
            str(pod5),
        )
        # a barcode folder made later is polled too
        (pod5 / "barcode02").mkdir()
        (pod5 / "barcode02" / "late.pod5").write_bytes(b"x")
        await wait_until(lambda: len(seen) == 3, "a file in a new barcode folder")
        assert seen[2].name == "late.pod5"
        assert poller.names_kept == 2  # new.pod5, late.pod5
        poller.unregister(handle)
        (pod5 / "after.pod5").write_bytes(b"x")
        polls = poller.polls
        await wait_until(lambda: poller.polls >= polls + 3, "polls after unregister")
        assert len(seen) == 3
    finally:
        poller.stop()


async def test_a_change_within_the_same_second_is_not_missed(tmp_path: Path) -> None:
    """With one-second timestamps a second change can leave the mtime as it was: an
    mtime that is still fresh is listed again at every poll."""
    folder = tmp_path / "pod5"
    folder.mkdir()
    stamp = (folder.stat().st_mtime_ns // 1_000_000_000) * 1_000_000_000
    os.utime(folder, ns=(stamp, stamp))
    seen: list[FsEvent] = []
    poller = FolderPoller(asyncio.get_running_loop(), interval_s=0.02)
    poller.register([folder], nested=False, accept=is_pod5_name, post=seen.append)
    poller.start()
    try:
        (folder / "a.pod5").write_bytes(b"x")
        os.utime(folder, ns=(stamp, stamp))  # the same whole second as before
        await wait_until(lambda: [e.name for e in seen] == ["a.pod5"], "the file seen")
    finally:
        poller.stop()
