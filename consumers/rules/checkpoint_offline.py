"""The checkpoint rules over a whole input, for `faceaudit check`.

The input is at hand, so each device's events are cut into runs at its
valid checkpoints, as the SDK sends them (right after the event covered),
instead of being tracked batch by batch (`consumers.rules.checkpoint_columns`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from consumers import python_values
from consumers.batch import Position
from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS
from consumers.rules.checkpoint_columns import (
    UNCHECKPOINTED,
    as_kept,
    device_slices,
    lookup_mismatches,
)
from consumers.rules.stream import DeviceKey, Finding


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
        judged = []
        for checkpoint in checkpoints:
            device = (checkpoint["processor_id"], checkpoint["device_id"])
            seqs = covered.setdefault(device, [])
            if not seqs or checkpoint["device_seq"] > max(seqs):
                judged.append((checkpoint, None))
            seqs.append(checkpoint["device_seq"])
        for rule, details, event, _ in lookup_mismatches(as_kept(events), judged):
            anchor = None if event["event_id"] is None else _position_of(events, event)
            findings.append((rule, details, event, anchor))
    window = timedelta(seconds=window_seconds)
    for device, part in device_slices(events).items():
        cuts = sorted(set(covered.get(device, ())))
        seqs = part["device_seq"].to_pylist()
        start = 0
        ends = [*((_after(seqs, cut), True) for cut in cuts), (len(seqs), False)]
        for end, closed in ends:
            if end <= start:
                continue
            run = part.slice(start, end - start)
            last_time = run["event_time"][-1].as_py() if closed else latest
            [first] = python_values.rows(run.slice(0, 1))
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
