"""The line search behind the registry pass (native): the lines a line-by-line filter keeps."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from faceaudit_native import lines_holding
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert lines_holding(text, list(MARKERS), block_bytes=block_bytes) == expected


def test_a_file_is_searched_as_its_bytes_are(tmp_path: Path) -> None:
    text = b'{"grantor": 1}\nplain\n' * 50_000 + b'last "grantor"'
    path = tmp_path / "input.jsonl"
    path.write_bytes(text)
    found = lines_holding(str(path), list(MARKERS))
    assert found == lines_holding(text, list(MARKERS)) and len(found) == 50_001
    assert found[-1] == b'last "grantor"'


def test_a_missing_file_or_an_empty_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        lines_holding(str(tmp_path / "nowhere.jsonl"), list(MARKERS))
    with pytest.raises(ValueError, match="cannot be empty"):
        lines_holding(b"x\n", [b""])
