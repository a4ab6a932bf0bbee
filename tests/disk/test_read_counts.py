"""A job's outputs counted read by read (`split_outputs`), against the test's own recount.

The records are random: dorado's tags or none, odd tags, a `qs` that is no number or
missing, split reads, duplicates, reads in none of the job's `.pod5` files, barcodes,
starts in any zone or none. The test recounts each figure its own way (a header split
into fields, dates parsed one by one) and the service's counts must equal it, whatever
the chunks the outputs are read in.
"""

from __future__ import annotations

import datetime
import math
import tempfile
from collections import Counter
from pathlib import Path

import dnaio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.core.names import job_tag
from reactor.disk import read_files
from reactor.disk.read_files import split_outputs
from reactor.disk.read_requests import SplitRequest
from reactor.sim.pod5_files import write_pod5

MIN_Q = 9.0
FOLDER = "TMPOUTPUT_1_e1"

_TEXT = st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), max_size=6)
_STARTS = st.one_of(
    st.datetimes(
        min_value=datetime.datetime(2026, 1, 1),  # a naive start reads as UTC
        max_value=datetime.datetime(2027, 1, 1),
        timezones=st.sampled_from(
            [None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=45))]
        ),
    ).map(datetime.datetime.isoformat),
    st.sampled_from(["", "x", "2026-13-01T00:00:00"]),
)
_QS = st.one_of(
    st.floats(0, 40, allow_nan=False).map(lambda q: f"qs:f:{q!r}"),
    st.integers(0, 40).map(lambda q: f"qs:i:{q}"),
    st.sampled_from(["qs:f:nan", "qs:f:x", "qs:f:", "qs:Z:12", ""]),  # no usable qs
)


@st.composite
def records(draw: st.DrawFn, known: list[str]) -> tuple[str, int]:
    """One record: its header and its length."""
    read_id = draw(st.one_of(st.sampled_from(known), _TEXT))
    fields = [draw(_QS)]
    if draw(st.booleans()):
        fields.append(f"st:Z:{draw(_STARTS)}")
    if draw(st.integers(0, 3)) == 0:
        fields.append(f"pi:Z:{draw(st.one_of(st.sampled_from(known), _TEXT))}")
    if draw(st.booleans()):
        fields.append(f"BC:Z:{draw(st.sampled_from(['k_barcode01', 'k_barcode02', 'k_']))}")
    if draw(st.booleans()):
        fields.append(draw(st.sampled_from(["ch:i:7", "RG:Z:r", "odd", "qs:f:99"])))
    order = draw(st.permutations(fields))
    return "\t".join([read_id, *(field for field in order if field)]), draw(st.integers(0, 40))


@pytest.fixture(scope="module")
def pod5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("pod5") / "job.pod5"
    return path, write_pod5(path, 6, seed=1)


def recount(reads: list[tuple[str, int]], known: set[str], barcoded: bool) -> dict[str, object]:
    """The test's own count of the records: each header split into its fields."""
    # a run without barcodes has its one (maybe empty) count, under ""
    per_alias: dict[str, list[tuple[int, float]]] = {} if barcoded else {"": []}
    by_start: Counter[int] = Counter()
    ids, counted_as = [], []
    for header, length in reads:
        read_id, *fields = header.split("\t")
        tags: dict[str, str] = {}
        for field in fields:
            tags.setdefault(field[:5], field[5:])
        text = tags.get("qs:f:", tags.get("qs:i:"))
        try:
            qs = float(text) if text is not None else 0.0
        except ValueError:
            qs = 0.0
        qs = qs if math.isfinite(qs) else 0.0
        barcode = (tags.get("BC:Z:") or "_").rsplit("_", 1)[1] or "unclassified"
        per_alias.setdefault(barcode if barcoded else "", []).append((length, qs))
        try:
            when = datetime.datetime.fromisoformat(tags.get("st:Z:") or "")
        except ValueError:
            pass
        else:
            when = when if when.tzinfo else when.replace(tzinfo=datetime.UTC)
            by_start[int(when.timestamp()) // 600] += length
        ids.append(read_id)
        counted_as.append(tags.get("pi:Z:") or read_id)
    stats = {
        alias: {
            "reads": len(rows),
            "bases": sum(length for length, _ in rows),
            "pass_reads": sum(1 for _, qs in rows if qs >= MIN_Q),
            "pass_bases": sum(length for length, qs in rows if qs >= MIN_Q),
            "lengths": Counter(length for length, _ in rows),
            "mean_q": Counter(int(qs) for _, qs in rows),
        }
        for alias, rows in per_alias.items()
    }
    return {
        "stats": stats,
        "by_start": by_start,
        "records": len(ids),
        "subreads": sum(1 for a, b in zip(ids, counted_as, strict=True) if a != b),
        "duplicates": len(ids) - len(set(ids)),
        "unknown": sum(1 for read in counted_as if read not in known),
        "counted": len(set(counted_as) & known),
    }


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([True, False, None]), st.sampled_from([1, 3, 1000]))
def test_the_counts_of_any_records_are_the_tests_recount(
    pod5: tuple[Path, list[str]],
    data: st.DataObject,
    barcoded: bool | None,
    chunk: int,
) -> None:
    pod5_path, known = pod5
    reads = data.draw(st.lists(records(known), max_size=25))
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as output_dir:
        patch.setattr(read_files, "_CHUNK", chunk)  # the reads cut into chunks anywhere
        folder = Path(output_dir, FOLDER, "pass")
        folder.mkdir(parents=True)
        with dnaio.open(folder / "calls.fastq", mode="w", fileformat="fastq") as out:
            for header, length in reads:
                out.write(dnaio.SequenceRecord(header, "A" * length, "#" * length))
        request = SplitRequest(
            output_dir, FOLDER, job_tag("1"), (str(pod5_path),), MIN_Q, barcoded=barcoded
        )
        result = split_outputs(request)
    if barcoded is None:  # not told: by barcode, relabelled as none if no read had one
        barcoded = not reads or any("\tBC:Z:" in header for header, _ in reads)
    expected = recount(reads, set(known), barcoded)
    job = result.reads
    stats = {
        alias: {
            **{k: getattr(s, k) for k in ("reads", "bases", "pass_reads", "pass_bases")},
            "lengths": +s.lengths,
            "mean_q": +s.mean_q,
        }
        for alias, s in job.barcodes.items()
    }
    assert stats == expected["stats"]
    assert +job.by_start == expected["by_start"]
    for name in ("records", "subreads", "duplicates", "unknown", "counted"):
        assert getattr(job, name) == expected[name], name
    assert job.dropped == len(known) - job.counted
    unusable = sum(1 for header, _ in reads if not _usable_qs(header))
    assert any(f"{unusable} of " in w for w in result.warnings) == (unusable > 0)


def _usable_qs(header: str) -> bool:
    fields = header.split("\t")[1:]
    text = next((f[5:] for f in fields if f.startswith("qs:f:")), None)
    if text is None:
        text = next((f[5:] for f in fields if f.startswith("qs:i:")), None)
    try:
        return text is not None and math.isfinite(float(text))
    except ValueError:
        return False
