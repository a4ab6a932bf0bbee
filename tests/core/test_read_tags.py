"""dorado's read tags, read from FASTQ headers as dorado writes them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reactor.core.read_tags import parse_header


def test_a_dorado_header_gives_its_read_id_and_tags() -> None:
    header = (
        "0a1b2c3d-0000-4000-8000-000000000001\tqs:f:12.84\tdu:f:3.2\tns:i:16000\tts:i:10\t"
        "mx:i:2\tch:i:1234\tst:Z:2026-12-05T14:12:00.000+00:00\trn:i:5\tfn:Z:x.pod5\t"
        "sm:f:90\tsd:f:14\tsv:Z:quantile\tdx:i:0\tRG:Z:abc_model"
    )
    tags = parse_header(header)
    assert tags.read_id == "0a1b2c3d-0000-4000-8000-000000000001"
    assert (tags.qs, tags.channel, tags.read_group) == (12.84, 1234, "abc_model")
    assert tags.start == "2026-12-05T14:12:00.000+00:00"
    assert tags.counted_as == tags.read_id


def test_older_dorado_integer_qs_and_a_split_read_counts_as_its_parent() -> None:
    tags = parse_header("child-id qs:i:9 pi:Z:parent-id")
    assert (tags.qs, tags.parent, tags.counted_as) == (9.0, "parent-id", "parent-id")


def test_what_is_not_a_tag_is_passed_over() -> None:
    tags = parse_header("id\tnot-a-tag\tqs:f:nan\tch:i:x\tq:f:1\tqs:f")
    assert (tags.read_id, tags.qs, tags.channel) == ("id", None, None)
    assert parse_header("only-an-id").qs is None


@given(st.floats(0, 60, allow_nan=False), st.integers(1, 3000))
def test_any_qs_and_channel_read_back(qs: float, channel: int) -> None:
    tags = parse_header(f"r\tqs:f:{qs!r}\tch:i:{channel}")
    assert (tags.qs, tags.channel) == (qs, channel)
