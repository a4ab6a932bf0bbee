"""`reactor check`'s check of reactor's state folder, ``OUTPUTDIR/.reactor``.

reactor keeps its own records there (`reactor.disk.state_dir`): one per job, saying what
it holds and what was decided about it; only these are believed. Engines write in the
run folders too, and under one user id no mode can keep them out of this folder either.
Run as another user, they cannot write it, provided it is reactor's own: a real folder
(serve refuses a link), owned by serve's user, mode 0700 (as serve makes it), in an
OUTPUTDIR where other users cannot move it aside (no write for group and others, or the
sticky bit). docs/operations.md, "Engines as another user"; docs/journal.md, "Trust".

The group and other bits of a mode also bound what an ACL grants beyond the owner (with
an ACL, the group bits are its mask), so the mode alone says whether anyone else could
write. Nothing here changes anything.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from reactor.disk.state_dir import JOBS, REQUEUED, STATE_NAME
from reactor.ops.checks.result import CheckResult, Status, strerror

NAME = "state folder"
_GROUP_WRITE = stat.S_IWGRP
_OTHER_WRITE = stat.S_IWOTH


def check_state_folder(output_dir: Path) -> CheckResult:
    """OUTPUTDIR/.reactor: missing (serve makes it), or a real folder of this user's with
    mode 0700 that no other user can write or move aside."""
    path = output_dir / STATE_NAME
    try:
        info: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as err:
        return CheckResult(
            NAME,
            Status.FAIL,
            f"{path} cannot be looked at ({strerror(err)})",
            f"give this user access to {output_dir}",
        )
    if info is not None:
        failure = _unusable(path, info)
        if failure is not None:
            return failure
    found = [] if info is None else _not_private(path, info)
    found += _movable(output_dir)
    if found:
        return CheckResult(
            NAME,
            Status.WARN,
            "; ".join(message for message, _ in found),
            "; ".join(fix for _, fix in found),
        )
    if info is None:
        return CheckResult(
            NAME,
            Status.OK,
            f"{path} does not exist yet: reactor serve makes it (mode 0700) at its first start",
        )
    return CheckResult(
        NAME,
        Status.OK,
        f"{path} is this user's, mode 0700: engines running as another user cannot write "
        "reactor's records",
    )


def _unusable(path: Path, info: os.stat_result) -> CheckResult | None:
    """Why reactor serve would refuse the state folder (it will not start), if it would."""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
        return CheckResult(
            NAME,
            Status.FAIL,
            f"{path} is {what}: reactor serve will not start (it never follows a link there)",
            f"if it leads to reactor's records, put that folder itself in its place; "
            f"else move {path} out of the way",
        )
    for sub in (JOBS, REQUEUED):
        inner = path / sub
        try:
            mode = inner.lstat().st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            return _no_access(path, info, strerror(err))
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            return CheckResult(
                NAME,
                Status.FAIL,
                f"{inner} is a link or not a folder: reactor serve will not start",
                f"if it leads to reactor's records, put that folder itself in its place; "
                f"else move {inner} out of the way",
            )
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return _no_access(path, info, "Permission denied")
    return None


def _no_access(path: Path, info: os.stat_result, why: str) -> CheckResult:
    me = os.geteuid()
    return CheckResult(
        NAME,
        Status.FAIL,
        f"{path} cannot be used by {_user(me)} ({why}): it is owned by "
        f"{_user(info.st_uid)}, mode {stat.S_IMODE(info.st_mode) & 0o777:04o}; reactor "
        "serve will not start",
        _chown_fix(me, path, then=f" && chmod 700 {path}"),
    )


def _chown_fix(me: int, path: Path, then: str = "") -> str:
    return (
        f"run reactor check as reactor serve's user; if serve runs as {_user(me)}: "
        f"chown -R {_name(me)} {path}{then} (as root)"
    )


def _not_private(path: Path, info: os.stat_result) -> list[tuple[str, str]]:
    """(message, fix) for each way the folder is not serve's alone."""
    found = []
    me = os.geteuid()
    if info.st_uid != me:
        found.append(
            (
                f"{path} is owned by {_user(info.st_uid)}, not by {_user(me)}, who runs this "
                "check: its owner can change reactor's records",
                _chown_fix(me, path),
            )
        )
    mode = stat.S_IMODE(info.st_mode) & 0o777
    writers = _writers(info)
    if writers:
        found.append(
            (
                f"{path} has mode {mode:04o}: {writers} can write it, so engines running as "
                "another user could write reactor's records",
                f"chmod 700 {path}",
            )
        )
    elif mode != 0o700:
        found.append(
            (
                f"{path} has mode {mode:04o}, not 0700 as reactor serve makes it",
                f"chmod 700 {path}",
            )
        )
    return found


def _movable(output_dir: Path) -> list[tuple[str, str]]:
    """Other users who may write OUTPUTDIR, without the sticky bit, can rename the state
    folder (a rename within one folder needs no write access to the folder renamed) and
    make one of their own in its place, or make it before serve does."""
    try:
        info = output_dir.stat()
    except OSError:
        return []
    writers = _writers(info)
    if not writers or info.st_mode & stat.S_ISVTX:
        return []
    return [
        (
            f"{output_dir} can be written by {writers} and has no sticky bit: engines "
            f"running as another user could put a {STATE_NAME} folder of their own in place "
            "of reactor's",
            f"chmod go-w {output_dir} (engines write only inside their TMPOUTPUT_ folders), "
            f"or chmod +t {output_dir}",
        )
    ]


def _writers(info: os.stat_result) -> str:
    """Who, besides the owner, the mode (or ACL mask) lets write: '' for no one."""
    who = []
    if info.st_mode & _GROUP_WRITE:
        who.append(f"its group {_group(info.st_gid)}")
    if info.st_mode & _OTHER_WRITE:
        who.append("every user")
    return " and ".join(who)


def _name(uid: int) -> str:
    """The user's name, or the bare uid (both are what chown takes)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user(uid: int) -> str:
    name = _name(uid)
    return f"uid {uid}" if name == str(uid) else f"{name} (uid {uid})"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"
