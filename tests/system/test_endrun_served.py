"""End of run with a real `reactor serve`: exit_on_complete ends the process with code 0
after on_complete ran, and MinKNOW's layout (summary in the run folder) is found."""

from __future__ import annotations

import json
import shlex
import sys
import urllib.request
from pathlib import Path

import pytest

from reactor.disk.marker import marker_path
from tests.support.pod5files import write_pod5
from tests.support.served import ServedRun, wait_for

pytestmark = pytest.mark.slow

_RECORD = (
    "import json, os, sys\n"
    "run = {k: v for k, v in os.environ.items() if k.startswith('REACTOR_RUN_')}\n"
    "open(sys.argv[1], 'a').write(json.dumps(run) + '\\n')\n"
)


def test_exit_on_complete_ends_serve_with_code_0_after_the_command(tmp_path: Path) -> None:
    run = ServedRun(tmp_path)
    env_file = tmp_path / "env.jsonl"
    name = "PAK00000_pass_abcdef12_0123abcd_0.pod5"
    write_pod5(run.input_dir / name, n_reads=1, seed=0)
    command = shlex.join([sys.executable, "-c", _RECORD, str(env_file)])
    run.start_server("--on-complete", command, "--exit-on-complete")
    try:
        assert run.status()["phase"] == "running"
        # MinKNOW writes the summary into the run folder, the parent of the pod5 folder.
        (tmp_path / "final_summary_PAK00000_abcdef12_0123abcd.txt").write_text("x\n")
        wait_for(lambda: run.status()["phase"] == "finishing", 10, "phase finishing")
        # The one file is still ready: an engine takes it and reports DONE.
        job = json.loads(_get(f"{run.url}/assignwork?engineid=gpu-0&batchsize=1"))
        assert job["batch"] == [name]
        _get(f"{run.url}/completed?job_id={job['jobid']}&job_state=DONE")
        server = run.server
        assert server is not None
        assert server.wait(timeout=30) == 0
    finally:
        run.stop_server()
    (recorded,) = [json.loads(line) for line in env_file.read_text().splitlines()]
    assert recorded["REACTOR_RUN_FILES_DONE"] == "1"
    assert recorded["REACTOR_RUN_DIR"] == str(tmp_path)
    assert json.loads((marker_path(run.output_dir)).read_text())["exit_code"] == 0
    logged = [json.loads(line) for line in (run.logs / "server-1.jsonl").read_text().splitlines()]
    names = [entry["event"] for entry in logged]
    assert names.index("on_complete_finished") < names.index("exiting") < names.index("stopped")
    assert next(e for e in logged if e["event"] == "exiting")["reason"] == "run_complete"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our own server
        text: str = reply.read().decode()
        return text
