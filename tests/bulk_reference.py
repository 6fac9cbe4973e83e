"""What the bulk read (``record_batches``) must give: ``records()``'s output, record by record.

The reference for an input is the per-record reader: ``records(on_bad)``,
with each good record's position (line number for JSON lines, record number
for Avro) and every bad-record line. ``assert_bulk_is_reference`` compares
the bulk read's tables with it after the normalising Arrow needs (floats are
32-bit, NaN equals NaN), and checks that every table of a kind has the
decoder's schema for it (that of a sample record; for a kind without one,
the first table's) and that rows come in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
from samples import sample

from consumers.lines import BadRecord, parse_line
from consumers.readers import AvroSource, JsonLinesSource, Source
from consumers.tables import MESSAGE_INDEX, PAYLOAD_SHA256, decoder
from schemas import codec

Positioned = tuple[int, str, dict[str, Any], str | None]
"""A good record: its position, kind, record and payload hash."""
Tables = Callable[[Callable[[str], None]], Iterator[tuple[str, pa.Table]]]


def reference(source: Source) -> tuple[list[Positioned], list[str]]:
    """The good records of ``source`` with their positions, and its bad-record lines."""
    bad: list[str] = []
    items = list(source.records(bad.append))
    if isinstance(source, JsonLinesSource):
        numbers = list(_good_line_numbers(source))
    else:
        numbers = list(_good_record_numbers(source))
    assert len(numbers) == len(items)
    positioned = [
        (number, item.kind, item.record, item.payload_sha256)
        for number, item in zip(numbers, items, strict=True)
    ]
    return positioned, bad


def _good_line_numbers(source: JsonLinesSource) -> Iterator[int]:
    with source._open() as lines:
        for number, line in enumerate(lines, 1):
            try:
                parse_line(line)
            except BadRecord:
                continue
            yield number


def _good_record_numbers(source: AvroSource) -> Iterator[int]:
    """Each good record's number: records before it, good or reported, plus one."""
    reported = 0

    def count(_: str) -> None:
        nonlocal reported
        reported += 1

    for good, _ in enumerate(source.records(count)):
        yield good + reported + 1


@cache
def schema(kind: str) -> pa.Schema | None:
    """The decoder's schema of ``kind`` (None for a kind without a sample record)."""
    try:
        message = codec.encode(kind, sample(kind))
    except KeyError:
        return None
    batches, _ = decoder().decode_batch([message], 1 << 20)
    return batches[kind].schema


def assert_bulk_is_reference(
    source: Source, tables: Tables | None = None, same_bad: Callable[[str], str] = str
) -> list[tuple[str, pa.Table]]:
    """``tables`` (by default ``source.record_batches``) gives exactly the reference.

    ``same_bad`` maps a bad-record line to the part both readers must agree on.
    """
    expected, expected_bad = reference(source)
    bad: list[str] = []
    got = list((tables or source.record_batches)(bad.append))
    assert [same_bad(line) for line in bad] == [same_bad(line) for line in expected_bad]
    rows: dict[int, tuple[str, dict[str, Any]]] = {}
    last: dict[str, int] = {}
    schemas: dict[str, pa.Schema] = {}
    for kind, table in got:
        assert table.num_rows > 0
        assert table.schema == schemas.setdefault(kind, schema(kind) or table.schema), kind
        positions = table.column(MESSAGE_INDEX).to_pylist()
        assert positions == sorted(positions), "rows out of input order"
        assert positions[0] > last.get(kind, 0), "tables out of input order"
        last[kind] = positions[-1]
        for row in table.to_pylist():
            rows[row.pop(MESSAGE_INDEX)] = (kind, row)
    assert sorted(rows) == [number for number, *_ in expected]
    for number, kind, record, payload_sha256 in expected:
        got_kind, row = rows[number]
        where = f"record at {number}: {record!r:.300}"
        assert got_kind == kind, where
        assert row.pop(PAYLOAD_SHA256) == payload_sha256, where
        assert comparable(row) == comparable(as_float32(kind, record)), where
    return got


def as_float32(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with its float fields rounded to 32 bits, as Arrow holds them."""
    floats = [f["name"] for f in codec.schema(kind)["fields"] if f["type"] == "float"]
    rounded = dict(record)
    with np.errstate(over="ignore"):
        for name in floats:
            rounded[name] = float(np.float32(record[name]))
    return rounded


def comparable(value: Any) -> Any:
    """NaN equal to itself, so records holding one compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    return value
