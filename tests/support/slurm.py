"""A real single-node Slurm cluster for the fleet's tests: Debian's slurm-wlm and munge.

`start_cluster(folder)` writes a minimal `slurm.conf` in `folder` (ports picked free, state
and logs inside it), starts `munged` with a key of its own, then `slurmctld` and `slurmd`
on localhost, and returns once the node is idle. `stop()` cancels every job, waits for
the queue to empty and stops the daemons by their pids. Commands reach it through
`SLURM_CONF` (`cluster.env`), so nothing under /etc is touched.

The node declares more CPUs than the machine has (`SlurmdParameters=config_overrides`), so
more than two 1-CPU engine jobs run at once on a 2-core machine; it has no GPU, and the
fleet's tests submit without `--gres`. It needs root (slurmd runs jobs as their user) and
the packages: `.ci/run` installs them; without them the tests skip, or fail under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tools import skip_for_missing_tool

PARTITION = "reactor"
NODE_CPUS = 16
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def require_slurm() -> None:
    """Skip (fail under CI=true) unless Slurm and munge are installed and this is root."""
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if missing:
        skip_for_missing_tool(
            f"{', '.join(missing)} (Debian's slurm-wlm and munge: apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        skip_for_missing_tool("root, which slurmd needs to run jobs (these tests start a cluster)")


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    env: dict[str, str]
    pids: dict[str, Path] = field(default_factory=dict)  # daemon -> its pid file
    partition: str = PARTITION

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        """Run a Slurm command against this cluster; its standard output."""
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            msg = f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            raise RuntimeError(msg)
        return done.stdout

    def jobs(self, name: str | None = None) -> dict[str, str]:
        """Job id -> state of the jobs in the queue (of one job name, if given)."""
        args = ["squeue", "--noheader", "-o", "%i %T"]
        if name is not None:
            args.append(f"--name={name}")
        found = {}
        for line in self.run(*args).splitlines():
            if line.strip():
                job_id, state = line.split()
                found[job_id] = state
        return found

    def cancel_all(self, name: str | None = None) -> None:
        """Cancel every job (of one name), and wait until the queue has none left."""
        args = ["scancel", "--full"] + ([f"--name={name}"] if name else ["--user=root"])
        self.run(*args, check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.jobs(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = self.jobs(name)
        if left:
            msg = f"jobs still in the queue after cancelling them: {left}"
            raise RuntimeError(msg)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cancel_all()
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid_file = self.pids.get(daemon)
            if pid_file is None:
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                _stop_pid(int(pid_file.read_text().strip()))


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _conf(folder: Path, ctld_port: int, d_port: int) -> str:
    return f"""\
ClusterName=reactortest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=3
MinJobAge=2
NodeName=localhost CPUs={NODE_CPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster(folder: Path) -> SlurmCluster:
    """A running single-node cluster with its files in `folder` (see the module)."""
    require_slurm()
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    key = folder / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    ctld_port, d_port = _free_ports(2)
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, ctld_port, d_port))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(folder, conf, env)
    try:
        subprocess.run(
            [
                "munged", "--force", f"--socket={folder}/munge.socket", f"--key-file={key}",
                f"--log-file={folder}/log/munged.log", f"--pid-file={folder}/munged.pid",
                f"--seed-file={folder}/munge.seed",
            ],
            check=True, timeout=30, capture_output=True,
        )  # fmt: skip
        cluster.pids["munged"] = folder / "munged.pid"
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(conf)], check=True, timeout=30, env=env)
            cluster.pids[daemon] = folder / f"{daemon}.pid"
        _wait_idle(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_idle(cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        state = cluster.run("sinfo", "--noheader", "-o", "%T", check=False).strip()
        if state == "idle":
            return
        time.sleep(0.2)
    log = (cluster.folder / "log" / "slurmctld.log").read_text(errors="replace")[-2000:]
    msg = f"the Slurm node is {state or 'unknown'!r}, not idle, after {START_TIMEOUT_S:g} s:\n{log}"
    raise RuntimeError(msg)
