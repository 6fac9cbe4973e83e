"""An input's tables as the offline checker takes them: chunk by chunk, in read order.

``record_batches`` gives an input's good records as tables, one per kind
per chunk of the input, each in ``message_index`` order, chunks in input
order. ``chunks`` joins the tables whose positions interleave back into
their chunk, so the kinds of a chunk can be taken together in input order.

Several inputs are read as ``heapq.merge`` interleaves records by their time
(``event_time``, a deletion's ``deleted_at``, registry records first): each
input keeps its own order, and the next record is the earliest of the
inputs' next ones, the earlier input on a tie. That merge takes a record
once the latest time of its input up to it (its *read time*) is the
smallest, so the merged order is a stable sort by (read time, input,
position); for an input sorted by time, its read time is its own time.
``ReadClock`` gives each record its read time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from consumers.tables import MESSAGE_INDEX, in_order

Chunk = dict[str, pa.Table]
"""The records of one chunk of an input: a table per kind, each in input order."""

READ_TIME = "read_time"
"""The latest record time of the input up to the record (µs since the epoch)."""
_BEFORE_ALL = -(2**63)  # a registry record's time: before any other


def chunks(tables: Iterable[tuple[str, pa.Table]]) -> Iterator[Chunk]:
    """The tables of one input, joined where their positions interleave."""
    chunk: dict[str, list[pa.Table]] = {}
    last = -1
    for kind, table in tables:
        if table.num_rows == 0:
            continue
        positions = table.column(MESSAGE_INDEX)
        first = positions[0].as_py()
        if first > last and chunk:  # everything held came before it: a chunk of its own
            yield _joined(chunk)
            chunk = {}
        chunk.setdefault(kind, []).append(table)
        last = max(last, positions[-1].as_py())
    if chunk:
        yield _joined(chunk)


def _joined(chunk: dict[str, list[pa.Table]]) -> Chunk:
    return {kind: in_order(tables) for kind, tables in chunk.items()}


class ReadClock:
    """The read times of one input's records, chunk after chunk."""

    def __init__(self) -> None:
        self._latest = _BEFORE_ALL

    def read_times(self, chunk: Chunk) -> dict[str, pa.Array]:
        """Per kind, the read time of each record of the chunk, in its table's order."""
        kinds = list(chunk)
        positions = pa.chunked_array(
            [chunk[kind].column(MESSAGE_INDEX).combine_chunks() for kind in kinds], pa.uint32()
        ).combine_chunks()
        times = pa.chunked_array([_times(chunk[kind]) for kind in kinds], pa.int64())
        order = pc.sort_indices(positions)
        running = pc.max_element_wise(
            pc.cumulative_max(times.take(order).combine_chunks()), self._latest
        )
        self._latest = running[-1].as_py()
        read = running.take(pc.sort_indices(order))  # back to the tables' order
        found, start = {}, 0
        for kind in kinds:
            rows = chunk[kind].num_rows
            found[kind] = read.slice(start, rows)
            start += rows
        return found


def _times(table: pa.Table) -> pa.Array:
    """A record's time as the merge reads it: its event time, else its deletion time."""
    for name in ("event_time", "deleted_at"):
        if name in table.column_names:
            column = table.column(name).combine_chunks()
            return column.cast(pa.int64()).fill_null(_BEFORE_ALL)
    return pa.repeat(pa.scalar(_BEFORE_ALL, pa.int64()), table.num_rows)
