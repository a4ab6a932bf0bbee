"""`reactor demo --flow-cells N`: a sequencer host with N flow cells at once, ending with
an exactly-once proof per run.

As real processes in a fresh folder: one `reactor serve --watch-root` for the whole
host, the host simulator (`reactor simulate-run --flow-cells N`: staggered runs in
MinKNOW's layouts, files moved in from `tmp/`, two runs pooled in one sample folder, a
final summary and an output hash per run) and a few engines given the root, running the
stand-in basecaller as dorado (`reactor engine --preset fake-dorado-bam`: unaligned BAM,
reads split and dropped as dorado does). It shows each run's progress while they go on,
stops everything once every run is complete, then proves each run twice: the service's
own read counts (`/status`: reads, bases, N50, the pass split, and the read-level
accounting it kept job by job) and `reactor verify` on the run's outputs, which reads
every `.pod5` read id and every record of MinKNOW's `bam_pass/` + `bam_fail/` again.
Exit code 0 only if every read of every run is in its own run's outputs exactly once
(or was dropped by the basecaller), and both agree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from reactor.core.minknow import parse_pod5_name
from reactor.core.readstats import human_bases
from reactor.sim.demo import TIMEOUT_S, Demo, get_json, play, unusable, wrap_up
from reactor.sim.host_sim import KIT, LAYOUTS

SHOWN = {"current": "pod5/"}  # a layout's name in the table


@dataclass(frozen=True)
class RunVerdict:
    run: str
    layout: str
    phase: str
    files: int
    served: dict[str, Any]  # the service's read counts of the run (/status)
    verified: dict[str, Any]  # `reactor verify --json` of its outputs
    barcodes: int  # alias folders of its outputs (bam_pass/patient_a/, …)

    @property
    def ok(self) -> bool:
        """Exactly once by both, and both count the same reads."""
        accounting = self.served.get("accounting", {})
        verified = self.verified
        return (
            bool(verified.get("exactly_once"))
            and bool(accounting.get("exactly_once"))
            and verified.get("files_done") == self.files
            and verified.get("records") == self.served.get("reads")
            and verified.get("bases") == self.served.get("bases")
            and verified.get("counted") == accounting.get("counted")
        )


def alias_folders(output_dir: Path) -> int:
    """How many barcode aliases the run's reads went to (folders in MinKNOW's layout)."""
    names = {
        path.name
        for top in ("bam_pass", "bam_fail", "fastq_pass", "fastq_fail")
        if (output_dir / top).is_dir()
        for path in (output_dir / top).iterdir()
        if path.is_dir()
    }
    return len(names)


def verify_run(output_dir: Path) -> dict[str, Any]:
    """`reactor verify OUTPUT_DIR --json`, run as a person would; {} if it cannot say."""
    done = subprocess.run(
        [sys.executable, "-m", "reactor", "verify", str(output_dir), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {}
    return result


def run_files(folder: Path, key: str) -> list[Path]:
    """A run's `.pod5` files: in its POD5 folders and their barcode folders, only its own
    names (a pooled folder holds other runs' files too)."""
    found = []
    for pod5_folder in sorted(folder.glob("pod5*")):
        for path in sorted([*pod5_folder.glob("*.pod5"), *pod5_folder.glob("*/*.pod5")]):
            parsed = parse_pod5_name(path.name)
            if parsed is not None and str(parsed.key) == key:
                found.append(path)
    return found


class HostDemo(Demo):
    """The demo's processes, with a host's root in place of one run's folders."""

    def make_folders(self) -> None:
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.written_to = self.data
        self.engine_folders = (self.data, self.data)  # engines are given the root

    def serve_argv(self, port: int) -> list[str]:
        # The lab's rule: a run whose sample sheet names barcodes is classified with its
        # kit (the stand-in then writes barcodes, and its reads go to alias folders).
        settings = self.root / "reactor.toml"
        settings.write_text(
            f'[[rules]]\nwhen = {{ barcoded = true }}\nset = {{ kit_name = "{KIT}" }}\n'
        )
        return [
            "reactor", "serve", "--config", str(settings), "--watch-root", str(self.data),
            "--listen", f"127.0.0.1:{port}", "--report-back-interval", "10",
            "--sweep-interval", "1", "--settle-seconds", "2", "--log-format", "json",
        ]  # fmt: skip

    def engine_argv(self, number: int) -> list[str]:
        argv = super().engine_argv(number)
        argv[argv.index("--preset") + 1] = "fake-dorado-bam"
        return argv

    def simulator_argv(self) -> list[str]:
        return [
            *super().simulator_argv(),
            "--flow-cells",
            str(self.args.flow_cells),
            "--stagger",
            str(self.args.stagger),
        ]

    def follow(self) -> dict[str, Any]:
        """Show each run's progress until every run is complete. Returns the last /status."""
        began = time.monotonic()
        last_line = 0.0
        simulator = self.processes["simulate-run"]
        wanted = self.args.flow_cells
        while True:
            status = get_json(f"{self.url}/status") or {}
            runs = status.get("runs", [])
            now = time.monotonic()
            if self.tty or now - last_line >= 2.0:
                self._show_runs(runs, now - began)
                last_line = now
            finished = simulator.poll() is not None
            if finished and simulator.returncode != 0:
                msg = f"the simulator failed; see {self.logs / 'simulate-run.log'}"
                raise RuntimeError(msg)
            complete = len(runs) == wanted and all(r["phase"] == "complete" for r in runs)
            if finished and complete:
                if self.tty:
                    self.out.write("\n")
                return status
            if now - began > TIMEOUT_S:
                msg = f"the runs did not complete in {TIMEOUT_S:.0f} s; see {self.logs}"
                raise RuntimeError(msg)
            time.sleep(0.25)

    def _show_runs(self, runs: list[dict[str, Any]], elapsed: float) -> None:
        cells = [
            f"{r['flow_cell']} {r['done']:3d}/{self.args.files} {r['phase'][:8]:<8}"
            for r in sorted(runs, key=lambda r: str(r["run"]))
        ]
        line = f"{elapsed:6.1f}s  runs {len(runs)}/{self.args.flow_cells}  " + "  ".join(cells)
        self.out.write(f"\r{line}" if self.tty else f"{line}\n")
        self.out.flush()


def host_table(verdicts: list[RunVerdict], elapsed_s: float, engines: int) -> str:
    head = (
        "run", "layout", "files", "pod5 reads", "records", "bases", "N50", "pass",
        "barcodes", "split", "dropped", "wrong", "verify", "end",
    )  # fmt: skip
    rows = [head]
    for v in verdicts:
        served, verified = v.served, v.verified
        accounting = served.get("accounting", {})
        reads = served.get("reads", 0)
        rows.append(
            (
                v.run, v.layout, str(v.files), str(accounting.get("pod5_reads", 0)), str(reads),
                human_bases(served.get("bases", 0)), human_bases(served.get("n50", 0)),
                f"{100 * served.get('pass_reads', 0) / reads:.0f} %" if reads else "-",
                str(v.barcodes) if v.barcodes else "-",
                str(accounting.get("subreads", 0)), str(accounting.get("dropped", 0)),
                str(accounting.get("unknown", 0) + accounting.get("duplicates", 0)),
                "once" if verified.get("exactly_once") else "FAILED", v.phase,
            )
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        ("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]
    ok = bool(verdicts) and all(v.ok for v in verdicts)
    reads = sum(v.served.get("accounting", {}).get("pod5_reads", 0) for v in verdicts)
    bases = sum(v.served.get("bases", 0) for v in verdicts)
    lines += [
        "",
        f"  runs {len(verdicts)}, pod5 reads {reads}, bases {bases} ({human_bases(bases)}), "
        f"engines {engines}, wall time {elapsed_s:.1f} s",
        "  pass: qs >= the run's min_qscore; split: subreads (pi); dropped: reads the",
        "  basecaller wrote no record for; wrong: records written twice or of no file",
        "  verdict  "
        + (
            "every read of every run basecalled exactly once, in its own run "
            "(the service's counts and reactor verify agree)"
            if ok
            else "FAILED"
        ),
    ]
    return "\n".join(lines)


def run_host_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """The host demo with the options of `reactor demo --flow-cells N`; 0 only if every
    read of every run was basecalled exactly once."""
    if unusable(args):
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-demo-host-"))
    demo = HostDemo(args, root, out)
    out.write(
        f"pod5-reactor demo: a host with {args.flow_cells} flow cells, {args.files} files x "
        f"{args.reads_per_file} reads each, {args.engines} engines, in {root}\n"
    )
    played = play(demo)
    if isinstance(played, int):
        return played
    verdicts = []
    for run in sorted(played.status["runs"], key=lambda r: str(r["run"])):
        files = run_files(Path(run["folder"]), run["run"])
        layout = LAYOUTS[(int(run["flow_cell"][3:]) - 1) % len(LAYOUTS)]
        verdicts.append(
            RunVerdict(
                run["run"], SHOWN.get(layout, layout), run["phase"], len(files),
                run.get("reads", {}), verify_run(Path(run["output_dir"])),
                alias_folders(Path(run["output_dir"])),
            )
        )  # fmt: skip
    out.write("\n" + host_table(verdicts, played.elapsed_s, args.engines) + "\n")
    ok = len(verdicts) == args.flow_cells and all(v.ok for v in verdicts)
    return wrap_up(demo, played, ok=ok, what="host folder")
