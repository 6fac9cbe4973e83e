"""AUDIT-SEQ-GAP and AUDIT-CHAIN-BREAK over a whole batch of event columns.

The batch's events are sorted by device, then by arrival, and cut into
runs: stretches of one device's events whose numbers follow each other.
A run that starts where its device expects, with nothing buffered, is the
common case: the tracker moves past it in one step and its chain is checked
over the columns (each event's prev_hash against the payload hash before
it). Any other run (a device's first events, a gap, a redelivery, an event
out of order) has its first event given to the tracker alone, which often
leaves the rest next in line; if not, the rest goes event by event, exactly
as it would without this shortcut, so the findings are the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from consumers import python_values
from consumers.batch import Position
from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS, positions
from consumers.registry import Record
from consumers.rules.stream import Finding, SequenceTracker, chain_break

_COLUMNS = (*ENVELOPE_COLUMNS, "message_index", *POSITION_COLUMNS)
_SHORT_RUN = 8
"""Runs shorter than this on average: the batch is converted to Python values at once."""


def observe_tables(tracker: SequenceTracker, tables: Iterable[pa.Table]) -> list[Finding]:
    """Give every event of `tables` (one batch, any kinds) to `tracker`; the findings."""
    parts = [table.select(_COLUMNS) for table in tables if table.num_rows]
    if not parts:
        return []
    events = _by_device(pa.concat_tables(parts))
    starts, follows = _runs(events)
    breaks_inside = _chain_breaks_inside(events, follows)
    ends = [*(start - 1 for start in starts[1:]), events.num_rows - 1]
    firsts = events.select(["processor_id", "device_id", "device_seq", "prev_hash"]).take(starts)
    lasts = events.select(["device_seq", "payload_sha256"]).take(ends)
    shas = events.column("payload_sha256")
    rows = _Rows(events, len(starts))
    findings: list[Finding] = []
    for start, end, first, last in zip(
        starts, ends, firsts.to_pylist(), lasts.to_pylist(), strict=True
    ):
        key = (first["processor_id"], first["device_id"])
        seq, last_seq, last_sha = first["device_seq"], last["device_seq"], last["payload_sha256"]
        followed, expected = tracker.follow_run(key, seq, last_seq, last_sha)
        prev_hash, row = first["prev_hash"], start
        if not followed and start < end:
            # Its first event alone (a device's first, the one after a gap, a
            # redelivery) often leaves the rest of the run next in line.
            findings += _one_by_one(tracker, *rows.get(start, start + 1))
            followed, expected = tracker.follow_run(key, seq + 1, last_seq, last_sha)
            prev_hash, row = events.column("prev_hash")[start + 1].as_py(), start + 1
        if not followed:
            findings += _one_by_one(tracker, *rows.get(row, end + 1))
            continue
        if expected is not None and shas[row].is_valid and prev_hash != expected:
            findings.append(_chain_break(events, row, expected))
        findings += [
            _chain_break(events, inside, shas[inside - 1].as_py())
            for inside in breaks_inside.get(start, ())
            if inside > row
        ]
    return findings


def _by_device(events: pa.Table) -> pa.Table:
    """The events sorted by device, each device's in arrival order, with a `device` code column."""
    key = pc.binary_join_element_wise(events["processor_id"], events["device_id"], "\x00")
    codes = pc.dictionary_encode(key).combine_chunks().indices
    events = events.append_column("device", codes)
    order = pc.sort_indices(
        events, sort_keys=[("device", "ascending"), ("message_index", "ascending")]
    )
    return events.take(order)


def _runs(events: pa.Table) -> tuple[list[int], pa.Array]:
    """Where each run starts, and for rows 1..n-1 whether the row follows the one before."""
    device = events.column("device").combine_chunks()
    seq = events.column("device_seq").combine_chunks()
    n = events.num_rows
    follows = pc.and_(
        pc.equal(device.slice(1), device.slice(0, n - 1)),
        pc.equal(seq.slice(1), pc.add(seq.slice(0, n - 1), 1)),
    )
    starts = [0, *(index + 1 for index in pc.indices_nonzero(pc.invert(follows)).to_pylist())]
    return starts, follows


def _chain_breaks_inside(events: pa.Table, follows: pa.Array) -> dict[int, list[int]]:
    """Rows whose prev_hash is not the payload hash of the row before, in the same run.

    Keyed by the start of each row's run. Without payload bytes (JSON input)
    there is no chain to check.
    """
    n = events.num_rows
    sha = events.column("payload_sha256").combine_chunks()
    prev_hash = events.column("prev_hash").combine_chunks()
    checked = pc.and_(follows, pc.and_(pc.is_valid(sha.slice(1)), pc.is_valid(sha.slice(0, n - 1))))
    matches = pc.equal(prev_hash.slice(1), sha.slice(0, n - 1)).fill_null(False)
    broken = pc.indices_nonzero(pc.and_(checked, pc.invert(matches))).to_pylist()
    if not broken:
        return {}
    not_following = pc.indices_nonzero(pc.invert(follows)).to_pylist()
    by_run: dict[int, list[int]] = {}
    cursor, run_start = 0, 0
    for index in broken:  # both sorted: walk the run starts alongside
        row = index + 1
        while cursor < len(not_following) and not_following[cursor] + 1 <= row:
            run_start = not_following[cursor] + 1
            cursor += 1
        by_run.setdefault(run_start, []).append(row)
    return by_run


def _chain_break(events: pa.Table, row: int, expected: str) -> Finding:
    [record] = python_values.rows(events.select(ENVELOPE_COLUMNS).slice(row, 1))
    [anchor] = positions(events, [row])
    return chain_break(record, expected, anchor)


class _Rows:
    """Rows of a batch as the tracker takes them (envelopes and anchors): converted run
    by run, or all at once when the batch is mostly short runs (many gaps)."""

    def __init__(self, events: pa.Table, runs: int) -> None:
        self._events = events
        self._dense = runs * _SHORT_RUN > events.num_rows
        self._all: tuple[list[Record], list[Position]] | None = None

    def get(self, start: int, stop: int) -> tuple[list[Record], list[Position]]:
        """Rows ``start`` to ``stop`` (not included)."""
        if not self._dense:
            run = self._events.slice(start, stop - start)
            return python_values.rows(run.select(ENVELOPE_COLUMNS)), positions(run)
        if self._all is None:
            envelopes = python_values.rows(self._events.select(ENVELOPE_COLUMNS))
            self._all = envelopes, positions(self._events)
        records, anchors = self._all
        return records[start:stop], anchors[start:stop]


def _one_by_one(
    tracker: SequenceTracker, records: list[Record], anchors: list[Position]
) -> list[Finding]:
    """The tracker's own way, for a run that is not simply next in line."""
    findings: list[Finding] = []
    for record, anchor in zip(records, anchors, strict=True):
        findings += tracker.observe(record, record["payload_sha256"], anchor)
    return findings
