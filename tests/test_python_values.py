"""Arrow columns as Python values: exactly what pyarrow's `to_pylist` gives."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import python_values

# Microseconds since the epoch, a day inside the years a datetime holds in any zone.
_COUNTS = st.lists(
    st.none() | st.integers(-62_135_510_400_000_000, 253_402_214_400_000_000), max_size=40
)
_TYPES = st.sampled_from(
    [
        pa.timestamp(unit, tz)
        for unit in ("s", "ms", "us", "ns")
        for tz in (None, "UTC", "Asia/Shanghai", "+08:00")
    ]
)
_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}


def _column(counts: list[int | None], kind: pa.TimestampType, chunks: int) -> pa.ChunkedArray:
    """`counts` (microseconds) as a column of `kind`, cut into `chunks` pieces."""
    scale = _SCALE[kind.unit]
    if kind.unit == "ns":  # nanoseconds reach only to 2262
        counts = [None if c is None else c % 2**62 - 2**61 for c in counts]
    raw = [None if c is None else c // scale for c in counts]
    size = max(1, -(-len(raw) // chunks))
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)] or [[]]
    return pa.chunked_array([pa.array(piece, pa.int64()).cast(kind) for piece in pieces], kind)


@settings(max_examples=300, deadline=None)
@given(counts=_COUNTS, kind=_TYPES, chunks=st.integers(1, 3))
def test_timestamps_convert_as_pyarrow_converts_them(counts, kind, chunks) -> None:
    column = _column(counts, kind, chunks)
    expected = column.to_pylist()
    # repr: equal instants are not enough, the time zone objects must match too.
    assert repr(python_values.values(column)) == repr(expected)
    assert repr(python_values.values(column.combine_chunks())) == repr(expected)


@settings(max_examples=100, deadline=None)
@given(
    counts=_COUNTS,
    kind=_TYPES,
    words=st.lists(st.none() | st.text(max_size=5), min_size=40, max_size=40),
)
def test_rows_are_the_tables_rows(counts, kind, words) -> None:
    table = pa.table(
        {
            "event_time": _column(counts, kind, 2),
            "device_id": pa.array(words[: len(counts)], pa.string()),
            "device_seq": pa.array(range(len(counts)), pa.int64()),
        }
    )
    assert repr(python_values.rows(table)) == repr(table.to_pylist())


def test_rows_of_a_table_without_columns() -> None:
    table = pa.table({"x": [1, 2, 3]}).select([])
    assert python_values.rows(table) == table.to_pylist() == [{}, {}, {}]


def test_other_types_are_left_to_pyarrow() -> None:
    nested = pa.array([{"at": 0, "tags": ["a"]}, None])
    assert python_values.values(nested) == nested.to_pylist()
