"""One batch of work as it travels the validator's chain of steps.

The read step fills `messages` and `read_to`; the decode step turns messages
into `events` (one Arrow table per kind) and dead letters; the judge step
adds the event tables to store, the rows of the other tables, the findings
to publish and `commit`, how far each partition may be committed; the
publish step sets `mark`. So a batch carries its own offsets from the read
step to the commit step, and no step keeps a table of positions beside it.

Events stay Arrow columns from the decoder to ClickHouse. The other rows
(violations, dead letters, registry records: few) are plain dicts whose keys
are the table's column names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from consumers.violation import Violation

Row = dict[str, Any]
Mark = dict[int, int]
"""Offset per partition of the violations topic."""

# Insert order: the events table goes last, so that a crash part-way through a
# batch never leaves stored events whose violations were not stored.
ROW_TABLES = ("dead_letters", "violations", "consents", "deployments", "deletions", "checkpoints")
TABLES = (*ROW_TABLES, "events")


class Position(NamedTuple):
    """Where a message was read: the one position type of the pipeline."""

    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class ReadCheckpoint(NamedTuple):
    """A checkpoint as read: its record, the exact bytes and headers its signature covers,
    and where it was read."""

    record: Row
    value: bytes
    headers: list[tuple[str, bytes]]
    position: Position


NO_POSITION = Position("", 0, 0)
"""The anchor of a finding that belongs to no event (FR-DELETION-OVERDUE)."""


@dataclass(slots=True)
class Batch:
    """Messages read, what they became, and how far they let each partition be committed.

    The outbox holds the violations and dead letters to publish to their
    topics. It includes those the store already holds from an earlier attempt
    (a crash between storing and publishing them), so it is not always the
    same as the rows to store.
    """

    messages: list[ConsumerRecord] = field(default_factory=list)
    read_to: dict[TopicPartition, int] = field(default_factory=dict)
    events: dict[str, pa.Table] = field(default_factory=dict)
    checkpoints: list[ReadCheckpoint] = field(default_factory=list)
    event_tables: list[pa.Table] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in ROW_TABLES})
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    outbox: dict[str, list[Row]] = field(
        default_factory=lambda: {"violations": [], "dead_letters": []}
    )
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    mark: Mark = field(default_factory=dict)
    size: int = 0  # messages of the group read into it, however many batches it gathers
    started: float = 0.0  # monotonic time its reading began
    _token: str | None = None

    def read(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> None:
        """Messages of one of the group's partitions, in the order the partition holds them."""
        if messages:
            self.messages += messages
            self.read_to[tp] = messages[-1].offset + 1
            self.size += len(messages)

    def add(self, table: str, row: Row, topic: str, partition: int, offset: int) -> None:
        row["topic"] = topic
        row["partition"] = partition
        row["offset"] = offset
        self.rows[table].append(row)
        self.saw(topic, partition, offset)

    def add_events(self, table: pa.Table) -> None:
        """Events to store: an Arrow table with `kind` and the Kafka position of each row."""
        if table.num_rows:
            self.event_tables.append(table)
            for (topic, partition), (first, last) in offset_spans(table).items():
                self.saw(topic, partition, first)
                self.saw(topic, partition, last)

    @property
    def event_count(self) -> int:
        return sum(table.num_rows for table in self.event_tables)

    def add_finding(self, table: str, row: Row, topic: str, partition: int, offset: int) -> None:
        """A violation or dead-letter row: stored (unless the store holds it) and published."""
        self.add(table, row, topic, partition, offset)
        self.outbox[table].append(row)

    def add_violation(
        self, violation: Violation, topic: str, partition: int, offset: int, detected_at: datetime
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
        self.add_finding("violations", row, topic, partition, offset)

    def saw(self, topic: str, partition: int, offset: int) -> None:
        """Record that `offset` of this partition is part of the batch."""
        key = TopicPartition(topic, partition)
        first, _ = self.ranges.get(key, (offset, offset))
        self.ranges[key] = (min(first, offset), offset)

    def __len__(self) -> int:
        """Rows to store, of every table."""
        return self.event_count + sum(len(rows) for rows in self.rows.values())

    @property
    def token(self) -> str:
        """Deduplication token, fixed at its first use.

        Built from the offset ranges of the batch, so it stays the same on
        every retry of the insert: a table that a failed attempt did store is
        not stored again.
        """
        if self._token is None:
            spans = ",".join(f"{t}-{p}-{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
            self._token = hashlib.sha256(spans.encode()).hexdigest()[:32]
        return self._token

    def merge(self, later: Batch) -> None:
        """Take in a later, decoded and judged batch: its rows, findings and offsets.

        Its commit offsets replace these: the judge sets them for all it has
        judged so far. The later batch is left without rows or findings.
        """
        for table, rows in later.rows.items():
            self.rows[table] += rows
        self.event_tables += later.event_tables
        for table, rows in later.outbox.items():
            self.outbox[table] += rows
        for (topic, partition), (first, last) in later.ranges.items():
            self.saw(topic, partition, first)
            self.saw(topic, partition, last)
        self.read_to.update(later.read_to)
        self.commit = later.commit
        self.size += later.size
        later.free_rows()
        later.free_findings()

    def free_rows(self) -> None:
        """Let go of the rows once stored: a frame that outlives the batch's turn
        (`GroupReader.read`) then keeps only an empty shell."""
        self.rows = {table: [] for table in ROW_TABLES}
        self.event_tables = []

    def free_findings(self) -> None:
        """Let go of the findings once the outbox has taken them."""
        self.outbox = {table: [] for table in self.outbox}

    def drop(self, partitions: set[TopicPartition]) -> None:
        """Take out what was read from `partitions` (revoked: their new owner reads them again)."""
        self.messages = [m for m in self.messages if (m.topic, m.partition) not in partitions]
        for tp in partitions:
            self.read_to.pop(tp, None)
            self.ranges.pop(tp, None)


def offset_spans(table: pa.Table) -> dict[tuple[str, int], tuple[int, int]]:
    """The lowest and highest offset of each (topic, partition) in `table`."""
    spans = table.group_by(["topic", "partition"]).aggregate([("offset", "min"), ("offset", "max")])
    names = ("topic", "partition", "offset_min", "offset_max")
    columns = [spans.column(name).to_pylist() for name in names]
    return {(t, p): (low, high) for t, p, low, high in zip(*columns, strict=True)}


def now_utc() -> datetime:
    return datetime.now(UTC)
