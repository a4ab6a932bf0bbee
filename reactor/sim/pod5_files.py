"""Real `.pod5` files, written and read with ONT's `pod5` library.

Used by the stand-ins for a sequencer and a basecaller (`reactor simulate-run`,
`reactor fake-basecaller`) and by the tests; the service itself never imports this module,
so `pod5` is imported here and in `reactor/disk/run_facts.py` only.

- `write_pod5(path, n_reads, seed)` writes a complete file and returns its read ids.
- `pod5_bytes(n_reads, seed)` returns the bytes of such a file, to be written out later in
  pieces, as MinKNOW appends to its files.
- `read_ids(path)` and `read_lengths(path)` read a file back; `read_facts(path)` reads
  what the stand-in for dorado needs of each read (`reactor.sim.pod5_reads.Pod5Read`).

With a `seed`, read ids and signal are deterministic: the same seed gives the same read ids
from both writers. Note that `pod5.Writer` puts hidden `.<uuid>.tmp-*` side files next to
the file while it writes, and leaves the file itself empty until it closes; `pod5_bytes`
therefore builds its file in a private temporary folder.
"""

from __future__ import annotations

import datetime
import random
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pod5  # type: ignore[import-untyped]  # pod5 ships no type information

from reactor.sim.pod5_reads import Pod5Read, Pod5Run

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """Who wrote a file: the ids MinKNOW puts in every read's run info and in file names."""

    flow_cell_id: str = "PAK00000"
    protocol_run_id: str = "abcdef12-0000-4000-8000-000000000000"
    acquisition_id: str = "0123abcd0123abcd0123abcd0123abcd01234567"
    sample_id: str = "sample"
    experiment_name: str = "reactor-test"
    sample_rate: int = 5000
    flow_cell_product_code: str = "FLO-PRO114M"
    sequencing_kit: str = "sqk-lsk114"


DEFAULT_RUN = RunIdentity()


def _run_info(run: RunIdentity) -> Any:
    return pod5.RunInfo(
        acquisition_id=run.acquisition_id,
        acquisition_start_time=_EPOCH,
        adc_max=2047,
        adc_min=-2048,
        context_tags={"sample_frequency": str(run.sample_rate)},
        experiment_name=run.experiment_name,
        flow_cell_id=run.flow_cell_id,
        flow_cell_product_code=run.flow_cell_product_code,
        protocol_name="sequencing/sequencing_PRO114_DNA_e8_2_400K:FLO-PRO114M:SQK-LSK114",
        protocol_run_id=run.protocol_run_id,
        protocol_start_time=_EPOCH,
        sample_id=run.sample_id,
        sample_rate=run.sample_rate,
        sequencing_kit=run.sequencing_kit,
        sequencer_position="1A",
        sequencer_position_type="PromethION",
        software="pod5-reactor",
        system_name="reactor-sim",
        system_type="PromethION",
        tracking_id={"run_id": run.protocol_run_id},
    )


def write_pod5(
    path: Path, n_reads: int, seed: int | None = None, *, run: RunIdentity = DEFAULT_RUN
) -> list[str]:
    """Write a complete `.pod5` with `n_reads` short reads; return their ids (as str).

    `path` must not exist (pod5 refuses to overwrite). Reads are small (100-400 int16
    samples), so a file of a few reads is about 15 kB and takes a few milliseconds.
    """
    # Seeded generators are for reproducible test data, not for secrets.
    ids_rng = random.Random(seed)  # noqa: S311
    signal_rng = np.random.default_rng(seed)
    run_info = _run_info(run)
    end_reason = pod5.EndReason(pod5.EndReasonEnum.SIGNAL_POSITIVE, False)
    ids: list[str] = []
    with pod5.Writer(path) as writer:
        for number in range(n_reads):
            read_id = (
                uuid.UUID(int=ids_rng.getrandbits(128), version=4)
                if seed is not None
                else uuid.uuid4()
            )
            n_samples = int(signal_rng.integers(100, 400))
            signal = signal_rng.integers(-200, 800, size=n_samples, dtype=np.int16)
            writer.add_read(
                pod5.Read(
                    read_id=read_id,
                    pore=pod5.Pore(channel=1 + number % 512, well=1, pore_type="not_set"),
                    calibration=pod5.Calibration(offset=-240.0, scale=0.18),
                    read_number=number,
                    start_sample=number * 1000,
                    median_before=200.0,
                    end_reason=end_reason,
                    run_info=run_info,
                    signal=signal,
                )
            )
            ids.append(str(read_id))
    return ids


def pod5_bytes(n_reads: int, seed: int | None = None, *, run: RunIdentity = DEFAULT_RUN) -> bytes:
    """The bytes of a complete `.pod5` (written in a private temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="reactor-pod5-") as tmp:
        staged = Path(tmp) / "staged.pod5"
        write_pod5(staged, n_reads, seed, run=run)
        return staged.read_bytes()


def read_ids(path: Path) -> list[str]:
    """The read ids of a `.pod5`, in file order (as str)."""
    return [read_id for read_id, _ in read_lengths(path)]


def read_lengths(path: Path) -> list[tuple[str, int]]:
    """`(read id, number of signal samples)` for every read of a `.pod5`, in file order.

    Reads the read table only (no signal is decompressed). Raises whatever `pod5` raises
    for a missing or unreadable file (`RuntimeError` for a corrupt one).
    """
    with pod5.Reader(path) as reader:
        return [(str(read.read_id), int(read.num_samples)) for read in reader.reads()]


def _unix_ms(moment: datetime.datetime) -> int:
    """Milliseconds since the Unix epoch; a time without a zone is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    unix_epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (moment - unix_epoch) // datetime.timedelta(milliseconds=1)


def _run_facts(run_info: Any) -> Pod5Run:
    return Pod5Run(
        run_id=str(run_info.protocol_run_id),
        acquisition_id=str(run_info.acquisition_id),
        acquisition_start_ms=_unix_ms(run_info.acquisition_start_time),
        sample_rate=int(run_info.sample_rate),
        flow_cell_id=str(run_info.flow_cell_id),
        sample_id=str(run_info.sample_id),
        device=str(run_info.system_name),
    )


def read_facts(path: Path) -> list[Pod5Read]:
    """Every read of a `.pod5`, in file order, with its pore, position and run info.

    Like `read_lengths`, reads the read table only (no signal is decompressed), and
    raises whatever `pod5` raises for a missing or unreadable file.
    """
    runs: dict[str, Pod5Run] = {}
    facts = []
    with pod5.Reader(path) as reader:
        for read in reader.reads():
            run_info = read.run_info  # pod5 caches it per acquisition
            run = runs.get(run_info.acquisition_id)
            if run is None:
                run = runs[run_info.acquisition_id] = _run_facts(run_info)
            pore = read.pore
            facts.append(
                Pod5Read(
                    read_id=str(read.read_id),
                    n_samples=int(read.num_samples),
                    channel=int(pore.channel),
                    well=int(pore.well),
                    read_number=int(read.read_number),
                    start_sample=int(read.start_sample),
                    run=run,
                )
            )
    return facts
