"""The sink's two insert paths store the same rows, deduplicated the same way (real chDB).

A worker of `consume --workers N` encodes its batch in the Native format and
the store owner inserts the bytes (`insert_native`); a single process inserts
its columns directly (`write`). Both must store exactly the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from kafka.consumer.fetcher import ConsumerRecord

from consumers.batch import TABLES, Batch
from consumers.dead_letters import dead_letter_row
from consumers.judge import Judge
from consumers.registry import Registry
from consumers.sink import ClickHouseSink, write_native
from consumers.store import open_store
from producers.fleet import Fleet
from schemas.topics import DEAD_LETTER_TOPIC, TOPICS

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
REGISTRY_TABLES = {"deployment": "deployments", "consent": "consents", "deletion": "deletions"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    store = open_store(f"chdb://{tmp_path_factory.mktemp('sink') / 'store'}")
    yield store
    store.close()


def fleet_batch(partition: int, events: int = 300) -> Batch:
    """Every table's rows from one fleet, as read from `partition`.

    Registry records, captures and matches, their violations, and a dead letter:
    the same rows whatever the partition.
    """
    fleet = Fleet(devices=12, seed=7, violation_rate=0.3, start=T0)
    registry = Registry()
    batch = Batch()
    offsets: Counter[str] = Counter()

    def add(table: str, topic: str, row: dict) -> int:
        offset = offsets[topic]
        offsets[topic] += 1
        batch.add(table, row, topic, partition, offset)
        return offset

    for kind, record in fleet.registry_records():
        if kind != "deletion":
            registry.apply(kind, dict(record))
        add(REGISTRY_TABLES[kind], TOPICS[kind], record)
    judge = Judge("cac-2025", registry)
    sequence: Counter[str] = Counter()
    for kind, record, _ in fleet.events(events):
        record["device_seq"] = sequence[record["device_id"]]  # as the producer numbers them
        record["prev_hash"] = None
        sequence[record["device_id"]] += 1
        found = judge.judge_event(kind, record, None)
        offset = add("events", TOPICS[kind], {**record, "kind": kind, "payload_sha256": "ab" * 32})
        for violation in found:
            batch.add_violation(violation, TOPICS[kind], partition, offset, T0)
    raw = b"\x00garbage\xff"
    poison = ConsumerRecord(
        TOPICS["capture"], 0, 0, 9_999, 0, 0, b"key", raw, [("trace", b"t-1")], None, 3, len(raw), 6
    )
    dead_letter = dead_letter_row(poison, "undecodable", "test") | {"received_at": T0}
    add("dead_letters", DEAD_LETTER_TOPIC, dead_letter)
    return batch


def stored_rows(client: Client, sink: ClickHouseSink, table: str, partition: int) -> list[tuple]:
    """Every column the sink fills but `partition`, of the rows read from `partition`."""
    columns = ", ".join(f"`{c.name}`" for c in sink.layout[table] if c.name != "partition")
    return client.query(
        f"SELECT {columns} FROM {table} WHERE partition = {{p:UInt32}} ORDER BY topic, offset",
        parameters={"p": partition},
    ).result_rows


def stored_by(client: Client, sink: ClickHouseSink, insert: Callable[[], None], partition: int):
    """The rows each table holds after `insert` alone, into emptied tables.

    Emptied first because the registry tables keep one row per id
    (ReplacingMergeTree): the rows of the two paths must not meet in a merge.
    """
    for table in TABLES:
        client.command(f"TRUNCATE TABLE {table}")
    insert()
    return {table: stored_rows(client, sink, table, partition) for table in TABLES}


def test_a_batch_encoded_by_a_worker_is_stored_as_a_direct_insert_stores_it(
    client: Client, tmp_path: Path
) -> None:
    sink = ClickHouseSink(client)
    direct, encoded = fleet_batch(partition=1), fleet_batch(partition=2)
    assert all(encoded.rows[t] for t in TABLES), "the batch fills every table"
    native = write_native(encoded, sink.layout, tmp_path)
    assert {path.parent for _, _, path in native.tables} == {tmp_path}
    first = stored_by(client, sink, lambda: sink.write(direct), 1)
    second = stored_by(client, sink, lambda: sink.insert_native(native), 2)
    for table in TABLES:
        assert second[table], table
        assert first[table] == second[table], f"{table}: the Native path stores different values"


def test_an_encoded_batch_inserted_twice_is_stored_once(client: Client, tmp_path: Path) -> None:
    sink = ClickHouseSink(client)
    native = write_native(fleet_batch(partition=3, events=100), sink.layout, tmp_path)
    sink.insert_native(native)
    sink.insert_native(native)
    native.remove()
    assert not list(tmp_path.iterdir()), "remove() deletes the batch files"
    for table, _, _ in native.tables:
        count = client.query(f"SELECT count() FROM {table} WHERE partition = 3").result_rows[0][0]
        assert count > 0, table
        distinct = client.query(
            f"SELECT uniqExact(topic, offset) FROM {table} WHERE partition = 3"
        ).result_rows[0][0]
        assert count == distinct, f"{table}: a retried insert was stored twice"
