"""Events as Arrow columns, the form they travel the validator in.

The native decoder gives one table per kind with every field of the record,
`message_index` (where in the read batch it came from) and `payload_sha256`.
The decode step adds where each was read (`topic`, `partition`, `offset`)
and when the broker received it (`broker_time`, null unless the broker stamped it);
the judge step reads the envelope of the few rows a rule fires at as Python
values (`envelopes`), and the store step inserts the tables as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from kafka.consumer.fetcher import ConsumerRecord

from consumers import python_values
from consumers.batch import Position, offset_spans
from schemas.codec import ENVELOPE

POSITION_COLUMNS = ("topic", "partition", "offset")
BROKER_TIME = "broker_time"
LOG_APPEND_TIME = 1
"""A message's `timestamp_type` when the broker, not the producer, stamped it."""
ENVELOPE_COLUMNS = (*ENVELOPE, "payload_sha256")
"""What a finding is reported with: the envelope and the payload hash."""


def with_positions(
    table: pa.Table,
    topics: pa.Array,
    partitions: pa.Array,
    offsets: pa.Array,
    broker_times: pa.Array | None = None,
) -> pa.Table:
    """`table` with the Kafka position of each row, taken by its `message_index`, and the
    broker's time of its message when given (`broker_times`, see `broker_times`)."""
    index = table.column("message_index")
    table = (
        table.append_column("topic", pc.take(topics, index))
        .append_column("partition", pc.take(partitions, index))
        .append_column("offset", pc.take(offsets, index))
    )
    if broker_times is not None:
        table = table.append_column(BROKER_TIME, pc.take(broker_times, index))
    return table


def broker_times(messages: Sequence[ConsumerRecord]) -> pa.Array:
    """When the broker received each message; null where its producer set the time."""
    return pa.array(
        [m.timestamp if m.timestamp_type == LOG_APPEND_TIME else None for m in messages],
        pa.timestamp("ms", "UTC"),
    )


def positions(table: pa.Table, rows: Sequence[int] | pa.Array | None = None) -> list[Position]:
    """The Kafka position of each of `rows` (every row when None)."""
    picked = table.select(POSITION_COLUMNS)
    if rows is not None:
        picked = picked.take(rows)
    topics, partitions, offsets = (picked.column(name).to_pylist() for name in POSITION_COLUMNS)
    return [Position(*where) for where in zip(topics, partitions, offsets, strict=True)]


def envelopes(table: pa.Table, rows: Sequence[int] | pa.Array) -> list[dict[str, Any]]:
    """The envelope and payload hash of each of `rows`, as Python values."""
    return python_values.rows(table.select(ENVELOPE_COLUMNS).take(rows))


def first_offsets(table: pa.Table) -> dict[tuple[str, int], int]:
    """The lowest offset of each (topic, partition) in `table`."""
    return {source: low for source, (low, _) in offset_spans(table).items()}


def detached(table: pa.Table) -> pa.Table:
    """`table` copied into memory of its own, for rows kept after their batch is gone.

    A batch from the native decoder is one allocation as far as pyarrow is
    concerned: any column taken from it, even the small dictionary of an
    enum, keeps the whole decoded batch alive. A round trip through Arrow's
    IPC format copies every buffer, dictionaries included.
    """
    table = table.unify_dictionaries().combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()
