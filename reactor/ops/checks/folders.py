"""`reactor check`'s checks of the run folders: there, writable, and fit for the journal.

What the folders must allow follows `reactor.disk.journal`: in INPUTDIR reactor makes a
staging folder of relative symlinks and renames it to ``ASSIGNED_…``; in OUTPUTDIR it
makes staging folders, replaces its records (in ``OUTPUTDIR/.reactor``) by writing a new
file and renaming it over the old one, and renames each output from
``TMPOUTPUT_…/pass`` into ``OUTPUTDIR/pass`` (and ``fail``). No rename crosses from
INPUTDIR to OUTPUTDIR, so they may be on different filesystems; but ``pass/`` and
``fail/`` must be on OUTPUTDIR's, or those renames fail (EXDEV). The folder checks try
exactly those operations on hidden ``.reactor-check-*`` names (which the watcher
ignores) and remove what they made. The state folder itself is checked, never written,
by `reactor.ops.checks.state_folder`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path

from reactor.core.names import RESULT_FOLDERS
from reactor.ops.checks.result import CheckResult, Status, strerror
from reactor.settings.folders import folder_problem

_PROBE_PREFIX = ".reactor-check-"


def _probe_name() -> str:
    return f"{_PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- folders


def check_input_folder(
    path: Path, *, name: str = "input folder", key: str = "input_dir"
) -> CheckResult:
    """INPUTDIR (in host mode, a watch root) exists, is a folder, and this user can list
    and write it."""
    problem = folder_problem(path, key)
    if problem is not None:
        return CheckResult(name, Status.FAIL, *problem)
    if not os.access(path, os.R_OK | os.X_OK):
        return CheckResult(
            name,
            Status.FAIL,
            f"{path} cannot be listed by this user (uid {os.geteuid()})",
            f"give this user read access (chmod/chown/setfacl -m u:USER:rx {path})",
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return CheckResult(
            name,
            Status.FAIL,
            f"{path} is not writable by this user (uid {os.geteuid()}): reactor creates "
            "ASSIGNED_ folders of links there (it never changes the .pod5 files)",
            f"give this user write access to the folder (setfacl -m u:USER:rwx {path})",
        )
    return CheckResult(name, Status.OK, f"{path} is a folder this user can read and write")


def check_output_folder(
    path: Path, *, name: str = "output folder", key: str = "output_dir"
) -> CheckResult:
    """OUTPUTDIR exists (serve does not create it) and a file can be made and removed there."""
    problem = folder_problem(path, key)
    if problem is not None:
        message, fix = problem
        if not path.exists() and not path.is_symlink():
            parent = _existing_parent(path)
            if parent is not None and os.access(parent, os.W_OK | os.X_OK):
                fix = f"mkdir -p {path} (reactor serve does not create it; {parent} is writable)"
            else:
                fix = f"create it (reactor serve does not): sudo mkdir -p {path} and chown it"
        return CheckResult(name, Status.FAIL, message, fix)
    failure = _write_probe(path)
    if failure is not None:
        return CheckResult(
            name,
            Status.FAIL,
            f"cannot create a file in {path} ({failure})",
            f"give this user write access (setfacl -m u:USER:rwx {path}), or check that "
            "the filesystem is not read-only or full",
        )
    return CheckResult(name, Status.OK, f"{path} is a folder where this user can write")


def check_result_folders(output_dir: Path) -> CheckResult:
    """pass/ and fail/: folders on OUTPUTDIR's filesystem where this user can write, or
    missing (serve creates them)."""
    name = "pass/ and fail/"
    found = []
    try:
        output_device = output_dir.stat().st_dev
    except OSError as err:
        return CheckResult(name, Status.SKIP, f"output folder unusable ({strerror(err)})")
    for folder_name in RESULT_FOLDERS:
        folder = output_dir / folder_name
        try:
            info = folder.stat()
        except FileNotFoundError:
            continue
        except OSError as err:
            return CheckResult(
                name,
                Status.FAIL,
                f"{folder} cannot be reached ({strerror(err)})",
                "fix its permissions",
            )
        if not stat.S_ISDIR(info.st_mode):
            return CheckResult(
                name,
                Status.FAIL,
                f"{folder} is not a folder",
                f"move it away so reactor can create {folder_name}/",
            )
        if info.st_dev != output_device:
            return CheckResult(
                name,
                Status.FAIL,
                f"{folder} is on another filesystem than {output_dir}: moving outputs into it "
                "cannot be an atomic rename",
                f"make {folder_name}/ a plain folder of {output_dir} (not a mount point or "
                "a link to another disk)",
            )
        failure = _write_probe(folder)
        if failure is not None:
            return CheckResult(
                name,
                Status.FAIL,
                f"cannot create a file in {folder} ({failure})",
                f"give this user write access to {folder}",
            )
        found.append(folder_name)
    if len(found) == len(RESULT_FOLDERS):
        return CheckResult(name, Status.OK, "both are folders on the output filesystem, writable")
    missing = " and ".join(f"{n}/" for n in RESULT_FOLDERS if n not in found)
    return CheckResult(name, Status.OK, f"{missing} missing: reactor serve creates them")


def check_input_journal(input_dir: Path) -> CheckResult:
    """What assigning a job does in INPUTDIR: a staging folder, a relative symlink in it,
    a rename of the folder."""
    name = "input renames"
    stage = input_dir / _probe_name()
    renamed = stage.with_name(stage.name + "-renamed")
    step = f"create a folder in {input_dir}"
    try:
        stage.mkdir()
        step = f"create a symlink in {input_dir}"
        (stage / "probe.pod5").symlink_to(Path("..") / "probe.pod5")
        step = f"rename a folder in {input_dir}"
        stage.rename(renamed)
    except OSError as err:
        fix = "give this user write access to the folder"
        if step.startswith("create a symlink"):
            fix = (
                "use a filesystem with symlinks for input_dir (for SMB/CIFS, mount with "
                "the mfsymlinks option)"
            )
        return CheckResult(name, Status.FAIL, f"cannot {step} ({strerror(err)})", fix)
    finally:
        _remove_probe(renamed)
        _remove_probe(stage)
    return CheckResult(
        name, Status.OK, "a folder of relative symlinks can be built and renamed in input_dir"
    )


def check_output_journal(output_dir: Path) -> CheckResult:
    """What finishing a job does in OUTPUTDIR: a record replaced by a rename, outputs
    renamed from a job folder into pass/ and fail/."""
    name = "output renames"
    stage = output_dir / _probe_name()
    moved: list[Path] = []
    step = f"create a folder in {output_dir}"
    try:
        stage.mkdir()
        step = f"replace a file in {stage.name}"
        (stage / "record.tmp").write_text("{}", encoding="utf-8")
        (stage / "record.tmp").replace(stage / "record.json")
        for folder_name in RESULT_FOLDERS:
            target_folder = output_dir / folder_name
            if not target_folder.is_dir():
                continue
            step = f"rename a file from a job folder into {folder_name}/"
            source = stage / f"probe-{folder_name}.fastq"
            source.write_text("", encoding="utf-8")
            target = target_folder / f"{stage.name}.fastq"
            source.rename(target)
            moved.append(target)
    except OSError as err:
        fix = "give this user write access"
        if err.errno == errno.EXDEV:
            fix = "keep pass/ and fail/ on the output folder's filesystem"
        return CheckResult(name, Status.FAIL, f"cannot {step} ({strerror(err)})", fix)
    finally:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        _remove_probe(stage)
    return CheckResult(
        name, Status.OK, "records can be replaced and outputs renamed into pass/ and fail/"
    )


def _existing_parent(path: Path) -> Path | None:
    for parent in path.absolute().parents:
        if parent.is_dir():
            return parent
    return None


def _write_probe(folder: Path) -> str | None:
    """None if a file can be created and removed in `folder`, else why not."""
    probe = folder / _probe_name()
    try:
        with open(probe, "x", encoding="utf-8") as file:
            file.write("reactor check\n")
    except OSError as err:
        with contextlib.suppress(OSError):  # it may exist, empty, if the write failed
            probe.unlink()
        return strerror(err)
    try:
        probe.unlink()
    except OSError as err:
        return f"created {probe.name} but cannot remove it: {strerror(err)}"
    return None


def _remove_probe(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- space


def check_free_space(
    output_dir: Path, min_free_bytes: int, min_free_percent: float = 0.0
) -> CheckResult:
    name = "free space"
    try:
        usage = shutil.disk_usage(output_dir)
    except OSError as err:
        return CheckResult(name, Status.SKIP, f"cannot measure {output_dir} ({strerror(err)})")
    figure = f"{_gb(usage.free)} free of {_gb(usage.total)} on the filesystem of {output_dir}"
    percent = 100 * usage.free / usage.total if usage.total else 100.0
    if percent < min_free_percent:
        return CheckResult(
            name,
            Status.FAIL,
            f"only {figure} ({percent:.1f} %), below min_free_percent ({min_free_percent:g} %): "
            "serve hands out no work until there is more",
            "free space there (move finished runs' results away), or point the output "
            "elsewhere (output_dir, output_root)",
        )
    if usage.free < min_free_bytes:
        return CheckResult(
            name,
            Status.WARN,
            f"only {figure}, below the {_gb(min_free_bytes)} asked for",
            "free some space or point output_dir at a larger disk; basecalled output of a "
            "PromethION run can reach hundreds of GB (--min-free-gb sets this threshold)",
        )
    return CheckResult(name, Status.OK, figure)


def _gb(count: int) -> str:
    return f"{count / 1e9:.1f} GB"


# --------------------------------------------------------------------------- access
