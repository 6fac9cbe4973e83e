"""What ClickHouse already holds from a partition's uncommitted tail.

After a crash between insert and commit, the next owner of a partition
re-reads from the last committed offset. Loading the rows already stored
from that offset on lets it skip them, so re-reading never stores twice.
An event is known by its offset and its payload's hash: a different event
at a stored offset (the topic was created anew, or this is another cluster)
is an error, never taken for the one stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from consumers.rules.checkpoint_columns import KEPT_COLUMNS
from schemas.ddl import DATABASE
from schemas.topics import EVENTS_TOPIC


@dataclass(frozen=True, slots=True)
class StoredTail:
    """Offsets (and violation ids) stored at or after the committed offset."""

    events: Mapping[int, str | None] = field(default_factory=dict)
    """Offset -> the stored event's payload SHA-256."""
    dead_letters: frozenset[int] = field(default_factory=frozenset)
    violations: frozenset[str] = field(default_factory=frozenset)
    checkpoints: frozenset[int] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        """Whether the store holds anything of the partition past its commit."""
        return bool(self.events or self.dead_letters or self.violations or self.checkpoints)


def load_stored_tail(client: Client, topic: str, partition: int, start: int) -> StoredTail:
    """Query each table for rows from the partition at offsets >= `start`."""
    where = "topic = {topic:String} AND partition = {partition:UInt32} AND offset >= {start:UInt64}"
    params = {"topic": topic, "partition": partition, "start": start}

    def column(table: str, name: str) -> frozenset:
        result = client.query(
            f"SELECT {name} FROM {DATABASE}.{table} WHERE {where}", parameters=params
        )
        return frozenset(row[0] for row in result.result_rows)

    stored = client.query(
        f"SELECT offset, payload_sha256 FROM {DATABASE}.events WHERE {where}", parameters=params
    )
    return StoredTail(
        events=dict(stored.result_rows),
        dead_letters=column("dead_letters", "offset"),
        violations=column("violations", "violation_id"),
        checkpoints=column("checkpoints", "offset"),
    )


def stored_registry_offsets(client: Client) -> dict[tuple[str, int], int]:
    """The highest offset of each registry partition already stored.

    Every validator start re-reads the registry topics (consents, deployments,
    deletions) from the beginning to rebuild its state; rows up to these
    offsets, records and dead letters alike, are not stored again. (The
    dead-letter rows of event topics are keyed by their own partitions and
    are never consulted here.)
    """
    result = client.query(
        " UNION ALL ".join(
            f"SELECT topic, partition, max(offset) FROM {DATABASE}.{table} "
            "GROUP BY topic, partition"
            for table in ("consents", "deployments", "deletions", "dead_letters")
        )
    )
    highest: dict[tuple[str, int], int] = {}
    for topic, partition, offset in result.result_rows:  # one row per table that has it
        highest[topic, partition] = max(offset, highest.get((topic, partition), -1))
    return highest


def stored_eventless_violations(client: Client) -> frozenset[str]:
    """Ids of stored violations that belong to no event (FR-DELETION-OVERDUE)."""
    result = client.query(f"SELECT violation_id FROM {DATABASE}.violations WHERE event_id IS NULL")
    return frozenset(row[0] for row in result.result_rows)


def processor_regions(client: Client) -> dict[str, list[str]]:
    """The regions each processor's stored events came from (from the statistics)."""
    result = client.query(
        f"SELECT processor_id, groupUniqArray(region_code) FROM {DATABASE}.event_stats_minute "
        "GROUP BY processor_id"
    )
    return {processor: list(regions) for processor, regions in result.result_rows}


def stored_deletions(client: Client) -> list[dict]:
    """Every deletion stored, so FR-DELETION-OVERDUE survives the topic's retention."""
    result = client.query(f"SELECT processor_id, subject_ref, deleted_at FROM {DATABASE}.deletions")
    return [
        {"processor_id": p, "subject_ref": s, "deleted_at": _utc(at)}
        for p, s, at in result.result_rows
    ]


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; the embedded engine may hand them back without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def device_states(client: Client, partition: int) -> list[tuple[str, str, int, str]]:
    """Where each device of an event partition stands: highest sequence number and its hash.

    A device is the pair (processor_id, device_id), so each row is
    (processor_id, device_id, highest device_seq, its payload hash). A
    device's captures and matches share one topic and key, so one partition.
    """
    result = client.query(
        f"SELECT processor_id, device_id, max(device_seq), argMax(payload_sha256, device_seq) "
        f"FROM {DATABASE}.events WHERE partition = {{partition:UInt32}} "
        "AND topic = {topic:String} GROUP BY processor_id, device_id",
        parameters={"partition": partition, "topic": EVENTS_TOPIC},
    )
    return [(p, device, seq, digest) for p, device, seq, digest in result.result_rows]


CheckpointState = tuple[dict[tuple[str, str], int], pa.Table, dict[tuple[str, str], int]]
"""Per device of a partition: the device_seq its last valid checkpoint covers; its events
after that (`consumers.rules.checkpoint_columns.KEPT_COLUMNS`); the first device_seq of the
uncovered run already reported as AUDIT-UNCHECKPOINTED."""
_KEPT_PER_DEVICE = 2_000  # twice the checkpoint window: what the tracker would keep


_COVERED = (
    f"SELECT processor_id, device_id, max(device_seq) AS covered FROM {DATABASE}.checkpoints "
    "WHERE partition = {partition:UInt32} AND topic = {topic:String} AND valid "
    "GROUP BY processor_id, device_id"
)
"""Per device of a partition, the device_seq its last valid checkpoint covers."""


def checkpoint_state(client: Client, partition: int) -> CheckpointState:
    """Where the checkpoints of an event partition's devices stand, from the store."""
    params = {"partition": partition, "topic": EVENTS_TOPIC}
    covered_rows = client.query(_COVERED, parameters=params).result_rows
    covered = {(p, d): seq for p, d, seq in covered_rows}
    uncovered = client.query_arrow(
        f"SELECT {', '.join(KEPT_COLUMNS)} FROM {DATABASE}.events AS e "
        f"LEFT JOIN ({_COVERED}) AS c USING (processor_id, device_id) "
        "WHERE e.partition = {partition:UInt32} AND e.topic = {topic:String} "
        "AND (c.covered IS NULL OR e.device_seq > c.covered) "
        f"ORDER BY e.device_seq DESC LIMIT {_KEPT_PER_DEVICE} BY e.processor_id, e.device_id "
        "SETTINGS join_use_nulls = 1",
        parameters=params,
    )
    reported_rows = client.query(
        f"SELECT processor_id, device_id, "
        "max(JSONExtractInt(details, 'first_device_seq')) FROM "
        f"{DATABASE}.violations WHERE rule_id = 'AUDIT-UNCHECKPOINTED' "
        "AND partition = {partition:UInt32} AND topic = {topic:String} "
        "GROUP BY processor_id, device_id",
        parameters=params,
    ).result_rows
    reported = {(p, d): seq for p, d, seq in reported_rows}
    return covered, uncovered, reported


# statistics table -> (source table, measure column, grouping columns)
_STATISTICS: dict[str, tuple[str, str, str]] = {
    "event_stats_minute": (
        "events",
        "events",
        "region_code, processor_id, deployment_id, purpose, kind",
    ),
    "violation_stats_minute": (
        "violations",
        "violations",
        "region_code, processor_id, deployment_id, rule_id, severity, profile",
    ),
}


def heal_statistics(client: Client, topic: str, partition: int, start: int) -> None:
    """Count in the statistics what the uncommitted tail stored but the views missed.

    An insert reaches a table and then its materialized view; a crash between
    the two leaves rows the view never counted, and the tail that holds them
    is skipped when read again. For every minute the tail touches, the rows
    of the source table are counted again and the shortfall is added to the
    statistics table (inserts are serialised per store, so nothing is in
    flight meanwhile).
    """
    for target, (source, measure, keys) in _STATISTICS.items():
        minutes = (
            f"SELECT DISTINCT toStartOfMinute(event_time) FROM {DATABASE}.{source} "
            "WHERE topic = {topic:String} AND partition = {partition:UInt32} "
            "AND offset >= {start:UInt64}"
        )
        client.command(
            f"INSERT INTO {DATABASE}.{target} (minute, {keys}, {measure}) "
            f"SELECT minute, {keys}, stored - counted FROM ("
            f"  SELECT toStartOfMinute(event_time) AS minute, {keys}, count() AS stored "
            f"  FROM {DATABASE}.{source} WHERE toStartOfMinute(event_time) IN ({minutes}) "
            f"  GROUP BY minute, {keys}"
            f") AS s LEFT JOIN ("
            f"  SELECT minute, {keys}, sum({measure}) AS counted FROM {DATABASE}.{target} "
            f"  WHERE minute IN ({minutes}) GROUP BY minute, {keys}"
            f") AS c USING (minute, {keys}) WHERE stored > counted",
            parameters={"topic": topic, "partition": partition, "start": start},
            # A correction may equal an earlier one row for row; it must not be
            # dropped as a duplicate block.
            settings={"insert_deduplicate": 0},
        )
