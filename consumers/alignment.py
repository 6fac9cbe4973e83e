"""Keep the partitions a validator reads level in record time.

A device's captures and matches travel on two topics, and AUDIT-SEQ-GAP waits
only a reorder window (1,000 events or 30 s per device) for the one to catch
up with the other. The client fetches partitions alike by bytes, not by time,
so on a backlog one topic can run ahead of the other by more than that
window, and the validator would report gaps that are not there.

Kafka Streams avoids this by always processing the partition whose next
record is oldest. The validator does the same at batch granularity: after
each poll it pauses every partition whose last record read is more than
`max_lead` seconds (record timestamps) ahead of the slowest partition that
still has records to read, and resumes it once the others have caught up. A
partition read to its end holds no one back, so a live stream, where every
partition is at its end, is never paused; one not read yet holds every other
back until its first records arrive (at the start, the first fetch of one
topic can come back well before the other's).

kafka-python 3.0 (to 3.0.12 at least) parks the records it has buffered for a
partition paused part-way through them, and never hands them out after the
partition is resumed: the partition stalls for good. A poll hands out each
partition's buffered records in turn and moves on only once they are all out,
so only the last partition of a poll that returned all it was allowed can be
part-way through; that one is left to read until a later poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from kafka import TopicPartition


class PausableConsumer(Protocol):
    """The part of `KafkaConsumer` the aligner uses."""

    def assignment(self) -> set[TopicPartition]: ...
    def paused(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...


class PartitionAligner:
    """Pauses the partitions that run ahead in record time; resumes them when level."""

    def __init__(self, max_lead_seconds: float) -> None:
        self._max_lead_ms = max_lead_seconds * 1000
        self._position: dict[TopicPartition, int] = {}  # next offset to read
        # Latest record timestamp read (ms); None for a partition whose records
        # carry none, which is left out of the alignment.
        self._time: dict[TopicPartition, int | None] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        """`tp` is read from `offset` on (assigned, or rewound to its commit)."""
        self._position[tp] = offset
        self._time.pop(tp, None)

    def read(self, tp: TopicPartition, next_offset: int, timestamp_ms: int) -> None:
        """Records of `tp` were read up to `next_offset`; the last carries `timestamp_ms`."""
        self._position[tp] = next_offset
        if timestamp_ms < 0:  # no timestamp: the record format predates them
            self._time.setdefault(tp, None)
            return
        latest = self._time.get(tp)
        if latest is None or timestamp_ms > latest:
            self._time[tp] = timestamp_ms

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions revoked: no longer read here."""
        for tp in partitions:
            self._position.pop(tp, None)
            self._time.pop(tp, None)

    def align(self, consumer: PausableConsumer, part_read: TopicPartition | None) -> None:
        """Pause the partitions running ahead, except `part_read`, and resume the rest.

        A partition started but not read yet, with records left, holds every
        other back until its first records arrive. `part_read`: the partition
        whose buffered records the last poll may have handed out only in part
        (the last of a full poll), or None.
        """
        assigned = consumer.assignment()
        slowest: float | None = None
        for tp, position in self._position.items():
            if tp not in assigned or _at_end(consumer, tp, position):
                continue
            if tp not in self._time:
                slowest = float("-inf")  # not read yet: where it stands is not known
                break
            timestamp = self._time[tp]
            if timestamp is not None and (slowest is None or timestamp < slowest):
                slowest = timestamp
        ahead: set[TopicPartition] = set()
        if slowest is not None:
            limit = slowest + self._max_lead_ms
            ahead = {
                tp
                for tp, timestamp in self._time.items()
                if tp in assigned and timestamp is not None and timestamp > limit
            }
        ahead.discard(part_read)
        paused = consumer.paused() & assigned
        if ahead - paused:
            consumer.pause(*(ahead - paused))
        if paused - ahead:
            consumer.resume(*(paused - ahead))


def _at_end(consumer: PausableConsumer, tp: TopicPartition, position: int) -> bool:
    """Whether every record of `tp` the broker last reported has been read."""
    end = consumer.highwater(tp)
    return end is not None and position >= end
