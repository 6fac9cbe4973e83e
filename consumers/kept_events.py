"""What the offline checker keeps of every event until its inputs are read.

The sequence rules judge each device's events once the whole input is at
hand, and with several inputs FR-FILING counts subjects in the order of all
of them; so of each event only the columns those rules read are kept: the
envelope, the payload hash (and the subject, for FR-FILING), and where it
stands in the read order (``consumers.input_chunks``): its read time, its
input and its position there. About 300 bytes an event, in Arrow columns.

At the end they come back sorted, in slices, as the stream rules take them:
``message_index`` then holds each event's rank in that order, and the
position columns are placeholders (``offset`` is the rank too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS
from consumers.input_chunks import READ_TIME
from consumers.tables import MESSAGE_INDEX

INPUT: Final = "input"
"""Which input an event was read from (its index among the inputs)."""
SLICE_ROWS: Final = 1 << 16
"""Events per slice given back, and per table kept: few calls, little memory at a time."""
READ_ORDER: Final = ((READ_TIME, "ascending"), (INPUT, "ascending"), (MESSAGE_INDEX, "ascending"))
DEVICE_ORDER: Final = (
    ("processor_id", "ascending"),
    ("device_id", "ascending"),
    ("device_seq", "ascending"),
    *READ_ORDER,
)


class KeptEvents:
    """Events' envelopes and read order, added chunk by chunk, given back sorted."""

    def __init__(self, subjects: bool) -> None:
        """``subjects``: keep each event's ``subject_ref`` too, for FR-FILING."""
        extra = ("subject_ref",) if subjects else ()
        self._columns = (*ENVELOPE_COLUMNS, *extra, READ_TIME, INPUT, MESSAGE_INDEX)
        self._tables: list[pa.Table] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        """Keep the columns needed of ``table``'s events (it has every column kept)."""
        if not table.num_rows:
            return
        self._pending.append(table.select(self._columns))
        self._pending_rows += table.num_rows
        if self._pending_rows >= SLICE_ROWS:
            self._compact()

    def _compact(self) -> None:
        """The pending tables copied into one: the readers' buffers have room to spare,
        and hold on to it while any column of theirs is kept."""
        if self._pending:
            self._tables.append(pa.concat_tables(self._pending).combine_chunks())
            self._pending, self._pending_rows = [], 0

    def in_read_order(self) -> Iterator[pa.Table]:
        """Every event kept, in the order the inputs were read (see ``input_chunks``)."""
        return self._sorted(READ_ORDER)

    def by_device(self) -> Iterator[pa.Table]:
        """Every event kept, device by device, each device's by ``device_seq`` and then
        in read order; devices sorted by (processor_id, device_id)."""
        return self._sorted(DEVICE_ORDER)

    def _sorted(self, keys: tuple[tuple[str, str], ...]) -> Iterator[pa.Table]:
        self._compact()
        if not self._tables:
            return
        events = pa.concat_tables(self._tables)
        order = pc.sort_indices(events, sort_keys=list(keys))
        for start in range(0, events.num_rows, SLICE_ROWS):
            part = events.take(order.slice(start, SLICE_ROWS))
            yield _ranked(part, start)


def _ranked(part: pa.Table, start: int) -> pa.Table:
    """``part`` with its rank in the sorted order as ``message_index`` and ``offset``."""
    rows = part.num_rows
    rank = pa.array(range(start, start + rows), pa.uint64())
    index = part.schema.get_field_index(MESSAGE_INDEX)
    part = part.set_column(index, MESSAGE_INDEX, rank)
    topic, partition, offset = POSITION_COLUMNS
    return (
        part.append_column(topic, pa.repeat("", rows))
        .append_column(partition, pa.repeat(pa.scalar(0, pa.uint32()), rows))
        .append_column(offset, rank)
    )
