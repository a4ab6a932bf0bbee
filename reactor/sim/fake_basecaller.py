"""`reactor fake-basecaller IN OUT`: a stand-in for dorado, for tests and demos.

This is the folder mode. With `--dorado IN` (no OUT) the same command writes instead one
stream on stdout as `dorado basecaller` does (unaligned BAM, or FASTQ), with dorado's
header and tags, reads dropped, split and barcoded: `reactor.sim.dorado_stream`, the
records from `reactor.sim.dorado_reads`.

No GPU here, so this reads every `*.pod5` in IN (symlinks followed, sorted by name) with the
`pod5` library and writes one FASTQ record per read, named by its read id:

- `OUT/pass/<stem>.fastq` and `OUT/fail/<stem>.fastq`, one pair per input `<stem>.pod5`
  (a file is written only when it gets at least one record). A read **fails when the first
  hex digit of its id is `0` or `1`** (1 read in 8 on average), and passes otherwise.
- The header is dorado's: the read id, then tab-separated tags, `qs:f:` the read's mean
  quality (below 10 for the reads that fail, 10 to 25 for the others, from the read id),
  `ch:i:` a channel, `fn:Z:` its POD5's name, `RG:Z:fake-basecaller`; the sequence has one
  base per `SAMPLES_PER_BASE` signal samples (at least one) and is spelled from the read
  id, with a quality of `qs` at every base, so the same input always gives the same
  output.
- Each output is written under a hidden staging name (`.<stem>.fastq.tmp`) in its final
  folder and renamed into place once its input is done, as dorado's outputs would be moved.

Faults on demand, to exercise the manager: `--fail-rate`, `--fail-on`,
`--crash-after-reads` (see `reactor.commands.fake_basecaller`). Exit codes: 0 done, 1
failed (on purpose, or an unreadable input), 2 a usage mistake, 137 the simulated crash.
The `pod5` library is imported when the command runs (the `sim` extra), never at import
time.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeVar

from reactor.core.names import is_pod5_name

PROG = "reactor fake-basecaller"
SAMPLES_PER_BASE = 10  # dorado at 5 kHz and ~400 bases/s gives about 12.5
CRASH_EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL
_BASES = "ACGT"

ReadTable = list[tuple[str, int]]  # (read id, signal samples), in file order
Table = TypeVar("Table")  # one input's reads, as a reader gives them


class ResultFolder(StrEnum):
    """Which output folder a read goes to."""

    PASS = "pass"  # noqa: S105  # a folder name, not a password
    FAIL = "fail"


def result_folder(read_id: str) -> ResultFolder:
    """FAIL when the read id starts with hex digit 0 or 1, PASS otherwise."""
    return ResultFolder.FAIL if read_id[:1] in {"0", "1"} else ResultFolder.PASS


def sequence_length(n_samples: int) -> int:
    """Bases called from `n_samples` signal samples: one per SAMPLES_PER_BASE, at least 1."""
    return max(1, n_samples // SAMPLES_PER_BASE)


def mean_qscore(read_id: str) -> float:
    """The read's `qs` as dorado would report it, from its id: Q2-Q9.5 for the reads that
    go to fail (`result_folder`), Q10-Q25 for the others."""
    digits = [int(char, 16) for char in read_id if char != "-"] or [0]
    spread = (digits[-1] * 16 + digits[-2 if len(digits) > 1 else 0]) / 255
    if result_folder(read_id) is ResultFolder.FAIL:
        return round(2 + 7.5 * spread, 2)
    return round(10 + 15 * spread, 2)


def spell_bases(read_id: str, length: int) -> str:
    """`length` bases spelled from the read id: two bases per hex digit, repeated."""
    digits = [int(char, 16) for char in read_id if char != "-"]
    pattern = "".join(_BASES[digit >> 2] + _BASES[digit & 3] for digit in digits) or "A"
    return (pattern * (length // len(pattern) + 1))[:length]


def fastq_record(read_id: str, n_samples: int, pod5_name: str) -> str:
    """The four FASTQ lines of one read, the header as dorado writes it (the read id, then
    tab-separated tags: `qs` its mean quality, `ch` its channel, `fn` its POD5's name,
    `RG` the run and model); the same arguments always give the same text."""
    digits = [int(char, 16) for char in read_id if char != "-"]
    length = sequence_length(n_samples)
    bases = spell_bases(read_id, length)
    qs = mean_qscore(read_id)
    quality = chr(33 + round(qs)) * length
    channel = 1 + sum(digits) % 3000
    tags = f"qs:f:{qs}\tch:i:{channel}\tfn:Z:{pod5_name}\tRG:Z:fake-basecaller"
    return f"@{read_id}\t{tags}\n{bases}\n+\n{quality}\n"


def fastq_records(
    reads: Iterable[tuple[str, int]], pod5_name: str
) -> Iterator[tuple[ResultFolder, str]]:
    """`(result folder, FASTQ record)` for each `(read id, samples)` of one input, in order."""
    for read_id, n_samples in reads:
        yield result_folder(read_id), fastq_record(read_id, n_samples, pod5_name)


class BadInput(Exception):
    """An input the fake basecaller cannot read; the message names the file."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def list_inputs(folder: Path) -> list[Path]:
    """The `*.pod5` entries of `folder` (files or symlinks to them), sorted by name."""
    with os.scandir(folder) as entries:
        names = [
            entry.name
            for entry in entries
            if is_pod5_name(entry.name) and not entry.is_dir(follow_symlinks=True)
        ]
    return [folder / name for name in sorted(names)]


def read_inputs(paths: list[Path], read_table: Callable[[Path], Table]) -> list[tuple[Path, Table]]:
    """Every input's read table (as `read_table` reads one), or BadInput naming the first
    file that cannot be read."""
    tables = []
    for path in paths:
        try:
            tables.append((path, read_table(path)))
        except Exception as exc:  # pod5 raises RuntimeError, OSError, ... for bad files
            msg = f"cannot read {path.name}: {_one_line(exc)}; it is corrupt or not a POD5 file"
            raise BadInput(msg) from exc
    return tables


@dataclass(slots=True)
class _Tally:
    files: int = 0
    reads: int = 0
    by_folder: dict[ResultFolder, int] = field(
        default_factory=lambda: dict.fromkeys(ResultFolder, 0)
    )


class _Staged:
    """One input's outputs: a staging file per result folder, opened on its first record."""

    def __init__(self, output: Path, stem: str) -> None:
        self.output = output
        self.stem = stem
        self.handles: dict[ResultFolder, IO[str]] = {}

    def _final(self, kind: ResultFolder) -> Path:
        return self.output / kind / f"{self.stem}.fastq"

    def _staging(self, kind: ResultFolder) -> Path:
        return self.output / kind / f".{self.stem}.fastq.tmp"

    def write(self, kind: ResultFolder, text: str) -> None:
        if kind not in self.handles:
            self.handles[kind] = open(self._staging(kind), "w", encoding="ascii")  # noqa: SIM115
        self.handles[kind].write(text)

    def flush(self) -> None:
        for handle in self.handles.values():
            handle.flush()

    def commit(self) -> None:
        """Close the staging files and rename them into place."""
        for kind, handle in self.handles.items():
            handle.close()
            self._staging(kind).replace(self._final(kind))
        self.handles.clear()

    def discard(self) -> None:
        for kind, handle in self.handles.items():
            handle.close()
            self._staging(kind).unlink(missing_ok=True)
        self.handles.clear()


def _crash(staged: _Staged | None, reads: int) -> None:
    """Die like a killed process: outputs so far stay as they are, nothing is renamed."""
    if staged is not None:
        staged.flush()
    print(f"{PROG}: crashing on purpose after {reads} reads (--crash-after-reads)", file=sys.stderr)
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def _basecall(tables: list[tuple[Path, ReadTable]], args: argparse.Namespace) -> _Tally:
    tally = _Tally()
    crash_after: int | None = args.crash_after_reads
    if crash_after == 0:
        _crash(None, 0)
    for path, reads in tables:
        staged = _Staged(args.output, path.name.removesuffix(".pod5"))
        try:
            for kind, text in fastq_records(reads, path.name):
                if args.delay_per_read > 0:
                    time.sleep(args.delay_per_read)
                staged.write(kind, text)
                tally.reads += 1
                tally.by_folder[kind] += 1
                if tally.reads == crash_after:
                    _crash(staged, tally.reads)
            staged.commit()
        except BaseException:
            staged.discard()
            raise
        tally.files += 1
    return tally


def fails_on_purpose(args: argparse.Namespace, inputs: list[Path]) -> str | None:
    """The reason this run fails on purpose, if it does."""
    poison = sorted(set(args.fail_on) & {path.name for path in inputs})
    if poison:
        return f"failing on purpose: {poison[0]} is in {args.input} (--fail-on)"
    # A seeded generator makes a simulated failure repeatable; this is not for secrets.
    if args.fail_rate > 0 and random.Random(args.seed).random() < args.fail_rate:  # noqa: S311
        return f"failing on purpose (--fail-rate {args.fail_rate})"
    return None


def usable_inputs(args: argparse.Namespace) -> list[Path] | int:
    """The inputs of `args.input`, or the exit code when there is nothing to basecall:
    2 when the pod5 library or the folder is missing, 1 when failing on purpose (each
    said on stderr)."""
    try:
        from reactor.sim import pod5_files  # noqa: F401  # present: the sim extra
    except ImportError:
        print(f"{PROG}: needs the pod5 library: pip install 'pod5-reactor[sim]'", file=sys.stderr)
        return 2
    if not args.input.is_dir():
        print(
            f"{PROG}: input folder {args.input} does not exist or is not a folder; "
            "give the folder that holds the .pod5 files",
            file=sys.stderr,
        )
        return 2
    inputs = list_inputs(args.input)
    reason = fails_on_purpose(args, inputs)
    if reason is not None:
        print(f"{PROG}: {reason}", file=sys.stderr)
        return 1
    return inputs


def basecall(args: argparse.Namespace) -> int:
    """Basecall `args.input` into `args.output` (`args`: the options of `reactor
    fake-basecaller`); returns the exit code (see the module docstring)."""
    started = time.monotonic()
    inputs = usable_inputs(args)
    if isinstance(inputs, int):
        return inputs
    from reactor.sim import pod5_files

    try:
        tables = read_inputs(inputs, pod5_files.read_lengths)
        for kind in ResultFolder:
            (args.output / kind).mkdir(parents=True, exist_ok=True)
        tally = _basecall(tables, args)
    except BadInput as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; outputs of unfinished inputs were removed", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PROG}: cannot write into {args.output}: {_one_line(exc)}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(
        f"{PROG}: files={tally.files} reads={tally.reads} "
        f"pass={tally.by_folder[ResultFolder.PASS]} fail={tally.by_folder[ResultFolder.FAIL]} "
        f"seconds={seconds:.2f}",
        file=sys.stderr,
    )
    return 0
