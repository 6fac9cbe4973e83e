"""One batch of work: the rows each table receives, and the positions they came from.

Rows are plain dicts whose keys are the table's column names; decoded Avro
records are used as rows directly (with their Kafka position added), so an
event is not copied on its way to ClickHouse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumers.violation import Violation

Row = dict[str, Any]
TopicPartition = tuple[str, int]

# Insert order: the events table goes last, so that a crash part-way through a
# batch never leaves stored events whose violations were not stored.
TABLES = ("dead_letters", "violations", "consents", "deployments", "deletions", "events")


@dataclass(slots=True)
class Batch:
    """Rows for every table, the offset range read from each partition, and the outbox.

    The outbox holds the violations and dead letters to publish to their
    topics. It includes those the store already holds from an earlier attempt
    (a crash between storing and publishing them), so it is not always the
    same as the rows to store.
    """

    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in TABLES})
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    outbox: dict[str, list[Row]] = field(
        default_factory=lambda: {"violations": [], "dead_letters": []}
    )
    _token: str | None = None

    def add(self, table: str, row: Row, topic: str, partition: int, offset: int) -> None:
        row["topic"] = topic
        row["partition"] = partition
        row["offset"] = offset
        self.rows[table].append(row)
        self.saw(topic, partition, offset)

    def add_finding(
        self, table: str, row: Row, topic: str, partition: int, offset: int, store: bool
    ) -> None:
        """A violation or dead-letter row: published always, stored when `store`."""
        if store:
            self.add(table, row, topic, partition, offset)
        else:
            row.update(topic=topic, partition=partition, offset=offset)
        self.outbox[table].append(row)

    def add_violation(
        self,
        violation: Violation,
        topic: str,
        partition: int,
        offset: int,
        detected_at: datetime,
        store: bool = True,
    ) -> None:
        row = {
            "violation_id": violation.violation_id,
            "event_id": violation.event_id,
            "rule_id": violation.rule_id,
            "severity": violation.severity,
            "profile": violation.profile,
            "catalogue_version": violation.catalogue_version,
            "articles": list(violation.articles),
            "message": violation.message,
            "details": json.dumps(violation.details, sort_keys=True, default=str),
            "processor_id": violation.processor_id,
            "deployment_id": violation.deployment_id,
            "device_id": violation.device_id,
            "region_code": violation.region_code,
            "event_time": violation.event_time,
            "detected_at": detected_at,
        }
        self.add_finding("violations", row, topic, partition, offset, store)

    def saw(self, topic: str, partition: int, offset: int) -> None:
        """Record that `offset` of this partition is part of the batch."""
        first, _ = self.ranges.get((topic, partition), (offset, offset))
        self.ranges[(topic, partition)] = (min(first, offset), offset)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    @property
    def token(self) -> str:
        """Deduplication token, fixed at its first use.

        Built from the offset ranges of the batch. It stays the same on every
        retry, even if a rebalance took partitions out of the batch meanwhile:
        a table that a failed attempt did store is then not stored again.
        """
        if self._token is None:
            spans = ",".join(f"{t}-{p}-{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
            self._token = hashlib.sha256(spans.encode()).hexdigest()[:32]
        return self._token

    def drop(self, partitions: set[TopicPartition]) -> None:
        """Take out the rows read from `partitions` (revoked: their new owner re-reads them)."""
        for tables in (self.rows, self.outbox):
            for table, rows in tables.items():
                tables[table] = [r for r in rows if (r["topic"], r["partition"]) not in partitions]
        for tp in partitions:
            self.ranges.pop(tp, None)


def now_utc() -> datetime:
    return datetime.now(UTC)
