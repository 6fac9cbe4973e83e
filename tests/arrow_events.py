"""Events as the decode step hands them on: Arrow tables decoded by the native decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from consumers.event_columns import with_positions
from consumers.tables import decoder
from schemas import codec


def event_table(
    kind: str, records: Sequence[dict[str, Any]], topic: str, partition: int, offsets: Sequence[int]
) -> pa.Table:
    """`records` of one kind, encoded, decoded, placed at `offsets` and marked with their kind."""
    [table] = batch_tables([(kind, record) for record in records], topic, partition, 0).values()
    table = table.set_column(
        table.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.uint64())
    )
    return table.append_column("kind", pa.repeat(kind, len(records)))


def batch_tables(
    events: Sequence[tuple[str, dict[str, Any]]], topic: str, partition: int, first_offset: int
) -> dict[str, pa.Table]:
    """(kind, record) pairs read as one batch at consecutive offsets: a table per kind,
    each row's `message_index` its place in the batch, as the decode step makes them."""
    tables, failures = decoder().decode_batch(
        [codec.encode(kind, record) for kind, record in events], 1 << 20
    )
    assert not failures, failures
    n = len(events)
    return {
        kind: with_positions(
            pa.Table.from_batches([batch]),
            pa.array([topic] * n, pa.string()),
            pa.array([partition] * n, pa.uint32()),
            pa.array(range(first_offset, first_offset + n), pa.uint64()),
        )
        for kind, batch in tables.items()
    }
