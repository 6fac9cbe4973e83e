"""Publish a batch's findings and commit its offsets in one Kafka transaction.

Violations go to `faceaudit.violations.v1` (Avro, the `violation` schema) for
SIEMs and paging systems; dead letters go to `faceaudit.dead-letters.v1` with
their original bytes and key, their original headers plus the source position
and reason. The consumer offsets are committed inside the same transaction
(KIP-447), so for a `read_committed` reader every finding appears exactly once:
a batch whose transaction did not commit is read again, judged again and
published again, and the aborted copy stays invisible.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.batch import Row
from schemas import codec
from schemas.topics import DEAD_LETTER_TOPIC, VIOLATION_TOPIC

VIOLATION_FIELDS = tuple(field["name"] for field in codec.schema("violation")["fields"])


def transactional_id(group: str, worker: int) -> str:
    """Stable per group, host and worker: a restart fences its own unfinished transaction."""
    return f"faceaudit-{group}-{socket.gethostname()}-w{worker}"


class FindingsPublisher:
    """A transactional producer bound to one consumer of one group."""

    def __init__(self, bootstrap: str, consumer: KafkaConsumer, transaction_id: str) -> None:
        self._consumer = consumer
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=transaction_id,
            enable_idempotence=True,
            acks="all",
            client_id="faceaudit-findings",
            max_request_size=16 * 1024 * 1024,
        )
        self._producer.init_transactions()

    def commit(
        self,
        outbox: Mapping[str, Sequence[Row]],
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """Publish the outbox and commit `offsets`, all or nothing; raises on failure."""
        self._producer.begin_transaction()
        try:
            for row in outbox["violations"]:
                self._producer.send(
                    VIOLATION_TOPIC,
                    value=codec.encode("violation", {name: row[name] for name in VIOLATION_FIELDS}),
                    key=row["violation_id"].encode(),
                )
            for row in outbox["dead_letters"]:
                self._producer.send(
                    DEAD_LETTER_TOPIC,
                    value=row["raw"],
                    key=row["message_key"],
                    headers=_dead_letter_headers(row),
                )
            if offsets:
                self._producer.send_offsets_to_transaction(
                    dict(offsets), self._consumer.group_metadata()
                )
            self._producer.commit_transaction()
        except Exception:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._producer.abort_transaction()
            raise

    def close(self) -> None:
        self._producer.close(timeout=10)


def _dead_letter_headers(row: Row) -> list[tuple[str, bytes]]:
    headers = [(name, value.encode()) for name, value in row["headers"].items()]
    return [
        *headers,
        ("faceaudit.source.topic", row["topic"].encode()),
        ("faceaudit.source.partition", str(row["partition"]).encode()),
        ("faceaudit.source.offset", str(row["offset"]).encode()),
        ("faceaudit.reason", row["reason"].encode()),
        ("faceaudit.detail", row["detail"].encode()),
    ]


class Outbox:
    """Findings waiting for the transaction that commits past their event.

    A finding is published in the same transaction that commits its event's
    offset, never before: while an earlier event of the partition is held
    for a late registry record, the commit stays behind it, and a crash would
    re-read (and re-judge) everything after it. Findings with no position in
    the group's partitions (FR-DELETION-OVERDUE, dead letters of the registry
    topics) are due at once.
    """

    TABLES = ("violations", "dead_letters")

    def __init__(self) -> None:
        self._waiting: dict[str, list[Row]] = {table: [] for table in self.TABLES}

    def add(self, findings: Mapping[str, Sequence[Row]]) -> None:
        for table in self.TABLES:
            self._waiting[table].extend(findings[table])

    def take_due(self, committed: Mapping[tuple[str, int], int]) -> dict[str, list[Row]]:
        """Remove and return the findings whose event lies before the partition's commit."""
        due: dict[str, list[Row]] = {}
        for table, rows in self._waiting.items():
            keep = []
            due[table] = []
            for row in rows:
                end = committed.get((row["topic"], row["partition"]))
                (due[table] if end is None or row["offset"] < end else keep).append(row)
            self._waiting[table] = keep
        return due

    def drop(self, partitions: set[tuple[str, int]]) -> None:
        """Forget findings of revoked partitions: their new owner judges them again."""
        for table, rows in self._waiting.items():
            self._waiting[table] = [
                row for row in rows if (row["topic"], row["partition"]) not in partitions
            ]
