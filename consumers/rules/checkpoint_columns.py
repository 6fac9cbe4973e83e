"""AUDIT-CHECKPOINT-MISMATCH and AUDIT-UNCHECKPOINTED over the columns of each batch.

For every device the tracker keeps, as Arrow columns, its events since its
last valid checkpoint: the uncovered ones. A valid checkpoint is looked up
among them by ``device_seq`` (one join per batch): a payload hash other than
its ``head_hash``, or no such event, is AUDIT-CHECKPOINT-MISMATCH; either way
it covers the device's events up to that number, which are then dropped.

A device's run of uncovered events is AUDIT-UNCHECKPOINTED, once per run,
when it holds more than the window's events, or spans more than the
window's seconds of event time: a run a checkpoint closes, up to its last
event (the device's own clock); a run still open, up to the latest event
time read from the device's partition, so a device that falls silent is
caught as its partition moves on, and a partition read behind the others
(consumer lag) is not judged by their time. Findings sit at the position
where they were found (the checkpoint, or the device's latest event), so a
batch read again finds them again at the same place.

A device that never checkpoints keeps at most twice the window's events
here once reported: a checkpoint naming an event dropped that way is not
judged.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers.batch import Position
from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS
from consumers.rules.stream import DeviceKey, Finding

MISMATCH: Final = "AUDIT-CHECKPOINT-MISMATCH"
UNCHECKPOINTED: Final = "AUDIT-UNCHECKPOINTED"
KEPT_COLUMNS: Final = (*ENVELOPE_COLUMNS, *POSITION_COLUMNS)
_DEVICE: Final = ["processor_id", "device_id"]


class CheckpointTracker:
    """The uncovered events of every device of one assignment, and what checkpoints said."""

    def __init__(self, window_events: int, window_seconds: int) -> None:
        self._window_events = window_events
        self._window = timedelta(seconds=window_seconds)
        self._uncovered: list[pa.Table] = []
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
            self._keep(_kept(uncovered))

    def observe(self, tables: Iterable[pa.Table]) -> None:
        """Keep the events of a batch (any kinds) until a checkpoint covers them."""
        for table in tables:
            if not table.num_rows:
                continue
            self._keep(_kept(table))

    def _keep(self, kept: pa.Table) -> None:
        self._uncovered.append(kept)
        latest = kept.group_by("partition").aggregate([("event_time", "max")])
        times = self._partition_time
        for partition, moment in zip(
            latest["partition"].to_pylist(), latest["event_time_max"].to_pylist(), strict=True
        ):
            if partition not in times or moment > times[partition]:
                times[partition] = moment

    def judge(self, checkpoints: list[tuple[Mapping[str, Any], Position]]) -> list[Finding]:
        """The batch's valid checkpoints (after its events were observed), in read order."""
        kept = self._kept()
        findings = []
        if checkpoints:
            closed = self._closed_runs(kept, checkpoints)
            findings = self._mismatches(kept, checkpoints) + closed
            kept = self._drop_covered(kept)
        if kept.num_rows:
            findings += self._unchecked(kept)
            kept = self._cap(kept)
        self._uncovered = [kept] if kept.num_rows else []
        return findings

    def _kept(self) -> pa.Table:
        if not self._uncovered:
            return _empty()
        return pa.concat_tables(self._uncovered).combine_chunks()

    def _mismatches(
        self, kept: pa.Table, checkpoints: list[tuple[Mapping[str, Any], Position]]
    ) -> list[Finding]:
        named = pa.table(
            {
                "processor_id": [c["processor_id"] for c, _ in checkpoints],
                "device_id": [c["device_id"] for c, _ in checkpoints],
                "device_seq": pa.array([c["device_seq"] for c, _ in checkpoints], pa.int64()),
                "checkpoint_index": list(range(len(checkpoints))),
            }
        )
        events = kept.select(ENVELOPE_COLUMNS)
        joined = named.join(events, keys=[*_DEVICE, "device_seq"], join_type="left outer")
        found: dict[int, dict[str, Any]] = {}
        for row in joined.to_pylist():
            if row["event_id"] is not None:
                found.setdefault(row.pop("checkpoint_index"), row)
        findings: list[Finding] = []
        for index, (checkpoint, position) in enumerate(checkpoints):
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            seq = checkpoint["device_seq"]
            event = found.get(index)
            behind = seq <= max(self.covered.get(device, -1), self._dropped_to.get(device, -1))
            if not behind and _differs(checkpoint, event):
                findings.append(_mismatch(checkpoint, event, position))
            self.covered[device] = max(seq, self.covered.get(device, -1))
        return findings

    def _closed_runs(
        self,
        kept: pa.Table,
        checkpoints: list[tuple[Mapping[str, Any], Position]],
    ) -> list[Finding]:
        """AUDIT-UNCHECKPOINTED for the runs the batch's checkpoints close, judged as they
        close: a run covered only after its window ended is reported at its checkpoint."""
        low_of = dict(self.covered)
        segments = []
        for index, (checkpoint, _) in enumerate(checkpoints):
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            low, high = low_of.get(device, -1), checkpoint["device_seq"]
            if high > low:
                segments.append((*device, low, high, index))
                low_of[device] = high
        if not segments or not kept.num_rows:
            return []
        names = [*_DEVICE, "low", "high", "segment"]
        bounds = pa.table(dict(zip(names, map(list, zip(*segments, strict=True)), strict=True)))
        joined = kept.select([*_DEVICE, "device_seq", "event_time"]).join(bounds, keys=_DEVICE)
        inside = joined.filter(
            pc.and_(
                pc.greater(joined["device_seq"], joined["low"]),
                pc.less_equal(joined["device_seq"], joined["high"]),
            )
        )
        runs = inside.group_by("segment").aggregate(
            [
                ("device_seq", "min"),
                ("device_seq", "count"),
                ("event_time", "min"),
                ("event_time", "max"),
            ]
        )
        findings: list[Finding] = []
        for run in sorted(runs.to_pylist(), key=lambda run: run["segment"]):
            checkpoint, position = checkpoints[run["segment"]]
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            first, count = run["device_seq_min"], run["device_seq_count"]
            late = run["event_time_max"] - run["event_time_min"] > self._window
            if (count > self._window_events or late) and self.reported.get(device) != first:
                self.reported[device] = first
                findings.append(self._unchecked_finding(kept, device, first, count, position))
        return findings

    def _drop_covered(self, kept: pa.Table) -> pa.Table:
        """The kept events no valid checkpoint covers yet."""
        if not kept.num_rows or not self.covered:
            return kept
        devices = list(self.covered)
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
        return joined.filter(uncovered).drop_columns(["covered_seq"]).select(KEPT_COLUMNS)

    def _unchecked(self, kept: pa.Table) -> list[Finding]:
        """AUDIT-UNCHECKPOINTED for each device whose open run's window ended, once per run."""
        runs = kept.group_by([*_DEVICE, "partition"]).aggregate(
            [("device_seq", "min"), ("device_seq", "count"), ("event_time", "min")]
        )
        findings: list[Finding] = []
        for run in runs.to_pylist():
            device = (run["processor_id"], run["device_id"])
            first = run["device_seq_min"]
            now = self._partition_time.get(run["partition"], run["event_time_min"])
            late = now - run["event_time_min"] > self._window
            if not (run["device_seq_count"] > self._window_events or late):
                continue
            if self.reported.get(device) == first:
                continue
            self.reported[device] = first
            count = run["device_seq_count"]
            findings.append(self._unchecked_finding(kept, device, first, count, None))
        return findings

    def _unchecked_finding(
        self, kept: pa.Table, device: DeviceKey, first: int, count: int, at: Position | None
    ) -> Finding:
        """The finding for the run from `first`, found at `at` (None: at the device's
        latest event)."""
        mine = kept.filter(_of_device(kept, device))
        event = mine.filter(pc.equal(mine["device_seq"], first)).slice(0, 1).to_pylist()[0]
        if at is None:
            latest = mine.take([pc.index(mine["offset"], pc.max(mine["offset"])).as_py()])
            at = Position(*(latest[name][0].as_py() for name in POSITION_COLUMNS))
        details = {
            "device_id": device[1],
            "first_device_seq": first,
            "uncovered_events": count,
            "window_events": self._window_events,
            "window_seconds": int(self._window.total_seconds()),
        }
        envelope = {name: event[name] for name in ENVELOPE_COLUMNS}
        return (UNCHECKPOINTED, details, envelope, at)

    def _cap(self, kept: pa.Table) -> pa.Table:
        """Drop the oldest events of reported devices beyond twice the window (memory bound)."""
        limit = 2 * self._window_events
        if kept.num_rows <= limit or not self.reported:
            return kept
        runs = kept.group_by(_DEVICE).aggregate([("device_seq", "max"), ("device_seq", "count")])
        over = runs.filter(pc.greater(runs["device_seq_count"], limit)).to_pylist()
        for run in over:
            device = (run["processor_id"], run["device_id"])
            if device not in self.reported:
                continue
            keep_from = run["device_seq_max"] - self._window_events
            self._dropped_to[device] = max(keep_from, self._dropped_to.get(device, -1))
            old = pc.and_(_of_device(kept, device), pc.less_equal(kept["device_seq"], keep_from))
            kept = kept.filter(pc.invert(old))
        return kept


def _differs(checkpoint: Mapping[str, Any], event: dict[str, Any] | None) -> bool:
    """No such event, or one whose payload hash is another (None: no payload bytes to tell)."""
    if event is None:
        return True
    sha = event["payload_sha256"]
    return sha is not None and sha != checkpoint["head_hash"]


def offline_findings(
    events: pa.Table,
    checkpoints: list[Mapping[str, Any]],
    latest: datetime | None,
    window_events: int,
    window_seconds: int,
) -> list[Finding]:
    """The checkpoint rules over a whole input: `events` sorted by device and device_seq
    (`consumers.kept_events`, with positions), its valid checkpoints in input order.

    Each device's events are cut into runs at its checkpoints, as the SDK sends
    them (right after the event covered): a run of more than the window's
    events, or one spanning more than its seconds (the last run: up to the
    latest event_time of the input), is AUDIT-UNCHECKPOINTED at its first event.
    """
    findings: list[Finding] = []
    covered: dict[DeviceKey, list[int]] = {}
    if checkpoints and events.num_rows:
        tracker = CheckpointTracker(window_events, window_seconds)
        judged = []
        for checkpoint in checkpoints:
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            seqs = covered.setdefault(device, [])
            if not seqs or checkpoint["device_seq"] > max(seqs):
                judged.append((checkpoint, None))
            seqs.append(checkpoint["device_seq"])
        for rule, details, event, _ in tracker._mismatches(_kept(events), judged):
            anchor = None if event["event_id"] is None else _position_of(events, event)
            findings.append((rule, details, event, anchor))
    window = timedelta(seconds=window_seconds)
    for device, part in _devices(events):
        cuts = sorted(set(covered.get(device, ())))
        seqs = part["device_seq"].to_pylist()
        start = 0
        ends = [*((_after(seqs, cut), True) for cut in cuts), (len(seqs), False)]
        for end, closed in ends:
            if end <= start:
                continue
            run = part.slice(start, end - start)
            last_time = run["event_time"][-1].as_py() if closed else latest
            first = run.slice(0, 1).to_pylist()[0]
            too_long = run.num_rows > window_events
            too_late = last_time is not None and last_time - first["event_time"] > window
            if too_long or too_late:
                details = {
                    "device_id": device[1],
                    "first_device_seq": first["device_seq"],
                    "uncovered_events": run.num_rows,
                    "window_events": window_events,
                    "window_seconds": window_seconds,
                }
                envelope = {name: first[name] for name in ENVELOPE_COLUMNS}
                at = Position(*(first[name] for name in POSITION_COLUMNS))
                findings.append((UNCHECKPOINTED, details, envelope, at))
            start = end
    return findings


def _devices(events: pa.Table) -> Iterable[tuple[DeviceKey, pa.Table]]:
    """Each device's rows of `events` (sorted by device), in turn."""
    if not events.num_rows:
        return
    keys = list(
        zip(events["processor_id"].to_pylist(), events["device_id"].to_pylist(), strict=True)
    )
    start = 0
    for index in range(1, len(keys) + 1):
        if index == len(keys) or keys[index] != keys[start]:
            yield keys[start], events.slice(start, index - start)
            start = index


def _after(seqs: list[int], cut: int) -> int:
    """The index of the first of the sorted `seqs` past `cut`."""
    return bisect.bisect_right(seqs, cut)


def _position_of(events: pa.Table, event: Mapping[str, Any]) -> Position:
    """Where the first row of `events` with the event's id and device_seq stands."""
    rows = pc.and_(
        pc.equal(events["event_id"], event["event_id"]),
        pc.equal(events["device_seq"], event["device_seq"]),
    )
    first = events.filter(rows).slice(0, 1).select(POSITION_COLUMNS).to_pylist()[0]
    return Position(*(first[name] for name in POSITION_COLUMNS))


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
    ]
)


def _kept(table: pa.Table) -> pa.Table:
    """What is kept of each event, in one schema whatever the source (decoder or store)."""
    return table.select(KEPT_COLUMNS).cast(_KEPT_SCHEMA)


def _empty() -> pa.Table:
    return _KEPT_SCHEMA.empty_table()
