"""AUDIT-CHECKPOINT-MISMATCH and AUDIT-UNCHECKPOINTED over the columns of each batch.

The tracker keeps the events no valid checkpoint covers yet, in the
batches' tables. A valid checkpoint is looked up among its device's events
by ``device_seq`` (those of its batch first, then one join for the rest): a
payload hash other than its ``head_hash``, or no such event, is
AUDIT-CHECKPOINT-MISMATCH; either way it covers the device's events up to
that number. A batch's table is dropped once every device in it is covered.

A device's run of uncovered events is AUDIT-UNCHECKPOINTED, once per run,
when it holds more than the window's events, or spans more than the
window's seconds of event time: a run a checkpoint closes, up to its last
event (the device's own clock); a run still open, up to the latest event
time read from the device's partition (skewed events left out:
AUDIT-CLOCK-SKEW), so a device that falls silent is caught as its partition
moves on, and a partition read behind the others (consumer lag) is not
judged by their time. Findings sit at the position where they were found
(the checkpoint, or the device's latest event), so a batch read again finds
them again at the same place.

When the kept tables grow past twice their size at the last compaction
(and past ``COMPACT_ROWS``), they are compacted to the uncovered events, and
a device that never checkpoints keeps only its latest window's worth once
reported: a checkpoint naming an event dropped that way is not judged.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers import python_values
from consumers.batch import Position
from consumers.event_columns import BROKER_TIME, ENVELOPE_COLUMNS, POSITION_COLUMNS
from consumers.rules.clock_skew import trusted_times
from consumers.rules.stream import DeviceKey, Finding

MISMATCH: Final = "AUDIT-CHECKPOINT-MISMATCH"
UNCHECKPOINTED: Final = "AUDIT-UNCHECKPOINTED"
KEPT_COLUMNS: Final = (*ENVELOPE_COLUMNS, *POSITION_COLUMNS, BROKER_TIME)
_DEVICE: Final = ["processor_id", "device_id"]
_ORDER: Final = ("device_seq", "offset")
COMPACT_ROWS: Final = 200_000
TRUSTED_TIME: Final = "trusted_time"
"""A batch's event times to trust (`clock_skew.trusted_times`), beside its kept columns."""


@dataclass(slots=True)
class _Run:
    """A device's events since its last valid checkpoint, in numbers."""

    first: dict[str, Any]  # the envelope of its first event
    count: int
    last_seq: int
    last_time: datetime
    partition: int
    at: Position  # where its latest event was read

    @property
    def first_seq(self) -> int:
        return self.first["device_seq"]

    def then(self, later: _Run | None) -> _Run:
        """This run followed by the `later` events of the device."""
        if later is None:
            return self
        self.count += later.count
        if later.last_seq > self.last_seq:
            self.last_seq, self.at = later.last_seq, later.at
        self.last_time = max(self.last_time, later.last_time)
        return self


class CheckpointTracker:
    """The uncovered events of every device of one assignment, and what checkpoints said.

    Each device's run is kept in numbers (`_Run`), updated from one
    aggregation of each batch; only a device with a checkpoint in the batch
    has its rows of the batch looked at, to cut its run where the checkpoint
    covers it. The events themselves stay in the batches' tables until every
    device of a table is covered past it: they are read again only to look
    checkpoints up.
    """

    def __init__(
        self, window_events: int, window_seconds: int, compact_rows: int = COMPACT_ROWS
    ) -> None:
        """`compact_rows`: kept events past which the tables are compacted to the
        uncovered ones alone."""
        self._window_events = window_events
        self._window = timedelta(seconds=window_seconds)
        self._compact_rows = compact_rows
        self._chunks: list[tuple[pa.Table, dict[DeviceKey, int]]] = []
        """Tables of kept events, each with the highest device_seq of each device in it."""
        self._rows_after_compaction = 0
        self._batch: list[pa.Table] = []
        self._runs: dict[DeviceKey, _Run] = {}
        self.covered: dict[DeviceKey, int] = {}
        """Per device, the device_seq its last valid checkpoint covers."""
        self.reported: dict[DeviceKey, int] = {}
        """Per device, the first device_seq of the uncovered run reported."""
        self._dropped_to: dict[DeviceKey, int] = {}
        self._partition_time: dict[int, datetime] = {}
        """The latest event time read from each partition."""

    def resume(
        self,
        covered: Mapping[DeviceKey, int],
        uncovered: pa.Table,
        reported: Mapping[DeviceKey, int],
    ) -> None:
        """Continue after a restart from what the store holds."""
        self.covered.update(covered)
        self.reported.update(reported)
        if uncovered.num_rows:
            self.observe([uncovered.sort_by([(name, "ascending") for name in _ORDER])])
            self.judge([])

    def observe(self, tables: Iterable[pa.Table]) -> None:
        """Keep the events of a batch (any kinds) until a checkpoint covers them."""
        self._batch += [as_kept(table) for table in tables if table.num_rows]

    def judge(self, checkpoints: list[tuple[Mapping[str, Any], Position]]) -> list[Finding]:
        """The batch's valid checkpoints (after its events were observed), in read order."""
        batch = _by_device(pa.concat_tables(self._batch)) if self._batch else _empty()
        self._batch = []
        if batch.num_rows:
            self._chunks.append((batch, self._highest(batch)))
        by_device: dict[DeviceKey, list[tuple[Mapping[str, Any], Position]]] = {}
        for checkpoint, position in checkpoints:
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            by_device.setdefault(device, []).append((checkpoint, position))
        # The times to trust, once for the batch: every device's runs are measured by them.
        timed = batch.append_column(TRUSTED_TIME, trusted_times(batch))
        if batch.num_rows:
            self._extend_runs(timed, set(by_device))
        findings: list[Finding] = []
        misses: list[tuple[Mapping[str, Any], Position]] = []
        if by_device:
            slices = device_slices(timed)
            nothing = _empty()
            for device, covering in by_device.items():
                mine = _DeviceEvents.of(slices.get(device, nothing))
                findings += self._cover(device, mine, covering, misses)
        findings = lookup_mismatches(self._kept_table(), misses) + findings
        findings += self._open_runs_ended()
        self._prune()
        return findings

    def _highest(self, kept: pa.Table) -> dict[DeviceKey, int]:
        stats = kept.group_by(_DEVICE, use_threads=False).aggregate([("device_seq", "max")])
        return dict(
            zip(
                zip(stats["processor_id"].to_pylist(), stats["device_id"].to_pylist(), strict=True),
                stats["device_seq_max"].to_pylist(),
                strict=True,
            )
        )

    def _kept_table(self) -> pa.Table:
        if not self._chunks:
            return _empty()
        return pa.concat_tables([table for table, _ in self._chunks])

    def _extend_runs(self, timed: pa.Table, cut: set[DeviceKey]) -> None:
        """Add the batch's events (with their `TRUSTED_TIME`) to the runs of the devices
        that no checkpoint cuts here."""
        stats = timed.group_by([*_DEVICE, "partition"], use_threads=False).aggregate(
            [
                ("device_seq", "min"),
                ("device_seq", "max"),
                ("device_seq", "count"),
                ("event_time", "max"),
                (TRUSTED_TIME, "max"),
                ("offset", "max"),
                *((name, "first") for name in ENVELOPE_COLUMNS if name not in _DEVICE),
            ]
        )
        topic = timed["topic"][0].as_py()
        times = self._partition_time
        for row in python_values.rows(stats):
            device = (row["processor_id"], row["device_id"])
            partition, trusted = row["partition"], row[f"{TRUSTED_TIME}_max"]
            # Skewed events do not move the partition's time, nor end a run's own.
            latest = row["event_time_max"] if trusted is None else trusted
            if trusted is not None and (partition not in times or trusted > times[partition]):
                times[partition] = trusted
            if device in cut:
                continue
            covered = self.covered.get(device, -1)
            if row["device_seq_max"] <= covered:
                continue  # redelivered or late: covered already
            if row["device_seq_min"] <= covered:  # rare: some covered already
                later = _DeviceEvents.of(timed.filter(_of_device(timed, device))).run_past(covered)
            else:
                first = {name: row.get(f"{name}_first") for name in ENVELOPE_COLUMNS}
                first |= {"processor_id": device[0], "device_id": device[1]}
                later = _Run(
                    first=first,
                    count=row["device_seq_count"],
                    last_seq=row["device_seq_max"],
                    last_time=latest,
                    partition=partition,
                    at=Position(topic, partition, row["offset_max"]),
                )
            run = self._runs.get(device)
            self._runs[device] = later if run is None else run.then(later)

    def _cover(
        self,
        device: DeviceKey,
        mine: _DeviceEvents,
        covering: list[tuple[Mapping[str, Any], Position]],
        misses: list[tuple[Mapping[str, Any], Position]],
    ) -> list[Finding]:
        """Cut the device's run at each of its checkpoints of the batch, in order; each run a
        checkpoint closes is judged as it closes, by the device's own clock. `mine`: the
        device's events of the batch by device_seq. A checkpoint is looked up among them;
        one naming an event of an earlier batch goes to `misses`."""
        findings: list[Finding] = []
        start = 0  # mine's events before it are cut off by an earlier checkpoint here
        for checkpoint, position in covering:
            seq = checkpoint["device_seq"]
            covered = self.covered.get(device, -1)
            if seq <= max(covered, self._dropped_to.get(device, -1)):
                continue  # covered already: not judged again
            closed = self._runs.pop(device, None)
            if closed is not None and closed.last_seq > seq:  # the cut falls in earlier batches
                kept = self._kept_table()
                mine, start = _DeviceEvents.of(_by_seq(kept.filter(_of_device(kept, device)))), 0
                closed = None
            at = bisect.bisect_right(mine.seqs, seq, lo=start)
            if at > start and mine.seqs[at - 1] == seq:
                event = mine.envelope(at - 1)
                if _differs(checkpoint, event):
                    findings.append(_mismatch(checkpoint, event, position))
            else:
                misses.append((checkpoint, position))
            closed = _then(closed, mine.run_past(covered, start, at))
            start = at
            self.covered[device] = seq
            if closed is None:
                continue
            late = closed.last_time - closed.first["event_time"] > self._window
            if closed.count > self._window_events or late:
                findings += self._report(device, closed, position)
        rest = mine.run_past(self.covered.get(device, -1), start)
        if rest is not None:
            self._runs[device] = _then(self._runs.pop(device, None), rest)
        return findings

    def _open_runs_ended(self) -> list[Finding]:
        """Runs still open whose window ended: more events, or their partition moved on."""
        findings = []
        for device, run in self._runs.items():
            now = self._partition_time.get(run.partition, run.last_time)
            late = now - run.first["event_time"] > self._window
            if run.count > self._window_events or late:
                findings += self._report(device, run, run.at)
        return findings

    def _report(self, device: DeviceKey, run: _Run, at: Position) -> list[Finding]:
        if self.reported.get(device) == run.first_seq:
            return []
        self.reported[device] = run.first_seq
        details = {
            "device_id": device[1],
            "first_device_seq": run.first_seq,
            "uncovered_events": run.count,
            "window_events": self._window_events,
            "window_seconds": int(self._window.total_seconds()),
        }
        return [(UNCHECKPOINTED, details, dict(run.first), at)]

    def _prune(self) -> None:
        """Drop the tables every device of which is covered past; bound the rest."""
        covered = self.covered
        self._chunks = [
            (table, highest)
            for table, highest in self._chunks
            if any(seq > covered.get(device, -1) for device, seq in highest.items())
        ]
        rows = sum(table.num_rows for table, _ in self._chunks)
        if rows > max(2 * self._rows_after_compaction, self._compact_rows):
            self._compact()
            self._rows_after_compaction = sum(table.num_rows for table, _ in self._chunks)

    def _compact(self) -> None:
        """One table of only the uncovered events, the oldest of reported devices beyond
        twice the window dropped (memory bound: a device that never checkpoints)."""
        kept = self._kept_table()
        devices = list(self.covered)
        if devices:
            covered = pa.table(
                {
                    "processor_id": [p for p, _ in devices],
                    "device_id": [d for _, d in devices],
                    "covered_seq": pa.array(list(self.covered.values()), pa.int64()),
                }
            )
            joined = kept.join(covered, keys=_DEVICE, join_type="left outer")
            uncovered = pc.or_kleene(
                pc.is_null(joined["covered_seq"]),
                pc.greater(joined["device_seq"], joined["covered_seq"]),
            )
            kept = joined.filter(uncovered).select(KEPT_COLUMNS)
        for device, run in self._runs.items():
            if device in self.reported and run.count > 2 * self._window_events:
                keep_from = run.last_seq - self._window_events
                self._dropped_to[device] = max(keep_from, self._dropped_to.get(device, -1))
                old = pc.and_(
                    _of_device(kept, device), pc.less_equal(kept["device_seq"], keep_from)
                )
                kept = kept.filter(pc.invert(old))
        kept = kept.combine_chunks()
        self._chunks = [(kept, self._highest(kept))] if kept.num_rows else []


def _then(run: _Run | None, later: _Run | None) -> _Run | None:
    return later if run is None else run.then(later)


@dataclass(frozen=True, slots=True)
class _DeviceEvents:
    """One device's events by device_seq, with the columns that cut and end its runs as
    lists: a checkpoint is placed and a run measured in Python, not an Arrow call each."""

    table: pa.Table
    seqs: list[int]
    offsets: list[int]
    times: list[int]  # microseconds since the epoch: no datetime made per event
    trusted: list[int | None]  # null where skewed (AUDIT-CLOCK-SKEW)

    @classmethod
    def of(cls, table: pa.Table) -> _DeviceEvents:
        """A device's events; their `TRUSTED_TIME` is worked out unless the table has it."""
        names = table.column_names
        trusted = table[TRUSTED_TIME] if TRUSTED_TIME in names else trusted_times(table)
        return cls(
            table,
            table["device_seq"].to_pylist(),
            table["offset"].to_pylist(),
            _micros(table["event_time"]),
            _micros(trusted),
        )

    def envelope(self, index: int, names: Iterable[str] = ENVELOPE_COLUMNS) -> dict[str, Any]:
        """One event's values (a scalar each: cheaper than a one-row table's rows)."""
        return {name: self.table.column(name)[index].as_py() for name in names}

    def run_past(self, covered: int, start: int = 0, end: int | None = None) -> _Run | None:
        """The run of the events from `start` to `end` (default: the last) past device_seq
        `covered` (None if there are none)."""
        end = len(self.seqs) if end is None else end
        start = bisect.bisect_right(self.seqs, covered, lo=start, hi=end)
        if start >= end:
            return None
        first = self.envelope(start, (*ENVELOPE_COLUMNS, *_PLACE))
        return _Run(
            first={name: first[name] for name in ENVELOPE_COLUMNS},
            count=end - start,
            last_seq=self.seqs[end - 1],
            last_time=self._last_time(start, end),
            partition=first["partition"],
            at=Position(first["topic"], first["partition"], max(self.offsets[start:end])),
        )

    def _last_time(self, start: int, end: int) -> datetime:
        """When the events end by the device's clock, skewed ones left out (if any is not)."""
        trusted = [time for time in self.trusted[start:end] if time is not None]
        return _EPOCH + timedelta(
            microseconds=max(trusted) if trusted else max(self.times[start:end])
        )


def _micros(times: pa.ChunkedArray | pa.Array) -> list[int | None]:
    return pc.cast(times, _MICROS).cast(pa.int64()).to_pylist()


_MICROS: Final = pa.timestamp("us", "UTC")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


_PLACE: Final = ("topic", "partition")


def _by_seq(events: pa.Table) -> pa.Table:
    return events.sort_by([(name, "ascending") for name in _ORDER])


def _by_device(events: pa.Table) -> pa.Table:
    """The events sorted by device, each device's by device_seq."""
    return events.sort_by([(name, "ascending") for name in (*_DEVICE, *_ORDER)])


def device_slices(ordered: pa.Table) -> dict[DeviceKey, pa.Table]:
    """Each device's events of the batch (`_by_device`), as slices."""
    processors = ordered["processor_id"].to_pylist()
    devices = ordered["device_id"].to_pylist()
    slices: dict[DeviceKey, pa.Table] = {}
    start = 0
    for index in range(1, len(devices) + 1):
        if index == len(devices) or (processors[index], devices[index]) != (
            processors[start],
            devices[start],
        ):
            slices[(processors[start], devices[start])] = ordered.slice(start, index - start)
            start = index
    return slices


def lookup_mismatches(
    kept: pa.Table, checkpoints: list[tuple[Mapping[str, Any], Position | None]]
) -> list[Finding]:
    """AUDIT-CHECKPOINT-MISMATCH for each of `checkpoints` whose device_seq names no event
    of `kept`, or one with another payload hash (one join for all)."""
    if not checkpoints:
        return []
    named = pa.table(
        {
            "processor_id": [c["processor_id"] for c, _ in checkpoints],
            "device_id": [c["device_id"] for c, _ in checkpoints],
            "device_seq": pa.array([c["device_seq"] for c, _ in checkpoints], pa.int64()),
            "checkpoint_index": list(range(len(checkpoints))),
        }
    )
    keys = kept.select([*_DEVICE, "device_seq"]).append_column(
        "row", pa.array(range(kept.num_rows), pa.int64())
    )
    joined = named.join(keys, keys=[*_DEVICE, "device_seq"], join_type="inner")
    first_rows: dict[int, int] = {}
    for index, row in zip(
        joined["checkpoint_index"].to_pylist(), joined["row"].to_pylist(), strict=True
    ):
        first_rows[index] = min(row, first_rows.get(index, row))
    rows = pa.array(list(first_rows.values()), pa.int64())
    picked = python_values.rows(kept.select(ENVELOPE_COLUMNS).take(rows))
    found = dict(zip(first_rows, picked, strict=True))
    findings: list[Finding] = []
    for index, (checkpoint, position) in enumerate(checkpoints):
        event = found.get(index)
        if _differs(checkpoint, event):
            findings.append(_mismatch(checkpoint, event, position))
    return findings


def _differs(checkpoint: Mapping[str, Any], event: dict[str, Any] | None) -> bool:
    """No such event, or one whose payload hash is another (None: no payload bytes to tell)."""
    if event is None:
        return True
    sha = event["payload_sha256"]
    return sha is not None and sha != checkpoint["head_hash"]


def _of_device(table: pa.Table, device: DeviceKey) -> pa.Array:
    return pc.and_(
        pc.equal(table["processor_id"], device[0]), pc.equal(table["device_id"], device[1])
    )


def _mismatch(
    checkpoint: Mapping[str, Any], event: dict[str, Any] | None, position: Position
) -> Finding:
    details = {
        "checkpoint_id": checkpoint["checkpoint_id"],
        "device_id": checkpoint["device_id"],
        "device_seq": checkpoint["device_seq"],
        "head_hash": checkpoint["head_hash"],
        "payload_sha256": None if event is None else event["payload_sha256"],
    }
    if event is None:
        envelope = {
            "event_id": None,
            "processor_id": checkpoint["processor_id"],
            "device_id": checkpoint["device_id"],
            "event_time": checkpoint["signed_at"],
        }
        return (MISMATCH, details, envelope, None)
    return (MISMATCH, details, {name: event[name] for name in ENVELOPE_COLUMNS}, position)


_BROKER_TIME_TYPE: Final = pa.timestamp("ms", "UTC")
_KEPT_SCHEMA: Final = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", "UTC")),
        ("processor_id", pa.string()),
        ("deployment_id", pa.string()),
        ("device_id", pa.string()),
        ("region_code", pa.string()),
        ("device_seq", pa.int64()),
        ("prev_hash", pa.string()),
        ("payload_sha256", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.uint32()),
        ("offset", pa.uint64()),
        (BROKER_TIME, _BROKER_TIME_TYPE),
    ]
)


def as_kept(table: pa.Table) -> pa.Table:
    """What is kept of each event, in one schema whatever the source (decoder, store, file)."""
    if BROKER_TIME not in table.column_names:  # offline: files carry no broker time
        table = table.append_column(
            BROKER_TIME, pa.nulls(table.num_rows, pa.timestamp("ms", "UTC"))
        )
    return table.select(KEPT_COLUMNS).cast(_KEPT_SCHEMA)


def _empty() -> pa.Table:
    return _KEPT_SCHEMA.empty_table()
