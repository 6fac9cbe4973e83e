"""Publish a batch's findings to their topics, before its offsets are committed.

Violations go to `faceaudit.violations.v1` (Avro, the `violation` schema,
keyed by the deterministic violation id) for SIEMs and paging systems; dead
letters go to `faceaudit.dead-letters.v1` with their original bytes and key,
their original headers plus the source position and reason.

A finding is published after its batch is stored, and only with the commit
that moves past its event (`Outbox`). Violations are published once: each
carries the position of its event in headers, every commit records how far
the violations topic reached (`Mark`), and a partition's next owner leaves
out what was published past the commit (`consumers.published`). Dead letters
are published at least once: a re-read after a crash repeats at most those of
the batch in flight; readers deduplicate by the source position headers.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from kafka import TopicPartition
from kafka.errors import AuthorizationError, SaslAuthenticationFailedError

from consumers.batch import Mark, Row
from consumers.published import source_headers
from consumers.trail.digests import Digest
from core.clients import KafkaConfig, kafka_producer
from core.delivery import describe_failure
from core.errors import FaceauditError
from schemas import codec
from schemas.topics import DEAD_LETTER_TOPIC, DIGESTS_TOPIC, VIOLATION_TOPIC

VIOLATION_FIELDS = tuple(field["name"] for field in codec.schema("violation")["fields"])


class FindingsPublisher:
    """An idempotent producer for violations and dead letters.

    Keeps the mark of the violations topic: per partition, the offset after
    the last violation it published, or the end of the partition when it
    last took event partitions, whichever is later. All it publishes from
    now on lands at or after the mark.
    """

    def __init__(self, kafka: KafkaConfig) -> None:
        self.mark: Mark = {}
        self._kafka = kafka
        self._producer = kafka_producer(
            kafka,
            enable_idempotence=True,
            acks="all",
            client_id="faceaudit-findings",
            max_request_size=16 * 1024 * 1024,
            # A batch's findings are sent together: records wait in the
            # accumulator until `publish` flushes them (or a producer batch is
            # full) instead of waking the network thread once per record.
            linger_ms=1000,
            batch_size=256 * 1024,
        )

    def publish(self, due: Mapping[str, Sequence[Outgoing]]) -> None:
        """Send every finding and wait for the broker; raises if any send failed."""
        sent = {
            table: [
                self._producer.send(
                    TOPIC_OF[table], value=one.value, key=one.key, headers=one.headers
                )
                for one in findings
            ]
            for table, findings in due.items()
        }
        self._producer.flush(timeout=120)
        try:
            for future in sent.get("violations", ()):
                done = future.get(timeout=120)
                self.mark[done.partition] = max(self.mark.get(done.partition, 0), done.offset + 1)
            for future in sent.get("dead_letters", ()):
                future.get(timeout=120)
        except (AuthorizationError, SaslAuthenticationFailedError) as exc:
            raise FaceauditError(describe_failure(self._kafka, exc)) from None

    def publish_digest(self, digest: Digest) -> None:
        """Send a digest, keyed by its chain, and wait for the broker."""
        future = self._producer.send(
            DIGESTS_TOPIC, value=digest.to_message(), key=digest.chain.encode()
        )
        self._producer.flush(timeout=120)
        try:
            future.get(timeout=120)
        except (AuthorizationError, SaslAuthenticationFailedError) as exc:
            raise FaceauditError(describe_failure(self._kafka, exc)) from None

    def raise_mark(self, ends: Mark) -> None:
        """Move the mark up to `ends`, the violations topic's end offsets just read."""
        for partition, end in ends.items():
            self.mark[partition] = max(self.mark.get(partition, 0), end)

    def close(self) -> None:
        self._producer.close(timeout=10)


TOPIC_OF: Final = {"violations": VIOLATION_TOPIC, "dead_letters": DEAD_LETTER_TOPIC}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A finding as it is to be sent, and the position of its event (for when it is due).

    The outbox keeps these rather than the stored rows: a commit held back
    behind events waiting for a registry record keeps tens of thousands of
    findings waiting, and the message takes half the memory of its row.
    """

    topic: str
    partition: int
    offset: int
    violation_id: str | None  # None for a dead letter
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]


def outgoing(findings: Mapping[str, Sequence[Row]]) -> dict[str, list[Outgoing]]:
    """A batch's violation and dead-letter rows as the messages they are published as."""
    return {
        "violations": [_violation(row) for row in findings["violations"]],
        "dead_letters": [_dead_letter(row) for row in findings["dead_letters"]],
    }


def _violation(row: Row) -> Outgoing:
    return Outgoing(
        row["topic"],
        row["partition"],
        row["offset"],
        row["violation_id"],
        codec.encode("violation", {name: row[name] for name in VIOLATION_FIELDS}),
        row["violation_id"].encode(),
        source_headers(row["topic"], row["partition"], row["offset"]) if row["topic"] else [],
    )


def _dead_letter(row: Row) -> Outgoing:
    headers = [(name, value.encode()) for name, value in row["headers"].items()]
    headers += [
        *source_headers(row["topic"], row["partition"], row["offset"]),
        ("faceaudit.reason", row["reason"].encode()),
        ("faceaudit.detail", row["detail"].encode()),
    ]
    return Outgoing(
        row["topic"], row["partition"], row["offset"], None, row["raw"], row["message_key"], headers
    )


class Outbox:
    """Findings waiting for the commit that moves past their event.

    A finding is published just before the commit of its event's offset,
    never earlier: while an earlier event of the partition is held
    for a late registry record, the commit stays behind it, and a crash would
    re-read (and re-judge) everything after it. Findings with no position in
    the group's partitions (FR-DELETION-OVERDUE, dead letters of the registry
    topics) are due at once.
    """

    TABLES = ("violations", "dead_letters")

    def __init__(self) -> None:
        # Per table and source partition, a heap by offset (then arrival): a batch takes
        # from the front of each only what its commit passed, however much waits behind.
        self._waiting: dict[str, dict[TopicPartition, list[tuple[int, int, Outgoing]]]] = {
            table: {} for table in self.TABLES
        }
        self._arrivals = itertools.count()
        self._published: dict[TopicPartition, set[str]] = {}

    def already_published(self, published: dict[TopicPartition, set[str]]) -> None:
        """Violations of newly taken partitions that their last owner had published."""
        self._published.update(published)

    def add(self, findings: Mapping[str, Sequence[Outgoing]]) -> None:
        for table in self.TABLES:
            waiting = self._waiting[table]
            for one in findings[table]:
                source = TopicPartition(one.topic, one.partition)
                entry = (one.offset, next(self._arrivals), one)
                heapq.heappush(waiting.setdefault(source, []), entry)

    def take_due(self, committed: Mapping[TopicPartition, int]) -> dict[str, list[Outgoing]]:
        """Remove and return the findings whose event lies before the partition's commit,
        by partition and offset.

        Violations already published leave without being returned.
        """
        due: dict[str, list[Outgoing]] = {}
        for table, waiting in self._waiting.items():
            due[table] = []
            for source, heap in list(waiting.items()):
                end = committed.get(source)
                while heap and (end is None or heap[0][0] < end):
                    one = heapq.heappop(heap)[2]
                    if not self._is_published(source, one):
                        due[table].append(one)
                if not heap:
                    del waiting[source]
        return due

    def _is_published(self, source: TopicPartition, one: Outgoing) -> bool:
        published = self._published.get(source)
        return published is not None and one.violation_id in published
