"""Events as the decode step hands them on, and judged as the validator judges them.

Tables are built the way the decode step builds them (encoded, decoded by
the native decoder, placed at Kafka positions), so a test judges what the
validator would be given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from consumers.batch import Batch
from consumers.event_columns import envelopes, with_positions
from consumers.judge import Anchored, Judge
from consumers.registry import Registry
from consumers.rules.columnar import ColumnarRules
from consumers.rules.sequence_columns import observe_tables
from consumers.tables import decoder
from consumers.violation import Violation
from producers.event_producer import DeviceChain
from schemas import codec
from schemas.topics import EVENTS_TOPIC


def event_table(
    kind: str, records: Sequence[dict[str, Any]], topic: str, partition: int, offsets: Sequence[int]
) -> pa.Table:
    """`records` of one kind, encoded, decoded, placed at `offsets` and marked with their kind."""
    [table] = batch_tables([(kind, record) for record in records], topic, partition, 0).values()
    table = table.set_column(
        table.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.uint64())
    )
    return table.append_column("kind", pa.repeat(kind, len(records)))


def batch_tables(
    events: Sequence[tuple[str, dict[str, Any]]],
    topic: str,
    partition: int,
    first_offset: int,
    broker_times: Sequence[datetime | None] | None = None,
) -> dict[str, pa.Table]:
    """(kind, record) pairs read as one batch at consecutive offsets: a table per kind,
    each row's `message_index` its place in the batch, as the decode step makes them
    (with `broker_times`, the broker's time of each message, as a broker stamps them)."""
    tables, failures = decoder().decode_batch(
        [codec.encode(kind, record) for kind, record in events], 1 << 20
    )
    assert not failures, failures
    n = len(events)
    return {
        kind: with_positions(
            pa.Table.from_batches([batch]),
            pa.array([topic] * n, pa.string()),
            pa.array([partition] * n, pa.uint32()),
            pa.array(range(first_offset, first_offset + n), pa.uint64()),
            None if broker_times is None else pa.array(broker_times, pa.timestamp("ms", "UTC")),
        )
        for kind, batch in tables.items()
    }


def judge_batch(judge: Judge, tables: dict[str, pa.Table]) -> list[Anchored]:
    """One batch judged as the validator judges it when nothing waits for the registry:
    the registry's rules and FR-FILING, then the sequence rules."""
    found = judge.judge_tables(tables)
    return found + judge.violations(observe_tables(judge.sequences, tables.values()))


def event_batch(
    kind: str,
    records: Sequence[dict[str, Any]],
    hashes: Iterable[str | None] | None = None,
    first_offset: int = 0,
) -> dict[str, pa.Table]:
    """`records` of one kind read as one batch from the events topic (`batch_tables`).

    `hashes`, when given, stand for the payloads' own SHA-256 (None: the
    payload's bytes are not known, so the chain is not judged at it).
    """
    tables = batch_tables([(kind, record) for record in records], EVENTS_TOPIC, 0, first_offset)
    if hashes is not None:
        table = tables[kind]
        column = table.schema.get_field_index("payload_sha256")
        tables[kind] = table.set_column(
            column, table.field(column), pa.array(list(hashes), pa.string())
        )
    return tables


def judge_events(
    judge: Judge,
    kind: str,
    records: Sequence[dict[str, Any]],
    hashes: Iterable[str | None] | None = None,
) -> list[Violation]:
    """`records` of one kind judged as one batch (`event_batch`, `judge_batch`)."""
    return [v for v, _ in judge_batch(judge, event_batch(kind, records, hashes))]


def rule_violations(
    profile: str,
    registry: Registry,
    kind: str,
    event: dict[str, Any],
    broker_time: datetime | None = None,
) -> list[Violation]:
    """The per-event rules that fire at one event under `profile`, in catalogue order
    (read from Kafka with the broker's `broker_time` when given, else from a file)."""
    rules = ColumnarRules(profile, registry)
    times = None if broker_time is None else [broker_time]
    [table] = batch_tables([(kind, event)], EVENTS_TOPIC, 0, 0, times).values()
    findings = rules.evaluate(kind, table)
    if not findings:
        return []
    return [
        rules.violation(rule_id, envelope, details)
        for (_, rule_id, details), envelope in zip(
            findings, envelopes(table, [row for row, _, _ in findings]), strict=True
        )
    ]


def chained(events: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, record) pairs numbered and hash-chained per device, as the producer SDK sends them."""
    chains: defaultdict[str, DeviceChain] = defaultdict(DeviceChain)
    out = []
    for kind, record in events:
        chain = chains[record["device_id"]]
        stamped = chain.stamp(record)
        chain.advance(codec.encode_payload(kind, stamped))
        out.append((kind, stamped))
    return out


def add_judged_events(
    batch: Batch,
    judge: Judge,
    events: Sequence[tuple[str, dict[str, Any]]],
    partition: int,
    first_offset: int,
    detected_at: datetime,
) -> None:
    """(kind, record) pairs read from the events topic at consecutive offsets, added to
    `batch` with the violations `judge` finds at them, as the validator adds a batch."""
    tables = batch_tables(events, EVENTS_TOPIC, partition, first_offset)
    for violation, at in judge_batch(judge, tables):
        batch.add_violation(violation, at.topic, at.partition, at.offset, detected_at)
    for kind, table in tables.items():
        batch.add_events(table.append_column("kind", pa.repeat(kind, table.num_rows)))
