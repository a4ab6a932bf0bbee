"""`reactor.core.protocol.error_detail`: one line for a person from any error answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.core.protocol import DETAIL_LIMIT, error_detail


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"error": "unknown_folder", "detail": "no quarantine folder named \'X\'"}',
         "no quarantine folder named 'X'"),
        ('{"error": "unauthorized"}', "unauthorized"),  # no detail: the error's name
        ('{"error": "bad", "detail": ""}', "bad"),
        ('{"other": 1}', '{"other": 1}'),  # an object of no known shape: shown as sent
        ('["a", "b"]', '["a", "b"]'),
        ("<html>\n  <h1>502 Bad Gateway</h1>\n</html>", "<html> <h1>502 Bad Gateway</h1> </html>"),
        ("plain words", "plain words"),
        ('{"detail": "first line\\nsecond line"}', "first line second line"),
        ('{"detail": 42}', "42"),
        ("", ""),
        ("   \n", ""),
    ],
)  # fmt: skip
def test_detail_of_each_kind_of_body(body: str, detail: str) -> None:
    assert error_detail(body) == detail


def test_a_long_detail_is_cut_to_the_limit_and_says_so() -> None:
    body = json.dumps({"error": "x", "detail": "word " * 100})
    detail = error_detail(body)
    assert len(detail) == DETAIL_LIMIT
    assert detail.endswith("...")
    assert error_detail("y" * 50, limit=10) == "yyyyyyy..."


@given(st.text())
def test_any_body_gives_one_line_within_the_limit(body: str) -> None:
    detail = error_detail(body)
    assert "\n" not in detail
    assert "\r" not in detail
    assert len(detail) <= DETAIL_LIMIT
