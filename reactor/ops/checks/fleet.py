"""`reactor check`'s look at the fleet: do Slurm's commands work from here (or through
`submit_via`) and read back as the fleet reads them? Only squeue runs: nothing is
submitted or cancelled."""

from __future__ import annotations

import subprocess

from reactor.cluster.slurm import SlurmError, parse_squeue, squeue_args, through
from reactor.ops.checks.result import CheckResult, Status
from reactor.settings.serve import ServeConfig

NAME = "fleet (Slurm)"


def check_fleet(config: ServeConfig) -> CheckResult:
    fleet = config.fleet
    if fleet is None:
        return CheckResult(NAME, Status.SKIP, "no [fleet] in the settings")
    line = through(fleet, squeue_args(fleet))
    where = f"through {' '.join(fleet.submit_via)}" if fleet.submit_via else "here"
    fix_here = (
        "install Slurm's commands and make this host a submit host (munge key, slurm.conf), "
        'or set submit_via in [fleet], such as ["ssh", "login-node"]'
    )
    try:
        done = subprocess.run(
            line, capture_output=True, text=True, timeout=fleet.command_timeout, check=False
        )
    except FileNotFoundError:
        return CheckResult(NAME, Status.FAIL, f"{line[0]} is not installed {where}", fix_here)
    except subprocess.TimeoutExpired:
        return CheckResult(
            NAME,
            Status.FAIL,
            f"squeue {where} did not answer within {fleet.command_timeout:g} s",
            "check the login node answers (ssh -o BatchMode=yes ...) and Slurm's controller",
        )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else f"exit {done.returncode}"
        return CheckResult(NAME, Status.FAIL, f"squeue {where} failed: {last}", fix_here)
    try:
        jobs = parse_squeue(done.stdout)
    except SlurmError as exc:
        return CheckResult(
            NAME, Status.FAIL, str(exc), "check that squeue is Slurm's, and submit_via adds nothing"
        )
    jobs_named = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} named {fleet.name}"
    return CheckResult(NAME, Status.OK, f"squeue {where} answers; {jobs_named}")
