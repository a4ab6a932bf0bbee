"""`reactor check`'s checks of the system around the run folders: the port, inotify
limits, filesystem type, and the clock.

As in `reactor.ops.checks.folders`, each check returns a `CheckResult`. What they read from /proc
comes in as a path (`proc` for /proc, the files under /proc/sys), so tests give them
fixture trees; parsing is separate from reading (`parse_mountinfo`, `parse_listeners`).

inotify, as reactor uses it (`reactor.serve.watcher`, watchdog 7's InotifyObserver): one
inotify instance per `reactor serve` (the observer's), holding three watches, whatever
the number of live jobs: INPUTDIR, OUTPUTDIR/pass and OUTPUTDIR/fail (job folders are
not watched: `reactor.serve.watcher` says why). Both limits are per user, shared with
every other process of that user, so what those already hold is counted from
/proc/PID/fdinfo (one ``inotify wd:`` line per watch).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reactor.ops.checks.result import CheckResult, Status

PROC = Path("/proc")
SERVE_WATCHES = 3  # INPUTDIR, OUTPUTDIR/pass, OUTPUTDIR/fail
SYSCTL_FILE = "/etc/sysctl.d/90-pod5-reactor.conf"
# Filesystem types where inotify does not see writes made by other hosts.
_NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs",
     "beegfs", "afs", "9p", "ncpfs", "orangefs", "virtiofs"}
)  # fmt: skip


# --------------------------------------------------------------------------- port


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening TCP socket from /proc/net/tcp{,6}."""

    port: int
    inode: int


def parse_listeners(text: str) -> list[Listener]:
    """The LISTEN sockets in the text of /proc/net/tcp or /proc/net/tcp6."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        _address, _, port_hex = fields[1].rpartition(":")
        try:
            found.append(Listener(int(port_hex, 16), int(fields[9])))
        except ValueError:
            continue
    return found


def find_port_owner(port: int, proc: Path = PROC) -> tuple[int, str] | None:
    """(pid, command name) of a process listening on TCP `port`, if this user may see it."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            text = (proc / "net" / table).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        inodes |= {item.inode for item in parse_listeners(text) if item.port == port}
    wanted = {f"socket:[{inode}]" for inode in inodes if inode}
    if not wanted:
        return None
    for pid_dir in _process_dirs(proc):
        for _fd, target in _fd_targets(pid_dir):
            if target in wanted:
                return int(pid_dir.name), _command_name(pid_dir)
    return None


def check_port(host: str, port: int, proc: Path = PROC) -> CheckResult:
    """Bind every address `host` resolves to at `port`, as serve will, then close."""
    name = "port"
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return CheckResult(
            name,
            Status.FAIL,
            f"{host} does not resolve ({err.strerror})",
            "set listen to an address of this host, such as 0.0.0.0:40765",
        )
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as probe:
            # As asyncio's create_server does: reuse the address, IPv6 sockets v6 only.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as err:
                return _bind_problem(err, where, port, proc)
    return CheckResult(name, Status.OK, f"{where} is free")


def _bind_problem(err: OSError, where: str, port: int, proc: Path) -> CheckResult:
    name = "port"
    if err.errno == errno.EADDRINUSE:
        owner = find_port_owner(port, proc)
        if owner == (1, "systemd"):
            return CheckResult(
                name,
                Status.OK,
                f"{where} is held by systemd: socket activation (reactor.socket), which "
                "passes it to reactor serve",
            )
        if owner is not None:
            who = f"process {owner[0]} ({owner[1]})"
            fix = f"stop process {owner[0]}, or set listen to another port"
        else:
            who = "another process (is another reactor running?)"
            fix = (
                f"find it with: ss -ltnp 'sport = :{port}'; stop it or choose another port "
                "(systemd holding reactor.socket is fine: serve takes the socket from it)"
            )
        return CheckResult(name, Status.FAIL, f"{where} is in use by {who}", fix)
    if err.errno == errno.EACCES:
        return CheckResult(
            name,
            Status.FAIL,
            f"{where}: this user may not listen on port {port}",
            "use a port from 1024 up, such as the default 40765",
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return CheckResult(
            name,
            Status.FAIL,
            f"{where}: that address is not one of this host's",
            "listen on one of this host's addresses (ip -br addr), or 0.0.0.0",
        )
    return CheckResult(name, Status.FAIL, f"cannot listen on {where} ({err.strerror})", "")


# --------------------------------------------------------------------------- inotify


@dataclass(frozen=True, slots=True)
class InotifyLimits:
    max_user_watches: int
    max_user_instances: int


@dataclass(frozen=True, slots=True)
class InotifyUsage:
    """What this user's processes already hold (those whose fds this user may read)."""

    instances: int
    watches: int


def read_inotify_limits(sys_inotify: Path = PROC / "sys/fs/inotify") -> InotifyLimits | None:
    try:
        return InotifyLimits(
            int((sys_inotify / "max_user_watches").read_text(encoding="ascii")),
            int((sys_inotify / "max_user_instances").read_text(encoding="ascii")),
        )
    except (OSError, ValueError):
        return None


def read_inotify_usage(proc: Path = PROC, uid: int | None = None) -> InotifyUsage:
    """Count the inotify instances and watches held by processes of `uid` (this user)."""
    uid = os.geteuid() if uid is None else uid
    instances = watches = 0
    for pid_dir in _process_dirs(proc):
        try:
            if pid_dir.stat().st_uid != uid:
                continue
        except OSError:
            continue
        for fd in _inotify_fds(pid_dir):
            instances += 1
            try:
                info = (pid_dir / "fdinfo" / fd).read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
            watches += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return InotifyUsage(instances, watches)


def check_inotify(observer: str, limits: InotifyLimits | None, usage: InotifyUsage) -> CheckResult:
    """Enough inotify watches and instances left for serve."""
    name = "inotify limits"
    if observer == "polling":
        return CheckResult(name, Status.SKIP, "observer is polling, which uses no inotify")
    if limits is None:
        return CheckResult(
            name, Status.SKIP, "/proc/sys/fs/inotify cannot be read (not Linux?): not checked"
        )
    need_watches = usage.watches + SERVE_WATCHES
    need_instances = usage.instances + 1
    short = []
    fixes = []
    if limits.max_user_watches < need_watches:
        short.append(
            f"max_user_watches is {limits.max_user_watches}, but this user's processes hold "
            f"{usage.watches} and serve needs {SERVE_WATCHES}"
        )
        fixes.append(("fs.inotify.max_user_watches", max(524_288, 2 * need_watches)))
    if limits.max_user_instances < need_instances:
        short.append(
            f"max_user_instances is {limits.max_user_instances} and this user's processes "
            f"already hold {usage.instances}"
        )
        fixes.append(("fs.inotify.max_user_instances", max(512, 2 * need_instances)))
    if short:
        settings = " ".join(f"{key}={value}" for key, value in fixes)
        lines = "\\n".join(f"{key} = {value}" for key, value in fixes)
        return CheckResult(
            name,
            Status.WARN,
            "; ".join(short) + ": new files and outputs would go unseen",
            f"sudo sysctl {settings}; to keep it after a reboot: "
            f"printf '{lines}\\n' | sudo tee {SYSCTL_FILE}",
        )
    return CheckResult(
        name,
        Status.OK,
        f"{limits.max_user_watches - usage.watches} watches free (serve needs "
        f"{SERVE_WATCHES}), {limits.max_user_instances - usage.instances} instances free "
        "(needs 1)",
    )


# --------------------------------------------------------------------------- filesystems


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: str
    fs_type: str
    source: str


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts in the text of /proc/self/mountinfo (proc(5)); odd lines are skipped."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040...)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: str, mounts: Iterable[Mount]) -> Mount | None:
    """The mount `path` (absolute, symlinks resolved) lies on: the last mounted of the
    longest matching mount points."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def is_network_fs(fs_type: str) -> bool:
    """inotify on this filesystem misses writes made on other hosts."""
    if fs_type in _NETWORK_TYPES:
        return True
    # FUSE filesystems are mostly remote (sshfs, s3fs, gcsfuse...); fuseblk is a local
    # disk (ntfs-3g) and sees every write.
    return fs_type == "fuse" or fs_type.startswith("fuse.")


def check_input_filesystem(input_dir: Path, observer: str, mountinfo: str) -> CheckResult:
    """NFS, SMB or FUSE under INPUTDIR needs the polling observer."""
    name = "input filesystem"
    mount = mount_of(os.path.realpath(input_dir), parse_mountinfo(mountinfo))
    if mount is None:
        return CheckResult(name, Status.SKIP, f"no mount found for {input_dir} in mountinfo")
    what = f"{input_dir} is on {mount.fs_type} ({mount.source} at {mount.mount_point})"
    if not is_network_fs(mount.fs_type):
        return CheckResult(name, Status.OK, what + ": native events see every write")
    if observer == "polling":
        return CheckResult(name, Status.OK, what + ", watched by polling, as it must be")
    return CheckResult(
        name,
        Status.WARN,
        what + ": inotify does not see files written there by other hosts (the sequencer)",
        'set observer = "polling" (or REACTOR_OBSERVER=polling)',
    )


def read_mountinfo(proc: Path = PROC) -> str:
    try:
        return (proc / "self" / "mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- clock

# 2025-01-01T00:00:00Z: no clock that reads earlier than this is right.
EARLIEST_SANE_TIME = 1_735_689_600.0


def check_clock(now: float, earliest: float, has_monotonic: bool) -> CheckResult:
    """The wall clock is not before `earliest`, and a monotonic clock exists (leases
    and timers run on it)."""
    name = "clock"
    if not has_monotonic:
        return CheckResult(
            name,
            Status.FAIL,
            "this system has no monotonic clock: lease deadlines would jump with the wall clock",
            "run reactor on a Linux host with a normal kernel",
        )
    if now < earliest:
        return CheckResult(
            name,
            Status.WARN,
            f"the system time, {_utc(now)}, is before {_utc(earliest)}, when this copy of "
            "reactor was built or installed: log timestamps and file ages will be wrong",
            "set the time and keep it synchronised: timedatectl set-ntp true",
        )
    return CheckResult(name, Status.OK, f"system time {_utc(now)}; monotonic clock available")


def earliest_sane_time() -> float:
    """No right clock reads earlier than this: the fixed date, or this copy's install
    time (less a day, for files copied from a machine whose clock ran ahead)."""
    installed = Path(__file__).stat().st_mtime - 86_400
    return max(EARLIEST_SANE_TIME, installed)


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))


# --------------------------------------------------------------------------- /proc


def _process_dirs(proc: Path) -> list[Path]:
    try:
        found = [entry for entry in proc.iterdir() if entry.name.isdigit()]
    except OSError:
        return []
    return sorted(found, key=lambda entry: int(entry.name))  # systemd (pid 1) first


def _fd_targets(pid_dir: Path) -> list[tuple[str, str]]:
    """(fd, what it links to) for each open file of a process this user may inspect."""
    try:
        fds = os.listdir(pid_dir / "fd")
    except OSError:
        return []
    targets = []
    for fd in fds:
        try:
            targets.append((fd, str((pid_dir / "fd" / fd).readlink())))
        except OSError:
            continue
    return targets


def _inotify_fds(pid_dir: Path) -> list[str]:
    return [fd for fd, target in _fd_targets(pid_dir) if target == "anon_inode:inotify"]


def _command_name(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "?"
