"""What the checker keeps of its events comes back sorted, across the tables it is kept in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import kept_events
from consumers.event_columns import ENVELOPE_COLUMNS
from consumers.input_chunks import READ_TIME
from consumers.kept_events import INPUT, KeptEvents

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("processor_id", pa.string()),
        ("deployment_id", pa.string()),
        ("device_id", pa.string()),
        ("region_code", pa.string()),
        ("device_seq", pa.int64()),
        ("prev_hash", pa.string()),
        ("payload_sha256", pa.string()),
        ("subject_ref", pa.string()),
        (READ_TIME, pa.int64()),
        (INPUT, pa.uint32()),
        ("message_index", pa.uint32()),
    ]
)

event = st.fixed_dictionaries(
    {
        "processor_id": st.sampled_from(["p-2", "p-1", "p-10", "é"]),
        "device_id": st.sampled_from(["b", "a", "a-1", "ß"]),
        "device_seq": st.integers(0, 6),
        READ_TIME: st.integers(0, 3),
        INPUT: st.integers(0, 2),
    }
)


def table_of(events: list[dict[str, Any]], first: int) -> pa.Table:
    rows = [
        e
        | {
            "event_id": f"e{first + n}",
            "event_time": T0,
            "deployment_id": "d-1",
            "region_code": "310000",
            "prev_hash": None,
            "payload_sha256": None,
            "subject_ref": "s",
            "message_index": first + n,  # unique: the position in its input
        }
        for n, e in enumerate(events)
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def given_back(parts: list[pa.Table]) -> list[tuple[Any, ...]]:
    rows = [row for part in parts for row in part.to_pylist()]
    assert [row["message_index"] for row in rows] == list(range(len(rows)))
    assert [row["offset"] for row in rows] == list(range(len(rows)))
    return [tuple(row[name] for name in (*ENVELOPE_COLUMNS, "subject_ref")) for row in rows]


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(event, max_size=9), max_size=6))
def test_events_come_back_by_device_and_in_read_order(batches: list[list[dict[str, Any]]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kept_events, "SLICE_ROWS", 4)  # many tables, many slices
        check_sorted(batches)


def check_sorted(batches: list[list[dict[str, Any]]]) -> None:
    kept, added, first = KeptEvents(subjects=True), [], 0
    for batch in batches:
        table = table_of(batch, first)
        kept.add(table)
        added += table.to_pylist()
        first += len(batch)

    def read(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row[READ_TIME], row[INPUT], row["message_index"])

    def device(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["processor_id"], row["device_id"], row["device_seq"], *read(row))

    def envelope(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in (*ENVELOPE_COLUMNS, "subject_ref"))

    assert given_back(list(kept.in_read_order())) == [envelope(r) for r in sorted(added, key=read)]
    assert given_back(list(kept.by_device())) == [envelope(r) for r in sorted(added, key=device)]
