"""The sink's insert paths store the same rows, deduplicated the same way (real chDB).

A worker of `consume --workers N` writes its batch to files (Native format,
and Arrow for the events) and the store owner inserts them (`insert_files`);
a single process inserts its columns and Arrow tables directly (`write`);
with a ClickHouse server the events go through clickhouse-connect's Arrow
insert, run here against the embedded engine. All must store exactly the
same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arrow_events import add_judged_events, chained
from clickhouse_connect.driver.client import Client
from kafka.consumer.fetcher import ConsumerRecord
from samples import sample

from consumers.batch import ROW_TABLES, TABLES, Batch
from consumers.dead_letters import dead_letter_row
from consumers.judge import Judge
from consumers.registry import Registry
from consumers.sink import ClickHouseSink, write_files
from consumers.store import open_store
from producers.fleet import Fleet
from schemas.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, TOPICS

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
    read = chained((kind, record) for kind, record, _ in fleet.events(events))
    add_judged_events(batch, judge, read, partition, offsets[EVENTS_TOPIC], T0)
    raw = b"\x00garbage\xff"
    poison = ConsumerRecord(
        TOPICS["capture"], 0, 0, 9_999, 0, 0, b"key", raw, [("trace", b"t-1")], None, 3, len(raw), 6
    )
    dead_letter = dead_letter_row(poison, "undecodable", "test") | {"received_at": T0}
    add("dead_letters", DEAD_LETTER_TOPIC, dead_letter)
    checkpoint = sample("checkpoint") | {"key_id": "k-1", "valid": True, "problem": ""}
    add("checkpoints", EVENTS_TOPIC, checkpoint)
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
    assert all(encoded.rows[t] for t in ROW_TABLES), "the batch fills every table"
    assert encoded.event_tables
    files = write_files(encoded, sink.layout, tmp_path)
    assert {path.parent for _, _, path in files.tables} | {files.events.parent} == {tmp_path}
    first = stored_by(client, sink, lambda: sink.write(direct), 1)
    second = stored_by(client, sink, lambda: sink.insert_files(files), 2)
    for table in TABLES:
        assert second[table], table
        assert first[table] == second[table], f"{table}: the files path stores different values"


def test_the_server_insert_path_stores_what_the_embedded_one_stores(client: Client) -> None:
    embedded, server = ClickHouseSink(client), ClickHouseSink(client, embedded=False)
    first = stored_by(client, embedded, lambda: embedded.write(fleet_batch(partition=4)), 4)
    second = stored_by(client, server, lambda: server.write(fleet_batch(partition=5)), 5)
    assert first["events"]
    assert first == second


def test_an_encoded_batch_inserted_twice_is_stored_once(client: Client, tmp_path: Path) -> None:
    sink = ClickHouseSink(client)
    native = write_files(fleet_batch(partition=3, events=100), sink.layout, tmp_path)
    sink.insert_files(native)
    sink.insert_files(native)
    native.remove()
    assert not list(tmp_path.iterdir()), "remove() deletes the batch files"
    assert_stored_once(client, partition=3)


def test_a_batch_written_twice_by_the_server_path_is_stored_once(client: Client) -> None:
    server = ClickHouseSink(client, embedded=False)
    batch = fleet_batch(partition=6, events=100)
    server.write(batch)
    server.write(batch)
    assert_stored_once(client, partition=6)


def assert_stored_once(client: Client, partition: int) -> None:
    for table in TABLES:
        where = f"FROM {table} WHERE partition = {partition}"
        count = client.query(f"SELECT count() {where}").result_rows[0][0]
        assert count > 0, table
        distinct = client.query(f"SELECT uniqExact(topic, offset) {where}").result_rows[0][0]
        assert count == distinct, f"{table}: a retried insert was stored twice"
