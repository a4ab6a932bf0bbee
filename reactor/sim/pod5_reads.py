"""What a POD5 read tells a basecaller before its signal is decoded: the read table's facts.

`reactor.sim.pod5_files.read_facts(path)` fills these from a real file; the stand-in for
dorado (`reactor.sim.dorado_reads`) derives every record it writes from them. Plain
frozen records, so the pure parts can be tested without the pod5 library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pod5Run:
    """The run info a read points to, in the terms dorado writes into its outputs."""

    run_id: str  # the protocol run id: dorado 1.x's `runid` (0.x used the acquisition id)
    acquisition_id: str
    acquisition_start_ms: int  # Unix time of sample 0, in milliseconds
    sample_rate: int  # samples per second
    flow_cell_id: str
    sample_id: str
    device: str  # MinKNOW's system name, dorado's `PM`


@dataclass(frozen=True, slots=True)
class Pod5Read:
    """One row of a POD5's read table."""

    read_id: str
    n_samples: int
    channel: int
    well: int  # dorado's `mx` (mux)
    read_number: int
    start_sample: int  # samples since the start of the acquisition
    run: Pod5Run
