"""What a run says it is, read from its files: the POD5 run info and the sample sheet.

The run info of a run's POD5 files (sample rate, flow cell product code, sequencing
kit) is read with ONT's `pod5` library from one complete file, the first read of it;
the sample sheet (`sample_sheet_*.csv` in the run folder, MinKNOW's columns `kit`,
`barcode`, `alias`) gives the barcoding kit and the barcodes' aliases. Both are small
reads, done on a worker thread by the caller, once per run until its parameters are
pinned (`reactor.core.params`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

MAX_SHEET_BYTES = 1 << 20


@dataclass(frozen=True)
class RunInfo:
    sample_rate: int | None
    flow_cell_product: str | None
    sequencing_kit: str | None


def read_run_info(pod5_file: Path) -> RunInfo | None:
    """The run info of a POD5's first read; None if the file has no reads or cannot be
    read (a damaged file: the next one is asked)."""
    import pod5  # type: ignore[import-untyped]  # the service reads POD5 contents here only

    try:
        with pod5.Reader(pod5_file) as reader:
            for read in reader.reads():
                info = read.run_info
                return RunInfo(
                    sample_rate=int(info.sample_rate) or None,
                    flow_cell_product=str(info.flow_cell_product_code or "") or None,
                    sequencing_kit=str(info.sequencing_kit or "").upper() or None,
                )
    except Exception:
        return None
    return None


def read_sample_sheet(run_folder: Path) -> tuple[str | None, dict[str, str]]:
    """(the kit, barcode -> alias) of the run's sample sheet; (None, {}) without one."""
    sheet = sample_sheet_of(run_folder)
    if sheet is None:
        return None, {}
    try:
        with sheet.open("rb") as raw:
            data = raw.read(MAX_SHEET_BYTES)
    except OSError:
        return None, {}
    kit: str | None = None
    aliases: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(data.decode("utf-8", errors="replace"))):
        kit = kit or (row.get("kit") or "").strip().upper() or None
        barcode = (row.get("barcode") or "").strip()
        alias = (row.get("alias") or "").strip()
        if barcode and alias:
            aliases[barcode] = alias
    return kit, aliases


def sample_sheet_of(run_folder: Path) -> Path | None:
    """The run's sample sheet (the first by name), or None."""
    try:
        sheets = sorted(run_folder.glob("sample_sheet_*.csv"))
    except OSError:
        return None
    return sheets[0] if sheets else None
