"""When a device's chain head is due a checkpoint, and checkpoint records of it.

A device is due one after every `every` events, and after an event
`interval` of event time past the first one not yet covered: half the
audit's window each (AUDIT-UNCHECKPOINTED: 1,000 events or 10 minutes), so
a device that sends as scheduled is never reported. The SDK uses it live;
offline exports use `checkpointed` for the same cadence.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from schemas import codec
from schemas.topics import EVENT_KINDS

EVERY: Final = 500
INTERVAL: Final = timedelta(minutes=5)
AUDIT_WINDOW_EVENTS: Final = 2 * EVERY
AUDIT_WINDOW: Final = 2 * INTERVAL
"""The audit's window (rules.md, AUDIT-UNCHECKPOINTED): a run of more events, or longer, is
reported."""
Record = dict[str, Any]


@dataclass
class _Run:
    processor_id: str
    since: datetime
    events: int = 0


class CheckpointSchedule:
    """Counts each device's events since its last checkpoint. Thread-safe."""

    def __init__(self, every: int = EVERY, interval: timedelta = INTERVAL) -> None:
        self._every = every
        self._interval = interval
        self._runs: dict[str, _Run] = {}
        self._left: set[str] = set()  # devices that sign their own checkpoints
        self._lock = threading.Lock()

    def leave(self, device_id: str) -> None:
        """Count no more events of `device_id`: its checkpoints are no longer due here."""
        with self._lock:
            self._left.add(device_id)
            self._runs.pop(device_id, None)

    def sent(self, processor_id: str, device_id: str, event_time: datetime) -> bool:
        """Count an event the device sent; True if a checkpoint is due now (and counted as sent)."""
        with self._lock:
            if device_id in self._left:
                return False
            run = self._runs.setdefault(device_id, _Run(processor_id, event_time))
            run.events += 1
            due = run.events >= self._every or event_time - run.since >= self._interval
            if due:
                del self._runs[device_id]
            return due

    def take_pending(self) -> dict[str, str]:
        """The processor of every device with events not covered yet; they count as covered."""
        with self._lock:
            pending, self._runs = self._runs, {}
        return {device_id: run.processor_id for device_id, run in pending.items()}


def checkpoint_record(
    processor_id: str, device_id: str, device_seq: int, head_hash: str, signed_at: datetime
) -> Record:
    """A checkpoint of the device's chain up to `device_seq`, whose payload hash is `head_hash`."""
    return {
        "checkpoint_id": str(uuid.uuid4()),
        "processor_id": processor_id,
        "device_id": device_id,
        "device_seq": device_seq,
        "head_hash": head_hash,
        "signed_at": signed_at,
    }


def checkpointed(
    events: Iterable[tuple[str, Record]],
    schedule: CheckpointSchedule | None = None,
    signs: Callable[[str], bool] = lambda processor_id: True,
) -> Iterator[tuple[str, Record]]:
    """Chained events with the checkpoints the SDK would send among them (signed_at: the
    covered event's time), and one for every device left uncovered at the end.
    `signs`: whether a processor checkpoints at all."""
    schedule = schedule or CheckpointSchedule()
    heads: dict[str, Record] = {}
    for kind, record in events:
        yield kind, record
        if kind not in EVENT_KINDS or not signs(record["processor_id"]):
            continue
        heads[record["device_id"]] = _head(kind, record)
        if schedule.sent(record["processor_id"], record["device_id"], record["event_time"]):
            yield "checkpoint", heads[record["device_id"]]
    for device_id in schedule.take_pending():
        yield "checkpoint", heads[device_id]


def _head(kind: str, record: Record) -> Record:
    digest = hashlib.sha256(codec.encode_payload(kind, record)).hexdigest()
    return checkpoint_record(
        record["processor_id"],
        record["device_id"],
        record["device_seq"],
        digest,
        record["event_time"],
    )
