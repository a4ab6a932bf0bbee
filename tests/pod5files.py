"""Real `.pod5` files for tests, written with ONT's `pod5` library.

- `write_pod5(path, n_reads, seed)` writes a complete file and returns its read ids.
- `write_pod5_in_pieces(path, n_reads, pieces, seed)` writes the same bytes in chunks, so a
  test can look at the file while it is still being written, as MinKNOW's files are.
- `read_ids(path)` reads the ids back (to check that every read came out exactly once).

With a `seed`, read ids and signal are deterministic: the same seed gives the same read ids
from both writers. Note that `pod5.Writer` puts hidden `.<uuid>.tmp-*` side files next to
the file while it writes, and leaves the file itself empty until it closes.
"""

from __future__ import annotations

import datetime
import itertools
import random
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pod5  # type: ignore[import-untyped]  # pod5 ships no type information

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_RUN_INFO = pod5.RunInfo(
    acquisition_id="0123abcd0123abcd0123abcd0123abcd01234567",
    acquisition_start_time=_EPOCH,
    adc_max=2047,
    adc_min=-2048,
    context_tags={"sample_frequency": "5000"},
    experiment_name="reactor-test",
    flow_cell_id="PAK00000",
    flow_cell_product_code="FLO-PRO114M",
    protocol_name="sequencing/sequencing_PRO114_DNA_e8_2_400K:FLO-PRO114M:SQK-LSK114",
    protocol_run_id="abcdef12-0000-4000-8000-000000000000",
    protocol_start_time=_EPOCH,
    sample_id="sample",
    sample_rate=5000,
    sequencing_kit="sqk-lsk114",
    sequencer_position="1A",
    sequencer_position_type="PromethION",
    software="pod5-reactor tests",
    system_name="testhost",
    system_type="PromethION",
    tracking_id={"run_id": "reactor-test"},
)
_END_REASON = pod5.EndReason(pod5.EndReasonEnum.SIGNAL_POSITIVE, False)


def write_pod5(path: Path, n_reads: int, seed: int | None = None) -> list[str]:
    """Write a complete `.pod5` with `n_reads` short reads; return their ids (as str).

    `path` must not exist (pod5 refuses to overwrite). Reads are small (100-400 int16
    samples), so a file of a few reads is about 15 kB and takes a few milliseconds.
    """
    ids_rng = random.Random(seed)
    signal_rng = np.random.default_rng(seed)
    read_ids: list[str] = []
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
                    end_reason=_END_REASON,
                    run_info=_RUN_INFO,
                    signal=signal,
                )
            )
            read_ids.append(str(read_id))
    return read_ids


def pod5_bytes(n_reads: int, seed: int | None = None) -> bytes:
    """The bytes of a complete `.pod5` (written in a private temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="reactor-pod5-") as tmp:
        staged = Path(tmp) / "staged.pod5"
        write_pod5(staged, n_reads, seed)
        return staged.read_bytes()


def write_pod5_in_pieces(
    path: Path, n_reads: int, pieces: int, seed: int | None = None
) -> Iterator[int]:
    """Write a complete `.pod5` into `path` in `pieces` chunks; a generator.

    The file is built elsewhere first, then its bytes are copied into `path`, which is
    created (it must not exist) and kept open for writing until the generator finishes.
    After each chunk is written and flushed the generator yields the number of bytes
    written so far, so a test sees a file that starts with the POD5 signature but lacks the
    trailing one until the last chunk. At the last yield all bytes are in place but the
    file is still open; it is closed (a close-after-write event) when the generator is
    resumed once more, e.g. by the end of a `for` loop. The first chunk is longer than the
    8-byte signature, so no partial file is the bare signature.

        for written in write_pod5_in_pieces(path, 3, pieces=4):
            ...  # inspect the partial file
    """
    if pieces < 1:
        msg = f"pieces must be at least 1, not {pieces}"
        raise ValueError(msg)
    data = pod5_bytes(n_reads, seed)
    # At least 9 bytes per chunk keeps the head signature inside the first one.
    bounds = [len(data) * i // pieces for i in range(pieces + 1)]
    if bounds[1] <= 8:
        msg = f"{pieces} pieces are too many for a {len(data)}-byte file"
        raise ValueError(msg)
    with open(path, "xb") as out:
        for start, end in itertools.pairwise(bounds):
            out.write(data[start:end])
            out.flush()
            yield end


def read_ids(path: Path) -> list[str]:
    """The read ids of a `.pod5`, in file order (as str)."""
    with pod5.Reader(path) as reader:
        return [str(read.read_id) for read in reader.reads()]
