"""Each device's events in ``device_seq`` order, for the offline checker's sequence rules.

Offline the whole input is at hand (rules.md, AUDIT-SEQ-GAP): a device's
events are ordered by ``device_seq`` across all inputs, whatever files and
kinds they came in, and only numbers missing from the whole input are gaps.
Until the inputs are read, each event is kept as one flat tuple of what the
sequence rules need: its number, its input position, its payload hash and the
rest of its envelope (``schemas.codec.ENVELOPE``; processor and device are the
key). Strings that repeat across events are kept once, so memory grows by
about 400 bytes per event rather than with whole records.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from consumers.registry import Record
from consumers.rules.stream import DeviceKey

# (device_seq, input position, payload hash, event_id, event_time, deployment_id,
#  region_code, prev_hash): the envelope (schemas.codec.ENVELOPE) without the key.
_Entry = tuple[int, int, str | None, str, datetime, str, str, str | None]


class DeviceOrder:
    """Collects events in input order; gives them back device by device, by ``device_seq``."""

    def __init__(self) -> None:
        self._events: dict[DeviceKey, list[_Entry]] = {}
        self._position = 0

    def add(self, record: Record, payload_sha256: str | None) -> None:
        """Keep what the sequence rules need of one capture or match."""
        entry = (
            record["device_seq"],
            self._position,
            payload_sha256,
            record["event_id"],
            record["event_time"],
            sys.intern(record["deployment_id"]),  # few values, many events: one string each
            sys.intern(record["region_code"]),
            record["prev_hash"],
        )
        self._events.setdefault((record["processor_id"], record["device_id"]), []).append(entry)
        self._position += 1

    def events(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        """Every event as (envelope, payload hash), once.

        Devices come in sorted order, each device's events by ``device_seq``,
        and events that repeat a number in the order they were added. The
        sequence rule judges the first of those and none of the others: with
        the same event_id they are redeliveries; with another, they are not
        judged at all. A device's events are let go once given.
        """
        for key in sorted(self._events):
            entries = self._events.pop(key)
            entries.sort()  # (device_seq, position) is unique: later fields never compare
            processor_id, device_id = key
            for seq, _, payload_sha256, event_id, time, deployment, region, prev in entries:
                envelope = {
                    "event_id": event_id,
                    "event_time": time,
                    "processor_id": processor_id,
                    "deployment_id": deployment,
                    "device_id": device_id,
                    "region_code": region,
                    "device_seq": seq,
                    "prev_hash": prev,
                }
                yield envelope, payload_sha256
