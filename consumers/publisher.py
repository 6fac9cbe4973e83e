"""Publish a batch's findings to their topics, before its offsets are committed.

Violations go to `faceaudit.violations.v1` (Avro, the `violation` schema,
keyed by the deterministic violation id) for SIEMs and paging systems; dead
letters go to `faceaudit.dead-letters.v1` with their original bytes and key,
their original headers plus the source position and reason.

Delivery is at least once: findings are published after the batch is stored
and before its offsets are committed, and a finding is published only with
the commit that moves past its event (`Outbox`), so a re-read after a crash
repeats at most the findings of the batch in flight. Readers deduplicate by
the message key (the violation id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kafka import KafkaProducer

from consumers.batch import Row
from schemas import codec
from schemas.topics import DEAD_LETTER_TOPIC, VIOLATION_TOPIC

VIOLATION_FIELDS = tuple(field["name"] for field in codec.schema("violation")["fields"])


class FindingsPublisher:
    """An idempotent producer for violations and dead letters."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            client_id="faceaudit-findings",
            max_request_size=16 * 1024 * 1024,
        )

    def publish(self, outbox: Mapping[str, Sequence[Row]]) -> None:
        """Send every finding and wait for the broker; raises if any send failed."""
        futures = [
            self._producer.send(
                VIOLATION_TOPIC,
                value=codec.encode("violation", {name: row[name] for name in VIOLATION_FIELDS}),
                key=row["violation_id"].encode(),
            )
            for row in outbox["violations"]
        ]
        futures += [
            self._producer.send(
                DEAD_LETTER_TOPIC,
                value=row["raw"],
                key=row["message_key"],
                headers=_dead_letter_headers(row),
            )
            for row in outbox["dead_letters"]
        ]
        for future in futures:
            future.get(timeout=120)

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
