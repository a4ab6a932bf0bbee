"""`reactor check`'s system checks: a real port, and /proc read from fixture trees."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from reactor.ops.checks.result import Status
from reactor.ops.checks.system import (
    InotifyLimits,
    InotifyUsage,
    Mount,
    check_inotify,
    check_input_filesystem,
    check_port,
    find_port_owner,
    mount_of,
    parse_listeners,
    parse_mountinfo,
    read_inotify_limits,
    read_inotify_usage,
)

# --- port -----------------------------------------------------------------------------


def test_a_free_port_is_ok() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = check_port("127.0.0.1", port)
    assert result.status is Status.OK, result
    assert result.message == f"127.0.0.1:{port} is free"


def test_a_port_in_use_names_the_process_holding_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = check_port("127.0.0.1", port)
    assert result.status is Status.FAIL
    assert result.message == f"127.0.0.1:{port} is in use by process {os.getpid()} (" + (
        Path("/proc/self/comm").read_text(encoding="utf-8").strip() + ")"
    )
    assert f"stop process {os.getpid()}" in result.fix


def test_a_port_in_use_by_an_unseen_process_asks_about_another_reactor(tmp_path: Path) -> None:
    """With /proc showing nothing (another user's process), the message still helps."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = check_port("127.0.0.1", port, proc=tmp_path)
    assert result.status is Status.FAIL
    assert "is another reactor running?" in result.message
    assert f"ss -ltnp 'sport = :{port}'" in result.fix


def test_a_port_held_by_systemd_is_socket_activation(tmp_path: Path) -> None:
    """reactor.socket: systemd (pid 1) holds the port, and serve takes it from systemd.
    Seen first even while a socket-activated serve holds the same socket."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        inode = os.fstat(taken.fileno()).st_ino
        (tmp_path / "net").mkdir()
        (tmp_path / "net" / "tcp").write_text(
            (Path("/proc/net/tcp")).read_text(encoding="ascii"), encoding="ascii"
        )
        for pid, comm in (("1200", "reactor"), ("1", "systemd")):
            (tmp_path / pid / "fd").mkdir(parents=True)
            (tmp_path / pid / "fd" / "3").symlink_to(f"socket:[{inode}]")
            (tmp_path / pid / "comm").write_text(comm + "\n", encoding="utf-8")
        result = check_port("127.0.0.1", port, proc=tmp_path)
    assert result.status is Status.OK, result
    assert result.message == (
        f"127.0.0.1:{port} is held by systemd: socket activation (reactor.socket), "
        "which passes it to reactor serve"
    )


def test_an_address_not_on_this_host_fails() -> None:
    result = check_port("192.0.2.1", 40765)  # TEST-NET-1: never a local address
    assert result.status is Status.FAIL
    assert "not one of this host's" in result.message


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9F0D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
   1: 0100007F:9F0D 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0
"""


def test_listeners_are_the_listen_rows_of_proc_net_tcp() -> None:
    assert [(item.port, item.inode) for item in parse_listeners(TCP_TABLE)] == [
        (40717, 4242),
        (22, 77),
    ]


def test_the_owner_of_a_port_is_found_through_its_socket_inode(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP_TABLE, encoding="ascii")
    for pid, inode, comm in (("100", 77, "sshd"), ("200", 4242, "reactor")):
        (tmp_path / pid / "fd").mkdir(parents=True)
        (tmp_path / pid / "fd" / "3").symlink_to(f"socket:[{inode}]")
        (tmp_path / pid / "comm").write_text(comm + "\n", encoding="utf-8")
    assert find_port_owner(40717, tmp_path) == (200, "reactor")
    assert find_port_owner(22, tmp_path) == (100, "sshd")
    assert find_port_owner(8080, tmp_path) is None


# --- inotify --------------------------------------------------------------------------


def fake_proc(tmp_path: Path, watches_per_instance: list[int]) -> Path:
    """A /proc with one process holding inotify instances with these many watches."""
    proc = tmp_path / "proc"
    limits = proc / "sys" / "fs" / "inotify"
    limits.mkdir(parents=True)
    (limits / "max_user_watches").write_text("8192\n", encoding="ascii")
    (limits / "max_user_instances").write_text("128\n", encoding="ascii")
    fd, fdinfo = proc / "321" / "fd", proc / "321" / "fdinfo"
    fd.mkdir(parents=True)
    fdinfo.mkdir()
    (fd / "0").symlink_to("/dev/null")
    for number, watches in enumerate(watches_per_instance, start=3):
        (fd / str(number)).symlink_to("anon_inode:inotify")
        lines = ["pos:\t0", "flags:\t00", "mnt_id:\t15"]
        lines += [f"inotify wd:{w} ino:2 sdev:fd00 mask:fce ignored_mask:0" for w in range(watches)]
        (fdinfo / str(number)).write_text("\n".join(lines) + "\n", encoding="ascii")
    return proc


def test_limits_and_usage_are_read_from_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, [5, 2])
    assert read_inotify_limits(proc / "sys" / "fs" / "inotify") == InotifyLimits(8192, 128)
    assert read_inotify_usage(proc) == InotifyUsage(instances=2, watches=7)
    assert read_inotify_usage(proc, uid=os.geteuid() + 1) == InotifyUsage(0, 0)


def test_unreadable_limits_are_none(tmp_path: Path) -> None:
    assert read_inotify_limits(tmp_path) is None


def test_enough_inotify_room_is_ok() -> None:
    result = check_inotify("native", InotifyLimits(8192, 128), InotifyUsage(2, 7))
    assert result.status is Status.OK
    assert result.message == "8185 watches free (serve needs 3), 126 instances free (needs 1)"


def test_three_watches_left_are_enough() -> None:
    """INPUTDIR, pass/ and fail/, however many jobs are live (job folders are not watched)."""
    assert check_inotify("native", InotifyLimits(8192, 128), InotifyUsage(1, 8189)).status is (
        Status.OK
    )


def test_too_few_watches_warns_with_the_sysctl_fix() -> None:
    result = check_inotify("native", InotifyLimits(8192, 128), InotifyUsage(1, 8190))
    assert result.status is Status.WARN
    assert "max_user_watches is 8192, but this user's processes hold 8190" in result.message
    assert "serve needs 3" in result.message
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in result.fix
    assert "/etc/sysctl.d/90-pod5-reactor.conf" in result.fix


def test_no_instance_left_warns() -> None:
    result = check_inotify("native", InotifyLimits(1_000_000, 128), InotifyUsage(128, 10))
    assert result.status is Status.WARN
    assert "max_user_instances is 128 and this user's processes already hold 128" in result.message
    assert "fs.inotify.max_user_instances=512" in result.fix
    assert "max_user_watches" not in result.fix


def test_polling_needs_no_inotify() -> None:
    result = check_inotify("polling", InotifyLimits(1, 1), InotifyUsage(128, 10))
    assert result.status is Status.SKIP
    assert "polling" in result.message


def test_no_inotify_in_proc_is_skipped() -> None:
    assert check_inotify("native", None, InotifyUsage(0, 0)).status is Status.SKIP


# --- filesystems ----------------------------------------------------------------------

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:45 / /data rw,relatime shared:20 - xfs /dev/sdb1 rw
41 40 0:46 / /data/seq rw,relatime shared:21 - nfs4 seqhost:/export/runs rw,vers=4.2
42 22 0:47 / /mnt/with\\040space rw - cifs //nas/share rw
43 22 0:48 / /mnt/remote rw - fuse.sshfs user@host:/data rw
44 22 0:49 / /mnt/ntfs rw - fuseblk /dev/sdc1 rw
broken line without the separator
"""


def test_mountinfo_is_parsed_with_its_escapes() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 6
    assert mounts[1] == Mount("/data", "xfs", "/dev/sdb1")
    assert mounts[3] == Mount("/mnt/with space", "cifs", "//nas/share")


@pytest.mark.parametrize(
    ("path", "fs_type"),
    [
        ("/data/seq/run42/pod5", "nfs4"),
        ("/data/seq", "nfs4"),
        ("/data/seqother", "xfs"),
        ("/data", "xfs"),
        ("/home/x", "ext4"),
        ("/mnt/with space/run", "cifs"),
    ],
)
def test_a_path_lies_on_the_longest_mount_point_above_it(path: str, fs_type: str) -> None:
    mount = mount_of(path, parse_mountinfo(MOUNTINFO))
    assert mount is not None
    assert mount.fs_type == fs_type


@pytest.mark.parametrize(
    ("mount_point", "observer", "status"),
    [
        ("/data/seq", "native", Status.WARN),
        ("/data/seq", "polling", Status.OK),
        ("/mnt/with space", "native", Status.WARN),
        ("/mnt/remote", "native", Status.WARN),
        ("/mnt/ntfs", "native", Status.OK),
        ("/data", "native", Status.OK),
    ],
)
def test_network_filesystems_need_the_polling_observer(
    mount_point: str, observer: str, status: Status
) -> None:
    result = check_input_filesystem(Path(mount_point) / "run42", observer, MOUNTINFO)
    assert result.status is status, result
    if status is Status.WARN:
        assert result.fix == 'set observer = "polling" (or REACTOR_OBSERVER=polling)'


def test_a_real_temp_folder_is_found_in_this_machines_mountinfo(tmp_path: Path) -> None:
    mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    result = check_input_filesystem(tmp_path, "native", mountinfo)
    assert result.status in (Status.OK, Status.WARN)
    assert f"{tmp_path} is on " in result.message


def test_no_mountinfo_is_skipped(tmp_path: Path) -> None:
    assert check_input_filesystem(tmp_path, "native", "").status is Status.SKIP
