"""Arrow columns as Python values, the same as pyarrow's `to_pylist`, timestamps made faster.

pyarrow turns each timestamp with a time zone into a `datetime` by a
per-value lookup of the zone: about 7 µs a value here, against 0.1 µs for a
string. The rows a rule fires at, and the events the sequence rules take
one by one, carry `event_time`, so that lookup was most of the cost of
reading them. Here a UTC or naive timestamp column is read as integers and
each value is the epoch plus a `timedelta`, with the epoch (and so the time
zone object) pyarrow itself gives: the same values, 5 times faster. Other
zones, whose wall clock has gaps, keep pyarrow's way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pyarrow as pa

_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_FAST_ZONES = (None, "UTC")


def values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """`column.to_pylist()`."""
    kind = column.type
    if not (pa.types.is_timestamp(kind) and kind.unit in _MICROSECONDS and kind.tz in _FAST_ZONES):
        return column.to_pylist()
    epoch, scale = _epoch(kind), _MICROSECONDS[kind.unit]
    return [
        None if count is None else epoch + timedelta(microseconds=count * scale)
        for count in column.cast(pa.int64()).to_pylist()
    ]


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """`table.to_pylist()`: one dict per row, keys in column order."""
    if not table.num_columns:
        return [{} for _ in range(table.num_rows)]
    names = table.column_names
    columns = [values(column) for column in table.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


@cache
def _epoch(kind: pa.TimestampType) -> datetime:
    """Time 0 of `kind` as pyarrow converts it, with its time zone object."""
    return pa.scalar(0, kind).as_py()
