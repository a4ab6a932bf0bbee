"""A real `reactor serve` restarting on a run folder of thousands of files: child
processes look at them (reactor.disk.input_lister), and every file is there once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reactor.core.names import POD5_SIGNATURE
from reactor.disk.input_lister import CHILD_FROM_BYTES
from tests.support.launch import fetch_json, free_port, serve_args
from tests.support.paths import REPO
from tests.support.served import wait_for

START_S = 30.0
FILES = 3000


def test_a_large_input_folder_is_looked_at_by_child_processes(tmp_path: Path) -> None:
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    (output_dir / "pass").mkdir(parents=True)
    whole = POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE
    for number in range(FILES):
        name = f"PAK00000_pass_0123abcd_{number}.pod5"
        (input_dir / name).write_bytes(whole if number % 10 else whole[:-1])
        if number % 7 == 0:  # done by the seed's rule
            (output_dir / "pass" / f"{name[:-5]}.fastq").write_text("")
    assert input_dir.stat().st_size >= CHILD_FROM_BYTES  # large enough for children
    expected_done = len(range(0, FILES, 7))
    expected_incomplete = len([n for n in range(FILES) if n % 10 == 0 and n % 7])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.jsonl"
    with (
        log.open("w") as out,
        subprocess.Popen(
            [sys.executable, "-m", *serve_args(input_dir, output_dir, port, log_format="json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        ) as serve,
    ):
        try:
            wait_for(lambda: fetch_json(f"{url}/readyz") is not None, START_S, "serve ready")
            status = fetch_json(f"{url}/status")
        finally:
            serve.terminate()
            serve.wait(START_S)
    assert status is not None
    files = status["files"]
    assert files["done"] == expected_done
    assert files["incomplete"] == expected_incomplete
    assert files["ready"] == FILES - expected_done - expected_incomplete
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (recovered,) = [e for e in events if e["event"] == "recovered"]
    assert (recovered["looked_by"], recovered["looks_began"]) == ("children", "before_watch")
    assert not [e for e in events if e["event"] == "scan_child_failed"]
