"""Real `.pod5` files for tests, written with ONT's `pod5` library.

The writers live in `reactor.sim.pod5_files` (the simulator uses them too); this module keeps the
names the tests import and adds the writers only tests need:

- `write_pod5(path, n_reads, seed)` writes a complete file and returns its read ids.
- `write_pod5_in_pieces(path, n_reads, pieces, seed)` writes the same bytes in chunks, so a
  test can look at the file while it is still being written, as MinKNOW's files are.
- `write_corrupt_pod5(path)` writes a poison file: both POD5 signatures with garbage in
  between, complete to reactor and fatal to a reader.
- `read_ids(path)` reads the ids back.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from reactor.core.names import POD5_SIGNATURE
from reactor.sim.pod5_files import pod5_bytes, read_ids, write_pod5
from reactor.sim.simulate import piece_bounds

__all__ = ["pod5_bytes", "read_ids", "write_corrupt_pod5", "write_pod5", "write_pod5_in_pieces"]


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
    data = pod5_bytes(n_reads, seed)
    bounds = piece_bounds(len(data), pieces)
    with open(path, "xb") as out:
        for start, end in itertools.pairwise(bounds):
            out.write(data[start:end])
            out.flush()
            yield end


def write_corrupt_pod5(path: Path) -> None:
    """Both POD5 signatures, garbage in between: complete to reactor, fatal to a reader."""
    path.write_bytes(POD5_SIGNATURE + os.urandom(4096) + POD5_SIGNATURE)
