"""A stand-in for a basecaller where only the manager is measured (load, benchmarks)."""

from __future__ import annotations

from pathlib import Path


def basecall(job_output: Path, batch: list[str]) -> None:
    """The stand-in basecaller: one small FASTQ per file, named by the file's stem, in the
    job's `pass/` (no pod5 reading: this measures the manager, not a basecaller)."""
    for name in batch:
        stem = name.removesuffix(".pod5")
        (job_output / "pass" / f"{stem}.fastq").write_text(f"@{stem}\nACGT\n+\nIIII\n")
