"""Which violations of a partition were published past its last commit.

A violation is published just before the commit that moves past its event.
A crash between the two leaves the violation on the topic and its event
uncommitted: the partition's next owner re-reads and re-judges the event and
would publish the violation again. To publish each violation once, every
commit records in its metadata a *mark*: per partition of the violations
topic, an offset from which everything the committing process publishes
later is found. The next owner reads the topic from the mark of each
partition it takes and leaves out the violations already there.

One owner publishes a partition's violations at a time; a member that was
evicted from the group (its session expired while it was frozen) but still
publishes before it learns so is not fenced, and may repeat what it sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from kafka import TopicPartition

from consumers.batch import Mark
from core.clients import KafkaConfig, kafka_consumer
from schemas.topics import VIOLATION_TOPIC

SOURCE_HEADERS = ("faceaudit.source.topic", "faceaudit.source.partition", "faceaudit.source.offset")
_MARK_KEY = "violations_topic_mark"


def encode_mark(mark: Mark) -> str:
    """The commit metadata that carries `mark` (brokers keep up to 4 KiB)."""
    return json.dumps({_MARK_KEY: {str(p): o for p, o in sorted(mark.items())}})


def decode_mark(metadata: str | None) -> Mark | None:
    """The mark in a commit's metadata; None when the commit carries none."""
    try:
        mark = json.loads(metadata or "")[_MARK_KEY]
        return {int(p): int(o) for p, o in mark.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def source_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers naming the event a violation was found at."""
    values = (topic, str(partition), str(offset))
    return [(name, value.encode()) for name, value in zip(SOURCE_HEADERS, values, strict=True)]


class PublishedLog:
    """Reads the violations topic (no consumer group) to find what was published."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self._reader = kafka_consumer(
            kafka, enable_auto_commit=False, client_id="faceaudit-published-log"
        )
        numbers = sorted(self._reader.partitions_for_topic(VIOLATION_TOPIC) or ())
        self._partitions = [TopicPartition(VIOLATION_TOPIC, p) for p in numbers]

    def ends(self) -> Mark:
        """The current end offset of each partition of the topic."""
        ends = self._reader.end_offsets(self._partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    def published_since(
        self, mark: Mark, ends: Mark, commits: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, set[str]]:
        """Ids of violations published from `mark` up to `ends`, per source partition in `commits`.

        Only violations found at or after the source partition's committed
        offset count: they are the ones its next owner judges again.
        """
        found: dict[TopicPartition, set[str]] = {source: set() for source in commits}
        todo = {
            tp: ends[tp.partition]
            for tp in self._partitions
            if mark.get(tp.partition, 0) < ends[tp.partition]
        }
        if not todo:
            return found
        self._reader.assign(list(todo))
        for tp in todo:
            self._reader.seek(tp, mark.get(tp.partition, 0))
        while todo:
            for tp, messages in self._reader.poll(timeout_ms=1000).items():
                for message in messages:
                    if message.offset < todo.get(tp, 0):
                        _collect(message, commits, found)
            todo = {tp: end for tp, end in todo.items() if self._reader.position(tp) < end}
        self._reader.assign([])
        return found

    def close(self) -> None:
        self._reader.close()


def _collect(
    message, commits: Mapping[TopicPartition, int], found: dict[TopicPartition, set[str]]
) -> None:
    headers = dict(message.headers or ())
    try:
        topic, partition, offset = (headers[name].decode() for name in SOURCE_HEADERS)
        source, offset = TopicPartition(topic, int(partition)), int(offset)
    except (KeyError, ValueError, UnicodeDecodeError):
        return  # not a violation found at an event
    if source in commits and offset >= commits[source]:
        found[source].add(message.key.decode())
