"""`observe_tables` finds what the sequence tracker finds given the same events one by one."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.batch import Position
from consumers.rules.sequence_columns import observe_tables
from consumers.rules.stream import Finding, SequenceTracker

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
DEVICES = [("p-1", "dev-a"), ("p-1", "dev-b"), ("p-2", "dev-a")]
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
        ("message_index", pa.uint32()),
        ("topic", pa.string()),
        ("partition", pa.uint32()),
        ("offset", pa.uint64()),
    ]
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@st.composite
def arrivals(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of a few devices as they arrive: gaps, redeliveries, swaps, forged hashes."""
    hashed = draw(st.booleans())  # Avro (payload hashes) or JSON lines (none)
    arrived: list[dict[str, Any]] = []
    for processor, device in DEVICES:
        count = draw(st.integers(0, 30))
        first = draw(st.sampled_from([0, 0, 5]))
        sent, previous = [], None
        for n in range(count):
            seq = first + n
            event_id = f"{processor}-{device}-{seq}"
            forged = draw(st.integers(0, 9)) == 0
            sent.append(
                {
                    "event_id": event_id,
                    "event_time": T0 + timedelta(seconds=seq * draw(st.sampled_from([1, 20]))),
                    "processor_id": processor,
                    "deployment_id": "d-1",
                    "device_id": device,
                    "region_code": "310000",
                    "device_seq": seq,
                    "prev_hash": "0" * 64 if forged else previous,
                    "payload_sha256": sha(event_id) if hashed else None,
                }
            )
            previous = sha(event_id)
        kept = [e for e in sent if draw(st.integers(0, 7))]  # some go missing
        kept += [e for e in kept if not draw(st.integers(0, 9))]  # some come again
        for i in range(len(kept) - 1):
            if not draw(st.integers(0, 5)):
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        arrived += kept
    return draw(st.permutations(arrived)) if draw(st.booleans()) else arrived


def batches(events: list[dict[str, Any]], cuts: list[int]) -> list[pa.Table]:
    """The events cut into batches, each event placed at its offset in the whole input."""
    tables, start = [], 0
    for end in [*sorted(set(cuts)), len(events)]:
        rows = [
            event | {"message_index": i, "topic": "t", "partition": 0, "offset": start + i}
            for i, event in enumerate(events[start:end])
        ]
        tables.append(pa.Table.from_pylist(rows, schema=SCHEMA))
        start = max(start, end)
    return tables


def found(findings: list[Finding]) -> list[tuple[Any, ...]]:
    return [(rule, details, event["event_id"], anchor) for rule, details, event, anchor in findings]


@settings(max_examples=300, deadline=None)
@given(events=arrivals(), cuts=st.lists(st.integers(0, 120), max_size=4), in_order=st.booleans())
def test_batches_of_columns_find_what_the_tracker_finds_one_by_one(
    events: list[dict[str, Any]], cuts: list[int], in_order: bool
) -> None:
    def tracker() -> SequenceTracker:
        return SequenceTracker.in_order() if in_order else SequenceTracker(4, 60.0)

    one_by_one, columns = tracker(), tracker()
    expected: list[Finding] = []
    for offset, event in enumerate(events):
        expected += one_by_one.observe(event, event["payload_sha256"], Position("t", 0, offset))
    got: list[Finding] = []
    for table in batches(events, [cut for cut in cuts if cut < len(events)]):
        got += observe_tables(columns, [table])
    assert sorted(map(repr, found(got))) == sorted(map(repr, found(expected)))
    assert found(columns.finish()) == found(one_by_one.finish())
