"""What the offline checker keeps of every event until its inputs are read.

The sequence rules judge each device's events once the whole input is at
hand, and with several inputs FR-FILING counts subjects in the order of all
of them; so of each event only the columns those rules read are kept: the
envelope, the payload hash (and the subject, for FR-FILING), and where it
stands in the read order (``consumers.input_chunks``): its read time, its
input and its position there: in Arrow columns, some 210 bytes an event
read from JSON lines, 320 from Avro with several inputs (hash and subject).

At the end they come back sorted, in slices, as the stream rules take them:
``message_index`` then holds each event's rank in that order, and the
position columns are placeholders (``offset`` is the rank too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from operator import itemgetter
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS
from consumers.input_chunks import READ_TIME
from consumers.tables import MESSAGE_INDEX

INPUT: Final = "input"
"""Which input an event was read from (its index among the inputs)."""
SLICE_ROWS: Final = 1 << 16
"""Events per table kept and per slice given back: few calls, little memory at a time."""
_READ_KEYS: Final = (READ_TIME, INPUT, MESSAGE_INDEX)
READ_ORDER: Final = tuple((name, "ascending") for name in _READ_KEYS)
_DEVICE_KEYS: Final = ("processor_id", "device_id", "device_seq", *_READ_KEYS)
DEVICE_ORDER: Final = tuple((name, "ascending") for name in _DEVICE_KEYS)


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
            self._compact(whole=False)

    def _compact(self, whole: bool) -> None:
        """The pending tables copied into tables of SLICE_ROWS events each (``whole``: the
        rest too). The readers' buffers have room to spare, and hold on to it while any
        column of theirs is kept; and equal tables let ``_gather`` find a row's table."""
        if not self._pending:
            return
        events = pa.concat_tables(self._pending).combine_chunks()
        full = events.num_rows - events.num_rows % SLICE_ROWS
        self._tables += [events.slice(start, SLICE_ROWS) for start in range(0, full, SLICE_ROWS)]
        self._pending = [events.slice(full)] if full < events.num_rows else []
        self._pending_rows = events.num_rows - full
        if whole and self._pending:
            self._tables += self._pending
            self._pending, self._pending_rows = [], 0

    def in_read_order(self) -> Iterator[pa.Table]:
        """Every event kept, in the order the inputs were read (see ``input_chunks``)."""
        return self._sorted(lambda events: events.select(_READ_KEYS), READ_ORDER)

    def by_device(self) -> Iterator[pa.Table]:
        """Every event kept, device by device, each device's by ``device_seq`` and then
        in read order; devices sorted by (processor_id, device_id)."""
        return self._sorted(_device_keys, DEVICE_ORDER)

    def _sorted(
        self, keys: Callable[[pa.Table], pa.Table], order: tuple[tuple[str, str], ...]
    ) -> Iterator[pa.Table]:
        """The events in the ``order`` of the ``keys`` columns worked out from them."""
        self._compact(whole=True)
        if not self._tables:
            return
        rows = pc.sort_indices(keys(pa.concat_tables(self._tables)), sort_keys=list(order))
        for start in range(0, len(rows), SLICE_ROWS):
            yield _ranked(self._gather(rows.slice(start, SLICE_ROWS)), start)

    def _gather(self, rows: pa.Array) -> pa.Table:
        """``rows`` (numbered across the kept tables), in that order, taken table by table:
        a take from all of them at once would first join each column into one."""
        table_of = pc.divide(rows, SLICE_ROWS)
        by_table = pc.sort_indices(table_of)  # stable: each table's rows in their order
        grouped, tables = rows.take(by_table), table_of.take(by_table)
        parts, start = [], 0
        for entry in sorted(pc.value_counts(tables).to_pylist(), key=itemgetter("values")):
            number, count = entry["values"], entry["counts"]
            local = pc.subtract(grouped.slice(start, count), number * SLICE_ROWS)
            parts.append(self._tables[number].take(local))
            start += count
        return pa.concat_tables(parts).take(pc.sort_indices(by_table))


def _ranked(part: pa.Table, start: int) -> pa.Table:
    """``part`` with its rank in the sorted order as ``message_index`` and ``offset``."""
    rows = part.num_rows
    rank = pc.add(_counting(SLICE_ROWS).slice(0, rows), pa.scalar(start, pa.uint64()))
    index = part.schema.get_field_index(MESSAGE_INDEX)
    part = part.set_column(index, MESSAGE_INDEX, rank)
    topic, partition, offset = POSITION_COLUMNS
    return (
        part.append_column(topic, pa.repeat("", rows))
        .append_column(partition, pa.repeat(pa.scalar(0, pa.uint32()), rows))
        .append_column(offset, rank)
    )


@cache
def _counting(size: int) -> pa.Array:
    """0, 1, ... size - 1."""
    return pa.array(range(size), pa.uint64())


def _device_keys(events: pa.Table) -> pa.Table:
    """The columns of DEVICE_ORDER, processor and device as their ranks among those
    present (numbers sort several times faster than strings)."""
    keys = events.select(_DEVICE_KEYS)
    for name in ("processor_id", "device_id"):
        column = keys.column(name)
        present = pa.array(sorted(pc.unique(column).to_pylist()), column.type)
        keys = keys.set_column(
            keys.schema.get_field_index(name), name, pc.index_in(column, value_set=present)
        )
    return keys
