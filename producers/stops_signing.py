"""A device of the simulated fleet that stops signing checkpoints (AUDIT-UNCHECKPOINTED).

A quarter into the stream, the device of the next event gets one last
checkpoint covering all it sent, and none after: the producer leaves its
checkpoints to it, and it signs none. Whether the audit reports it depends on
how the stream goes on, so it is worked out as the audit would: the device's
uncovered run holds more events than the window, or the stream's time (skewed
events left out) moves more than the window past the run's first event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from producers.checkpointing import AUDIT_WINDOW, AUDIT_WINDOW_EVENTS
from producers.event_producer import EventProducer
from producers.fleet import CLOCK_SKEW


class StopsSigning:
    """Picks the device, stops its checkpoints, and follows its uncovered run."""

    def __init__(self, events: int) -> None:
        self._from_event = events // 4
        self._seen = 0
        self.device_id: str | None = None
        self._first_time: datetime | None = None
        self._uncovered = 0
        self._latest: datetime | None = None

    def sent(self, record: Mapping[str, Any], broken: list[str], producer: EventProducer) -> None:
        """Note an event the producer just sent."""
        self._seen += 1
        if CLOCK_SKEW not in broken and (
            self._latest is None or record["event_time"] > self._latest
        ):
            self._latest = record["event_time"]
        device_id = record["device_id"]
        if self.device_id is None:
            if self._seen > self._from_event:
                producer.send_checkpoint(device_id, record["processor_id"])
                producer.leave_checkpoints_to(device_id)
                self.device_id = device_id
        elif device_id == self.device_id:
            if self._first_time is None:
                self._first_time = record["event_time"]
            self._uncovered += 1

    @property
    def reported(self) -> bool:
        """Whether the audit reports the device's run by the end of the stream."""
        if self._first_time is None or self._latest is None:
            return False
        return (
            self._uncovered > AUDIT_WINDOW_EVENTS or self._latest - self._first_time > AUDIT_WINDOW
        )
