"""Starting a real `reactor serve`: a free loopback port, the arguments of
`python -m reactor serve`, and a JSON GET that answers None while the server is away.

Used by the tests, the torture and load drivers and the benchmarks. Nothing here
imports pytest, so the drivers run without it.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_args(input_dir: Path, output_dir: Path, port: int, **settings: object) -> list[str]:
    """Module arguments (for `python -m`) of `reactor serve` on a run folder, listening
    on 127.0.0.1:`port`; each keyword is a setting: `sweep_interval=1` gives
    `--sweep-interval 1`."""
    args = [
        "reactor", "serve",
        "--input-dir", str(input_dir),
        "--output-dir", str(output_dir),
        "--listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def fetch_json(url: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """GET `url` and parse its JSON body; None if there is no answer or no JSON."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 - our own server
            result: dict[str, Any] = json.load(reply)
            return result
    except (OSError, ValueError):
        return None
