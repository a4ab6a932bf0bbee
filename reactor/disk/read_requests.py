"""What the service and its read worker pass each other: plain data, and the error an
output that is not the reads its name says raises. Nothing here imports a reading
library (pod5, pyarrow, pysam, dnaio: ~0.15 s), so the service imports this at start and
`reactor.disk.read_files` only in the worker (`reactor.serve.read_worker`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reactor.core.readstats import JobReads
from reactor.disk.engine_trees import Outputs


class UnreadableOutput(Exception):
    """An output that is not the reads its name says: the job cannot be merged."""


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """One job's outputs to read (and, with a `batch`, to write again in MinKNOW's
    layout into `stage`)."""

    output_dir: str  # OUTPUTDIR (absolute)
    folder: str  # the job's TMPOUTPUT_ folder in it
    tag: str  # the job's tag (`reactor.core.names.job_tag`), for the names' length rule
    pod5_paths: tuple[str, ...]  # the job's .pod5 files, for their read ids
    min_qscore: float
    # Barcode folders: True/False as the run's parameters say (a kit_name); None: by
    # the reads (a job with a read classified by barcode is split by barcode).
    barcoded: bool | None = False
    aliases: dict[str, str] = field(default_factory=dict)  # barcode -> alias
    batch: int | None = None  # MinKNOW's layout: the batch number; None: count only
    stage: str | None = None  # where the split outputs are written (made afresh)
    output_format: str = "auto"
    provenance: dict[str, str] = field(default_factory=dict)  # for the @PG line

    @property
    def job_folder(self) -> str:
        return str(Path(self.output_dir, self.folder))


@dataclass(slots=True)
class SplitResult:
    """What a job's outputs held, and the files written for them."""

    outputs: Outputs  # the engine's outputs, as inspected
    reads: JobReads
    written: list[tuple[str, str]] = field(default_factory=list)  # (output folder, name)
    read_from: list[tuple[str, str]] = field(default_factory=list)  # the outputs read
    not_reads: list[str] = field(default_factory=list)  # outputs that are no reads: left
    warnings: list[str] = field(default_factory=list)  # for the service's log
