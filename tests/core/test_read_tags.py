"""dorado's read tags, read from FASTQ headers as dorado writes them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reactor.core.read_tags import TagColumns, parse_header, parse_headers


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
    assert parse_header("id\tch:i:\u00b2").channel is None  # a digit to Unicode, not to int()


@given(st.floats(0, 60, allow_nan=False), st.integers(1, 3000))
def test_any_qs_and_channel_read_back(qs: float, channel: int) -> None:
    tags = parse_header(f"r\tqs:f:{qs!r}\tch:i:{channel}")
    assert (tags.qs, tags.channel) == (qs, channel)


# ------------------------------------------------------------------ any header at all

_TAG_NAMES = ["qs:f", "qs:i", "pi:Z", "st:Z", "BC:Z", "ch:i", "RG:Z", "du:f", "qs:Z", "pi:i"]
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 3000).map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "1e3", " 7 ", "1_0", "x", "²", "2026-12-05T10:03"]),
    st.text(st.characters(exclude_characters="\t\n\r"), max_size=8),
)
_FIELDS = st.one_of(
    st.tuples(st.sampled_from(_TAG_NAMES), _VALUES).map(":".join),
    st.text(st.characters(exclude_characters="\t\n\r"), max_size=8),  # not a tag
)
headers_st = st.builds(
    lambda read_id, fields, sep: sep.join([read_id, *fields]),
    st.text(st.characters(exclude_characters="\t\n\r "), max_size=12),
    st.lists(_FIELDS, max_size=8),
    st.sampled_from(["\t", " "]),  # dorado's tabs; a space when a tool rewrote them
)


def recount(header: str) -> tuple[str, float | None, str | None, str | None, str | None]:
    """The test's own reading of a header: split into fields (at tabs, or at spaces when
    it has no tab), the first field the id, each tag's first field its value."""
    read_id, *fields = header.split("\t" if "\t" in header else " ")

    def first(prefix: str) -> str | None:
        return next((field[len(prefix) :] for field in fields if field.startswith(prefix)), None)

    qs_text = first("qs:f:")
    if qs_text is None:
        qs_text = first("qs:i:")
    qs = None
    if qs_text is not None:
        try:
            qs = float(qs_text)
        except ValueError:
            qs = None
        if qs is not None and (qs != qs or qs in (float("inf"), float("-inf"))):
            qs = None
    return read_id, qs, first("pi:Z:") or None, first("st:Z:") or None, first("BC:Z:") or None


@given(headers_st)
def test_any_header_reads_as_the_tests_own_recount(header: str) -> None:
    tags = parse_header(header)
    assert (tags.read_id, tags.qs, tags.parent, tags.start, tags.barcode) == recount(header)
    fields = header.split("\t" if "\t" in header else " ")[1:]
    channel = next((f[5:] for f in fields if f.startswith("ch:i:")), "")
    group = next((f[5:] for f in fields if f.startswith("RG:Z:")), None)
    assert tags.channel == (int(channel) if channel and set(channel) <= set("0123456789") else None)
    assert tags.read_group == (group or None)


@given(st.lists(headers_st, max_size=12), st.booleans())
def test_headers_parsed_together_read_as_each_alone(headers: list[str], barcodes: bool) -> None:
    """The columns of `parse_headers` (the read worker's) are the recount of each header,
    whatever the others hold (a qs that is no number among them, or none at all)."""
    columns = parse_headers(headers, barcodes=barcodes)
    rows = list(
        zip(
            columns.read_ids,
            columns.qs,
            columns.parents,
            columns.starts,
            columns.barcodes,
            strict=True,
        )
    )
    expected = [recount(header) for header in headers]
    if not barcodes:  # the BC tags are not looked for
        expected = [(*row[:4], None) for row in expected]
    assert rows == expected


def test_the_columns_of_tags_read_one_by_one_are_those_tags() -> None:
    tags = [parse_header("a\tqs:f:9.5\tpi:Z:p\tBC:Z:k_barcode02"), parse_header("b")]
    columns = TagColumns.of(tags)
    assert columns.read_ids == ["a", "b"]
    assert list(columns.qs) == [9.5, None]
    assert (columns.parents, columns.barcodes) == (["p", None], ["k_barcode02", None])
