"""The line search behind the registry pass: the lines a line-by-line filter would keep."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.lines import lines_holding

MARKERS = (b'"grantor"', b"ab", b"\\")


@settings(max_examples=500, deadline=None)
@given(
    text=st.lists(st.sampled_from([b"x", b"a", b"b", b"ab", b"\n", b"\\", b'"grantor"'])).map(
        b"".join
    ),
    block_bytes=st.integers(1, 40),
)
def test_the_lines_holding_a_marker_are_those_a_line_filter_keeps(
    text: bytes, block_bytes: int
) -> None:
    expected = [line for line in io.BytesIO(text) if any(m in line for m in MARKERS)]
    assert list(lines_holding(io.BytesIO(text), MARKERS, block_bytes)) == expected
