"""The checker's read order: chunks of an input in input order, inputs merged by time."""

from __future__ import annotations

import heapq
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import sample

from consumers.bulk_json import json_tables
from consumers.input_chunks import ReadClock, chunks
from schemas import codec

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
TIMESTAMP = pa.timestamp("us", tz="UTC")
# (kind, minutes after T0): a capture has an event time, a deletion its deletion time,
# a consent none (the merge takes it before everything).
Record = tuple[str, int]
records = st.tuples(st.sampled_from(["capture", "deletion", "consent"]), st.integers(0, 6))


def moment(record: Record) -> datetime:
    """The key today's checker merges inputs by."""
    kind, minutes = record
    return (
        datetime.min.replace(tzinfo=UTC) if kind == "consent" else T0 + timedelta(minutes=minutes)
    )


def input_tables(input_records: list[Record], cuts: list[int]) -> list[tuple[str, pa.Table]]:
    """An input's records as a reader gives them: chunk by chunk, a table per kind."""
    tables = []
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(input_records)}), len(input_records)]
    for start, end in itertools.pairwise(bounds):
        by_kind: dict[str, list[int]] = {}
        for position in range(start, end):
            by_kind.setdefault(input_records[position][0], []).append(position)
        for kind, positions in sorted(by_kind.items(), key=lambda item: item[1][0]):
            columns: dict[str, pa.Array] = {"message_index": pa.array(positions, pa.uint32())}
            if kind != "consent":
                times = [moment(input_records[p]) for p in positions]
                name = "event_time" if kind == "capture" else "deleted_at"
                columns[name] = pa.array(times, TIMESTAMP)
            tables.append((kind, pa.table(columns)))
    return tables


@settings(max_examples=300, deadline=None)
@given(
    inputs=st.lists(st.lists(records, max_size=12), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 12), max_size=3),
)
def test_sorting_by_read_time_input_and_position_is_the_merge_by_time(
    inputs: list[list[Record]], cuts: list[int]
) -> None:
    keyed = []
    for number, input_records in enumerate(inputs):
        clock = ReadClock()
        for chunk in chunks(input_tables(input_records, cuts)):
            read_times = clock.read_times(chunk)
            for kind, table in chunk.items():
                for position, read_time in zip(
                    table.column("message_index").to_pylist(),
                    read_times[kind].to_pylist(),
                    strict=True,
                ):
                    keyed.append((read_time, number, position))
    merged = heapq.merge(
        *(
            [(number, position, record) for position, record in enumerate(input_records)]
            for number, input_records in enumerate(inputs)
        ),
        key=lambda item: moment(item[2]),
    )
    assert [key[1:] for key in sorted(keyed)] == [item[:2] for item in merged]


def test_a_json_input_comes_back_in_chunks_of_increasing_positions(tmp_path: Path) -> None:
    kinds = ["capture", "match", "deletion", "consent", "deployment"]
    lines = [
        json.dumps(codec.to_json(kind, sample(kind)))
        for n in range(200)
        for kind in [kinds[(n * 7) % 5]]
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen: list[list[int]] = []
    for chunk in chunks(json_tables(str(path), str(path), print, chunk_bytes=3000)):
        positions = sorted(p for t in chunk.values() for p in t.column("message_index").to_pylist())
        for table in chunk.values():
            assert table.column("message_index").to_pylist() == sorted(
                table.column("message_index").to_pylist()
            )
        seen.append(positions)
    assert len(seen) > 5
    assert [p for positions in seen for p in positions] == list(range(1, len(lines) + 1))
