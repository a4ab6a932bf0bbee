"""`reactor check`: folder, state folder, space, clock and access checks on real folders,
and the command."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.cli import main
from reactor.disk.state_dir import StateDir, StateError
from reactor.ops.checks.access import check_access
from reactor.ops.checks.folders import (
    check_free_space,
    check_input_folder,
    check_input_journal,
    check_output_folder,
    check_output_journal,
    check_result_folders,
)
from reactor.ops.checks.report import CheckOptions, format_results, run_checks
from reactor.ops.checks.result import CheckResult, Status
from reactor.ops.checks.run_end import check_on_complete, check_run_folder
from reactor.ops.checks.state_folder import check_state_folder
from reactor.ops.checks.system import EARLIEST_SANE_TIME, check_clock
from reactor.settings.serve import ServeConfig
from tests.support.paths import REPO
from tests.support.runs import RunDirs
from tests.support.tools import require_tool, skip_for_missing_tool

as_root = os.geteuid() == 0
needs_non_root = pytest.mark.skipif(as_root, reason="root bypasses file permissions")


@pytest.fixture
def run_dirs(run_dirs: RunDirs) -> RunDirs:
    """conftest's run folders, with OUTPUTDIR mode 0755 whatever the umask: one its group
    may write is a warning of its own (the state folder check's)."""
    run_dirs.output_dir.chmod(0o755)
    return run_dirs


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder this user can list but not write; made writable again for cleanup."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


# --- folders --------------------------------------------------------------------------


def test_usable_run_folders_pass_every_folder_check(run_dirs: RunDirs) -> None:
    run_dirs.config()  # pass/ and fail/ made
    results = [
        check_input_folder(run_dirs.input_dir),
        check_input_journal(run_dirs.input_dir),
        check_output_folder(run_dirs.output_dir),
        check_result_folders(run_dirs.output_dir),
        check_state_folder(run_dirs.output_dir),
        check_output_journal(run_dirs.output_dir),
    ]
    assert [r.status for r in results] == [Status.OK] * 6, results
    assert results[3].message == "both are folders on the output filesystem, writable"


def test_the_checks_leave_nothing_behind(run_dirs: RunDirs) -> None:
    run_dirs.config()
    check_input_journal(run_dirs.input_dir)
    check_output_journal(run_dirs.output_dir)
    check_output_folder(run_dirs.output_dir)
    check_result_folders(run_dirs.output_dir)
    check_state_folder(run_dirs.output_dir)
    assert list(run_dirs.input_dir.iterdir()) == []
    assert sorted(p.name for p in run_dirs.output_dir.iterdir()) == ["fail", "pass"]
    assert list((run_dirs.output_dir / "pass").iterdir()) == []
    assert list((run_dirs.output_dir / "fail").iterdir()) == []


def test_missing_input_folder_fails_with_its_name(tmp_path: Path) -> None:
    result = check_input_folder(tmp_path / "nope")
    assert result.status is Status.FAIL
    assert result.message == f"{tmp_path / 'nope'} does not exist"
    assert "input_dir" in result.fix


def test_a_file_is_not_an_input_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    result = check_input_folder(tmp_path / "file")
    assert result.status is Status.FAIL
    assert "is not a folder" in result.message


@needs_non_root
def test_read_only_input_folder_fails_and_says_why_writing_is_needed(read_only: Path) -> None:
    result = check_input_folder(read_only)
    assert result.status is Status.FAIL
    assert "ASSIGNED_" in result.message
    assert check_input_journal(read_only).status is Status.FAIL


@needs_non_root
def test_read_only_output_folder_fails_on_a_real_write(read_only: Path) -> None:
    result = check_output_folder(read_only)
    assert result.status is Status.FAIL
    assert "cannot create a file" in result.message
    assert "Permission denied" in result.message


def test_missing_output_folder_with_a_writable_parent_says_mkdir(tmp_path: Path) -> None:
    result = check_output_folder(tmp_path / "out")
    assert result.status is Status.FAIL
    assert result.fix.startswith(f"mkdir -p {tmp_path / 'out'}")
    assert "does not create it" in result.fix


def test_missing_pass_and_fail_are_fine_serve_makes_them(run_dirs: RunDirs) -> None:
    result = check_result_folders(run_dirs.output_dir)
    assert result.status is Status.OK
    assert "missing: reactor serve creates them" in result.message


def test_a_file_named_pass_fails(run_dirs: RunDirs) -> None:
    (run_dirs.output_dir / "pass").write_text("", encoding="utf-8")
    result = check_result_folders(run_dirs.output_dir)
    assert result.status is Status.FAIL
    assert "is not a folder" in result.message


@needs_non_root
def test_read_only_pass_folder_fails(run_dirs: RunDirs) -> None:
    run_dirs.config()
    (run_dirs.output_dir / "pass").chmod(0o555)
    try:
        result = check_result_folders(run_dirs.output_dir)
        journal = check_output_journal(run_dirs.output_dir)
    finally:
        (run_dirs.output_dir / "pass").chmod(0o755)
    assert result.status is Status.FAIL
    assert journal.status is Status.FAIL
    assert "into pass/" in journal.message


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[..., Path]]:
    """Mounts a small tmpfs on a folder (root only); every mount is undone afterwards."""
    require_tool(
        shutil.which("mount") is not None, "`mount` mounts the tmpfs (Debian: package mount)"
    )
    require_tool(as_root, "mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(folder: Path, *options: str) -> Path:
        folder.mkdir(exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(folder)],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            skip_for_missing_tool(f"cannot mount a tmpfs here: {done.stderr!r}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def test_pass_on_another_filesystem_fails_both_checks(
    run_dirs: RunDirs, mount_tmpfs: Callable[..., Path]
) -> None:
    """A rename from a job folder into pass/ would cross filesystems (EXDEV)."""
    run_dirs.config()
    mount_tmpfs(run_dirs.output_dir / "pass")
    folders = check_result_folders(run_dirs.output_dir)
    assert folders.status is Status.FAIL
    assert "is on another filesystem than" in folders.message
    journal = check_output_journal(run_dirs.output_dir)
    assert journal.status is Status.FAIL
    assert "Invalid cross-device link" in journal.message
    assert journal.fix == "keep pass/ and fail/ on the output folder's filesystem"


def test_read_only_filesystem_fails_the_output_folder_even_for_root(
    run_dirs: RunDirs, mount_tmpfs: Callable[..., Path]
) -> None:
    output = mount_tmpfs(run_dirs.output_dir, "ro")
    result = check_output_folder(output)
    assert result.status is Status.FAIL
    assert "Read-only file system" in result.message


def test_a_small_filesystem_warns_with_its_real_figure(
    run_dirs: RunDirs, mount_tmpfs: Callable[..., Path]
) -> None:
    output = mount_tmpfs(run_dirs.output_dir)
    result = check_free_space(output, 10**9)
    assert result.status is Status.WARN
    assert result.message.startswith("only 0.0 GB free of 0.0 GB on the filesystem of")


# --- the state folder -------------------------------------------------------------------


def state_folder(run_dirs: RunDirs) -> Path:
    return run_dirs.output_dir / ".reactor"


def test_a_missing_state_folder_is_made_at_the_first_start(run_dirs: RunDirs) -> None:
    result = check_state_folder(run_dirs.output_dir)
    assert (result.status, result.message) == (
        Status.OK,
        f"{state_folder(run_dirs)} does not exist yet: reactor serve makes it (mode 0700) at "
        "its first start",
    )
    assert not state_folder(run_dirs).exists()


def test_the_state_folder_serve_makes_passes(run_dirs: RunDirs) -> None:
    state = StateDir(run_dirs.output_dir)
    state.open()  # what reactor serve does at start
    state.close()
    result = check_state_folder(run_dirs.output_dir)
    assert (result.status, result.message) == (
        Status.OK,
        f"{state_folder(run_dirs)} is this user's, mode 0700: engines running as another user "
        "cannot write reactor's records",
    )


def _link_to_a_folder(path: Path) -> None:
    elsewhere = path.with_name("elsewhere")
    elsewhere.mkdir(mode=0o700)
    path.symlink_to(elsewhere)


def _a_file(path: Path) -> None:
    path.write_text("{}", encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "what"),
    [(_link_to_a_folder, "a symbolic link"), (_a_file, "not a folder")],
    ids=["link", "file"],
)
def test_a_state_folder_that_is_no_folder_fails_as_serve_would(
    run_dirs: RunDirs, make: Callable[[Path], None], what: str
) -> None:
    make(state_folder(run_dirs))
    result = check_state_folder(run_dirs.output_dir)
    assert result.status is Status.FAIL
    assert result.message == (
        f"{state_folder(run_dirs)} is {what}: reactor serve will not start (it never follows "
        "a link there)"
    )
    assert "put that folder itself in its place" in result.fix
    with pytest.raises(StateError):  # and so it is: serve's own opening of it
        StateDir(run_dirs.output_dir).open()


def test_a_link_inside_the_state_folder_fails_as_serve_would(run_dirs: RunDirs) -> None:
    folder = state_folder(run_dirs)
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    _link_to_a_folder(folder / "jobs")
    result = check_state_folder(run_dirs.output_dir)
    assert result.status is Status.FAIL
    jobs = folder / "jobs"
    assert result.message == f"{jobs} is a link or not a folder: reactor serve will not start"
    with pytest.raises(StateError):
        StateDir(run_dirs.output_dir).open()


@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o770, "its group"), (0o703, "every user"), (0o777, "its group")],
)
def test_a_state_folder_others_can_write_warns(run_dirs: RunDirs, mode: int, who: str) -> None:
    folder = state_folder(run_dirs)
    folder.mkdir()
    folder.chmod(mode)
    result = check_state_folder(run_dirs.output_dir)
    assert result.status is Status.WARN
    assert result.message.startswith(f"{folder} has mode {mode:04o}: {who}")
    assert result.message.endswith(
        "can write it, so engines running as another user could write reactor's records"
    )
    assert result.fix == f"chmod 700 {folder}"


def test_a_state_folder_others_can_read_warns_that_it_is_not_0700(run_dirs: RunDirs) -> None:
    folder = state_folder(run_dirs)
    folder.mkdir()
    folder.chmod(0o755)
    result = check_state_folder(run_dirs.output_dir)
    assert (result.status, result.message, result.fix) == (
        Status.WARN,
        f"{folder} has mode 0755, not 0700 as reactor serve makes it",
        f"chmod 700 {folder}",
    )


def test_a_setgid_bit_on_the_state_folder_is_fine(run_dirs: RunDirs) -> None:
    """A setgid OUTPUTDIR (engines as another user share its group) passes its setgid bit
    on to the folder serve makes: the mode still lets no one else in."""
    folder = state_folder(run_dirs)
    folder.mkdir()
    folder.chmod(0o2700)
    assert check_state_folder(run_dirs.output_dir).status is Status.OK


@pytest.mark.skipif(not as_root, reason="only root can give a folder to another user")
def test_a_state_folder_of_another_user_warns(run_dirs: RunDirs) -> None:
    state = StateDir(run_dirs.output_dir)
    state.open()
    state.close()
    folder = state_folder(run_dirs)
    os.chown(folder, 65534, 65534)
    result = check_state_folder(run_dirs.output_dir)
    assert result.status is Status.WARN
    assert f"{folder} is owned by " in result.message
    assert "uid 65534" in result.message
    assert "not by root (uid 0), who runs this check: its owner can change reactor's records" in (
        result.message
    )
    assert result.fix.endswith(f"chown -R root {folder} (as root)")


def test_a_state_folder_this_user_cannot_use_fails(run_dirs: RunDirs) -> None:
    """Serve could not open it either. A real `reactor check`, held to file permissions
    even as root."""
    prefix = without_permission_overrides()
    folder = state_folder(run_dirs)
    folder.mkdir()
    folder.chmod(0o000)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "reactor", "check", "--json",
             "--input-dir", str(run_dirs.input_dir), "--output-dir", str(run_dirs.output_dir),
             "--listen", f"127.0.0.1:{free_port()}",
             "--min-free-gb", "0", "--observer", "polling"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    finally:
        folder.chmod(0o700)
    assert done.returncode == 1, done.stderr
    by_name = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    check = by_name["state folder"]
    assert check["status"] == "fail"
    assert check["message"].startswith(f"{folder} cannot be used by ")
    assert check["message"].endswith("mode 0000; reactor serve will not start")
    assert check["fix"].endswith(f" && chmod 700 {folder} (as root)")


@pytest.mark.parametrize("exists", [True, False], ids=["made", "not-yet"])
def test_an_output_folder_others_can_write_without_the_sticky_bit_warns(
    run_dirs: RunDirs, exists: bool
) -> None:
    """They could rename the state folder (no write access to it is needed for that) and
    make their own, or make it before serve does."""
    if exists:
        StateDir(run_dirs.output_dir).open()
    run_dirs.output_dir.chmod(0o775)
    result = check_state_folder(run_dirs.output_dir)
    assert result.status is Status.WARN
    assert result.message.startswith(f"{run_dirs.output_dir} can be written by its group ")
    assert result.message.endswith(
        "and has no sticky bit: engines running as another user could put a .reactor "
        "folder of their own in place of reactor's"
    )
    assert result.fix == (
        f"chmod go-w {run_dirs.output_dir} (engines write only inside their TMPOUTPUT_ "
        f"folders), or chmod +t {run_dirs.output_dir}"
    )
    run_dirs.output_dir.chmod(0o1777)
    assert check_state_folder(run_dirs.output_dir).status is Status.OK


@pytest.mark.skipif(not as_root, reason="needs a second user")
def test_another_user_can_rename_the_state_folder_out_of_a_folder_it_may_write(
    run_dirs: RunDirs,
) -> None:
    """The fact the warning above rests on, and the sticky bit that stops it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip_for_missing_tool("setpriv runs a command as another user (Debian: util-linux)")
    StateDir(run_dirs.output_dir).open()
    folder = state_folder(run_dirs)
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    # Relative names from OUTPUTDIR (entered as root): tmp_path's parents are root's 0700.
    rename = [*as_nobody, "mv", "-T", ".reactor", "aside"]
    out = run_dirs.output_dir
    out.chmod(0o1777)
    sticky = subprocess.run(rename, cwd=out, capture_output=True, text=True, check=False)
    assert sticky.returncode != 0
    assert "Operation not permitted" in sticky.stderr
    assert folder.is_dir()
    out.chmod(0o777)
    done = subprocess.run(rename, cwd=out, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (out / "aside").is_dir()
    assert not folder.exists()


# --- space, clock, access --------------------------------------------------------------


def test_free_space_below_the_threshold_warns_with_the_figure(tmp_path: Path) -> None:
    low = check_free_space(tmp_path, 10**18)
    assert low.status is Status.WARN
    assert " GB free of " in low.message
    assert "below the 1000000000.0 GB asked for" in low.message
    assert check_free_space(tmp_path, 0).status is Status.OK


@pytest.mark.parametrize(
    ("now", "monotonic", "status"),
    [
        (EARLIEST_SANE_TIME + 1, True, Status.OK),
        (EARLIEST_SANE_TIME - 86_400 * 365, True, Status.WARN),
        (EARLIEST_SANE_TIME + 1, False, Status.FAIL),
    ],
)
def test_clock(now: float, monotonic: bool, status: Status) -> None:
    result = check_clock(now, EARLIEST_SANE_TIME, monotonic)
    assert result.status is status
    if status is Status.WARN:
        assert "2024-01-02" in result.message
        assert "timedatectl set-ntp true" in result.fix


@pytest.mark.parametrize(
    ("settings", "status", "words"),
    [
        ({}, Status.OK, "is loopback"),
        ({"listen": "0.0.0.0:40765", "token": "t" * 64}, Status.OK, "a token"),
        ({"listen": "0.0.0.0:40765", "allow": (ipaddress.ip_network("10.0.0.0/8"),)}, Status.OK,
         "an allow list (10.0.0.0/8) limits the clients (a token as well is recommended)"),
        ({"listen": "0.0.0.0:40765", "token": "short"}, Status.WARN, "the token is short"),
        ({"listen": "0.0.0.0:40765", "insecure": True}, Status.WARN, "neither token nor allow"),
    ],
)  # fmt: skip
def test_access(run_dirs: RunDirs, settings: dict[str, Any], status: Status, words: str) -> None:
    config = ServeConfig(input_dir=run_dirs.input_dir, output_dir=run_dirs.output_dir, **settings)
    result = check_access(config)
    assert result.status is status
    assert words in result.message


# --- the command ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def check_argv(run_dirs: RunDirs, *extra: str) -> list[str]:
    return ["check", "--input-dir", str(run_dirs.input_dir),
            "--output-dir", str(run_dirs.output_dir),
            "--listen", f"127.0.0.1:{free_port()}",
            "--min-free-gb", "0", *extra]  # fmt: skip


def test_check_exits_0_when_all_is_well(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(check_argv(run_dirs)) == 0
    out = capsys.readouterr().out
    assert out.endswith("all checks passed\n")
    assert "ok    input folder" in out


def test_check_exits_1_and_prints_the_fix_on_a_problem(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dirs.output_dir.rmdir()
    assert main(check_argv(run_dirs)) == 1
    out = capsys.readouterr().out
    assert f"FAIL  output folder     {run_dirs.output_dir} does not exist" in out
    assert f"fix: mkdir -p {run_dirs.output_dir}" in out
    skipped = [line.split() for line in out.splitlines() if line.startswith("skip")]
    assert ["skip", "free", "space", "output", "folder", "unusable"] in skipped
    assert ["skip", "state", "folder", "output", "folder", "unusable"] in skipped


def test_check_exits_1_when_the_port_is_taken(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*check_argv(run_dirs), "--listen", f"127.0.0.1:{port}"]
        assert main(argv) == 1
    assert f"127.0.0.1:{port} is in use by process {os.getpid()}" in capsys.readouterr().out


def test_check_json_is_one_object_for_scripts(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*check_argv(run_dirs), "--json", "--observer", "polling"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["inotify limits"]["status"] == "skip"
    names = list(by_name)
    assert names[names.index("pass/ and fail/") + 1] == "state folder"
    assert set(by_name["port"]) == {"name", "status", "message", "fix"}


def test_check_exits_2_on_a_settings_mistake(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*check_argv(run_dirs), "--batch-size", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("reactor check: batch_size")


def test_check_reads_the_config_file(
    run_dirs: RunDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reactor.toml"
    config.write_text(
        f'input_dir = "{run_dirs.input_dir}"\noutput_dir = "{run_dirs.output_dir}"\n'
        f'listen = "127.0.0.1:{free_port()}"\n',
        encoding="utf-8",
    )
    assert main(["check", "--config", str(config), "--min-free-gb", "0"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_format_puts_the_fix_under_its_problem() -> None:
    text = format_results(
        [
            CheckResult("port", Status.FAIL, "in use", "stop it"),
            CheckResult("clock", Status.OK, "fine", "unused"),
        ]
    )
    assert text.splitlines() == [
        "FAIL  port   in use",
        "             fix: stop it",
        "ok    clock  fine",
        "1 problem(s): see the fix lines",
    ]


# --- end of run -------------------------------------------------------------------------


def test_on_complete_not_set_is_fine(run_dirs: RunDirs) -> None:
    result = check_on_complete(ServeConfig(run_dirs.input_dir, run_dirs.output_dir))
    assert (result.status, result.message) == (
        Status.OK,
        "not set: nothing is run when the run is complete",
    )


def test_on_complete_found_names_the_program_it_will_run(run_dirs: RunDirs) -> None:
    config = ServeConfig(run_dirs.input_dir, run_dirs.output_dir, on_complete="true --all")
    result = check_on_complete(config)
    assert (result.status, result.message) == (
        Status.OK,
        f"runs {shutil.which('true')} when the run is complete",
    )


def test_check_fails_an_on_complete_program_serve_would_refuse(
    run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to say "all checks passed" while serve refused to start."""
    assert main(check_argv(run_dirs, "--on-complete", "/nonexistent/align.sh --all")) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  on_complete       on_complete program '/nonexistent/align.sh' is not found or "
        "is not executable: reactor serve refuses to start"
    ) in out
    assert "fix: install it, give its full path, or fix the command" in out


def test_a_listable_run_folder_is_fine(run_dirs: RunDirs) -> None:
    result = check_run_folder(run_dirs.input_dir, "final_summary_*.txt")
    assert result.status is Status.OK
    assert result.message == (
        f"{run_dirs.input_dir.parent} can be listed: final_summary_*.txt is looked for there"
    )


def without_permission_overrides() -> list[str]:
    """A command prefix under which root, too, is held to file permissions (it drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH); none for other users."""
    if not as_root:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip_for_missing_tool("setpriv holds root to file permissions (Debian: package util-linux)")
    caps = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        skip_for_missing_tool(f"cannot drop capabilities here: {probe.stderr!r}")
    return prefix


def test_a_run_folder_this_user_cannot_list_warns(tmp_path: Path) -> None:
    """MinKNOW's final_summary lands there: unseen, only one in input_dir ends the run.
    A real `reactor check`, as a process held to file permissions even as root."""
    prefix = without_permission_overrides()
    run_folder = tmp_path / "run"
    input_dir = run_folder / "pod5"
    input_dir.mkdir(parents=True)
    (tmp_path / "out").mkdir(mode=0o755)
    (tmp_path / "out").chmod(0o755)  # whatever the umask: see the run_dirs fixture
    run_folder.chmod(0o300)  # may be entered, not listed
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "reactor", "check", "--json",
             "--input-dir", str(input_dir), "--output-dir", str(tmp_path / "out"),
             "--listen", f"127.0.0.1:{free_port()}",
             "--min-free-gb", "0", "--observer", "polling"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    finally:
        run_folder.chmod(0o755)
    assert done.returncode == 1, done.stderr
    by_name = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert by_name["input folder"]["status"] == "ok"
    assert by_name["run folder"]["status"] == "warn"
    assert f"{run_folder}, input_dir's parent, cannot be listed" in by_name["run folder"]["message"]
    assert "only one inside input_dir" in by_name["run folder"]["message"]
    problems = [name for name, check in by_name.items() if check["status"] in ("warn", "fail")]
    assert problems == ["run folder"]


def test_host_mode_checks_the_roots_and_where_results_go(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    missing = tmp_path / "nowhere"
    out = tmp_path / "results"
    config = ServeConfig(
        watch_root=(root, missing), output_root=out, listen=f"127.0.0.1:{free_port()}"
    )
    results = {r.name: r for r in run_checks(config, CheckOptions(min_free_bytes=0))}
    assert results[f"watch root {root}"].status is Status.OK
    assert results["output root"].status is Status.FAIL  # not made yet: serve does not
    assert "mkdir -p" in (results["output root"].fix or "")
    assert results["input renames"].status is Status.OK
    failed = results[f"watch root {missing}"]
    assert failed.status is Status.FAIL
    assert "watch_root" in (failed.fix or "")
    assert "free space" in results
    assert not any(name.startswith(("input folder", "output folder")) for name in results)


def test_free_space_below_min_free_percent_fails_the_check(tmp_path: Path) -> None:
    usage = shutil.disk_usage(tmp_path)
    free = 100 * usage.free / usage.total
    below = check_free_space(tmp_path, 0, min_free_percent=min(99.9, free + 0.1))
    assert below.status is Status.FAIL
    assert "below min_free_percent" in below.message
    assert check_free_space(tmp_path, 0, min_free_percent=max(0.0, free - 0.1)).status is Status.OK
