"""Poison messages on the real broker: each one becomes a dead letter and the validator goes on.

The validator runs as `faceaudit consume` (a subprocess) against the session
broker and a fresh embedded store; the test opens the store only after the
validator exited (chDB: one process per store). Topics are shared with the
other tests, so each test's consumer group is first committed at the current
end of the event topics, and every assertion names this test's own messages
by the partition and offset the broker gave them.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import fastavro
import pytest
from helpers import consume, kafka_as, start_group_at_end, store
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from samples import sample
from signing import TEST_SIGNERS

from core.clients import kafka_admin, kafka_consumer
from producers.event_producer import EventProducer
from schemas import codec
from schemas.topics import DEAD_LETTER_TOPIC, TOPICS

pytestmark = pytest.mark.integration

Position = tuple[str, int, int]
CAPTURE = TOPICS["capture"]
HUGE = 10 * 1024 * 1024  # the broker takes 12 MiB, the validator 1 MiB
PRODUCER_MAX_REQUEST = 12 * 1024 * 1024


# -- helpers (test_dead_letters_cli.py uses them too) -------------------------------------


def dead_letter_rows(client, topic: str) -> dict[Position, list[tuple]]:
    """(raw, message_key, reason) of every stored dead letter read from `topic`, by position."""
    result = client.query(
        "SELECT topic, partition, offset, raw, message_key, reason FROM faceaudit.dead_letters "
        "WHERE topic = {topic:String}",
        parameters={"topic": topic},
        column_formats={"raw": "bytes", "message_key": "bytes"},
    )
    rows: dict[Position, list[tuple]] = {}
    for topic_, partition, offset, raw, key, reason in result.result_rows:
        rows.setdefault((topic_, partition, offset), []).append((raw, key, reason))
    return rows


def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = kafka_admin(kafka_as("admin"))
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


def read_topic(bootstrap: str, topic: str, timeout: float = 60) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning to its current end."""
    consumer = kafka_consumer(kafka_as("admin"), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout} s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


def source_position(record: ConsumerRecord) -> Position | None:
    """Where a record of the dead-letter topic was read from, per its headers."""
    headers = {name: value.decode() for name, value in record.headers or []}
    try:
        return (
            headers["faceaudit.source.topic"],
            int(headers["faceaudit.source.partition"]),
            int(headers["faceaudit.source.offset"]),
        )
    except KeyError:
        return None


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    # kafka-python may log its own "faceaudit: ERROR: ..." while the clients close; the
    # command's error is the one line `faceaudit.cli.main` prints.
    errors = [line for line in result.stderr.splitlines() if line.startswith("faceaudit: error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


# -- the poison corpus -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Poison:
    name: str
    key: bytes | None
    value: bytes | None
    reason: str


def negative_seq_capture(device: str) -> bytes:
    """A capture with device_seq -1, written with fastavro directly: the codec refuses it."""
    buffer = BytesIO()
    record = sample("capture", device_id=device, event_id=str(uuid.uuid4()), device_seq=-1)
    fastavro.schemaless_writer(buffer, codec.schema("capture"), record)
    return codec.frame("capture", buffer.getvalue())


def unknown_region_capture(device: str) -> bytes:
    """A capture whose region code no province has, written with fastavro directly."""
    buffer = BytesIO()
    record = sample("capture", device_id=device, event_id=str(uuid.uuid4()), region_code="990305")
    fastavro.schemaless_writer(buffer, codec.schema("capture"), record)
    return codec.frame("capture", buffer.getvalue())


def poison_corpus(device: str, rng: random.Random) -> list[Poison]:
    """Every kind of bad message, all keyed by `device`: one partition, in this order."""
    key = device.encode()
    valid = codec.encode("capture", sample("capture", device_id=device))
    unknown_fp = bytes(8)
    assert codec.kind_for_fingerprint(unknown_fp) is None
    other_device = sample("capture", device_id=f"{device}-elsewhere")
    return [
        Poison("truncated", key, valid[: len(valid) // 2], "invalid_payload"),
        Poison("random bytes", key, b"\x00" + rng.randbytes(63), "bad_magic"),
        Poison(
            "unknown fingerprint", key, codec.MAGIC + unknown_fp + valid[10:], "unknown_fingerprint"
        ),
        Poison(
            "garbage payload",
            key,
            codec.MAGIC + codec.fingerprint("capture") + b"this is not an avro payload at all",
            "invalid_payload",
        ),
        Poison("10 MiB", key, valid + bytes(HUGE - len(valid)), "oversized"),
        Poison("empty", key, b"", "empty"),
        Poison("tombstone", key, None, "empty"),
        Poison("short header", key, codec.MAGIC + b"\x01\x02\x03", "truncated_header"),
        Poison("trailing bytes", key, valid + b"\x00", "trailing_bytes"),
        Poison("wrong key", key, codec.encode("capture", other_device), "wrong_key"),
        Poison(
            "consent on the capture topic",
            key,
            codec.encode("consent", sample("consent")),
            "wrong_topic",
        ),
        Poison("negative device_seq", key, negative_seq_capture(device), "schema_invalid"),
        Poison("unknown region code", key, unknown_region_capture(device), "schema_invalid"),
    ]


def send_poison(bootstrap: str, corpus: list[Poison]) -> list[Position]:
    """Send the corpus in order; return where each message landed."""
    with EventProducer(kafka_as("producer"), max_request_size=PRODUCER_MAX_REQUEST) as producer:
        futures = [producer.send_raw(CAPTURE, poison.value, poison.key) for poison in corpus]
        producer.flush(timeout=60)
        metadata = [future.get(timeout=60) for future in futures]
    return [(CAPTURE, m.partition, m.offset) for m in metadata]


def send_valid_events(bootstrap: str, devices: list[str], tag: str) -> dict[str, Position]:
    """A deployment, a consent and two captures per device; positions by event_id."""
    ids = {"deployment_id": f"d-{tag}", "processor_id": f"p-{tag}"}
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        producer.send_registry("deployment", sample("deployment", **ids))
        producer.send_registry(
            "consent", sample("consent", consent_id=f"c-{tag}", processor_id=f"p-{tag}")
        )
        futures = {}
        for device in devices:
            for _ in range(2):
                event_id = str(uuid.uuid4())
                record = sample(
                    "capture", event_id=event_id, device_id=device, consent_id=f"c-{tag}", **ids
                )
                futures[event_id] = producer.send_event("capture", record)
        producer.flush(timeout=60)
        return {
            event_id: (CAPTURE, m.partition, m.offset)
            for event_id, m in ((e, f.get(timeout=60)) for e, f in futures.items())
        }


# -- tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poisoned(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The corpus, then valid events behind it on the same partition, validated until idle."""
    tag = uuid.uuid4().hex[:10]
    group = f"faceaudit-poison-{tag}"
    data = tmp_path_factory.mktemp("poison") / "clickhouse"
    start_group_at_end(kafka_bootstrap, group)
    device = f"poison-dev-{tag}"
    corpus = poison_corpus(device, random.Random(tag))
    positions = send_poison(kafka_bootstrap, corpus)
    events = send_valid_events(kafka_bootstrap, [device, f"ok-a-{tag}", f"ok-b-{tag}"], tag)
    run = consume(kafka_bootstrap, data, group)
    return {"corpus": corpus, "positions": positions, "events": events, "run": run, "data": data}


def test_validator_exits_cleanly_after_the_poison(poisoned: dict) -> None:
    run = poisoned["run"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr


def test_every_poison_message_is_stored_once_with_its_bytes_and_reason(poisoned: dict) -> None:
    with store(poisoned["data"]) as client:
        stored = dead_letter_rows(client, CAPTURE)
    for poison, position in zip(poisoned["corpus"], poisoned["positions"], strict=True):
        rows = stored.get(position, [])
        assert len(rows) == 1, f"{poison.name} at {position}: {len(rows)} rows"
        raw, key, reason = rows[0]
        assert reason == poison.reason, poison.name
        assert raw == (poison.value or b""), poison.name
        assert key == poison.key, poison.name


def test_valid_events_behind_the_poison_are_stored(poisoned: dict) -> None:
    events = poisoned["events"]
    poison_partition = poisoned["positions"][0][1]
    assert {partition for _, partition, _ in poisoned["positions"]} == {poison_partition}
    behind = [p for p in events.values() if p[1] == poison_partition]
    assert behind and min(p[2] for p in behind) > poisoned["positions"][-1][2]
    with store(poisoned["data"]) as client:
        result = client.query(
            "SELECT event_id, topic, partition, offset FROM faceaudit.events "
            "WHERE event_id IN {ids:Array(String)}",
            parameters={"ids": list(events)},
        )
    stored = {row[0]: tuple(row[1:]) for row in result.result_rows}
    assert stored == events
    assert len(result.result_rows) == len(events)


def test_dead_letter_topic_holds_every_poison_message(poisoned: dict, kafka_bootstrap: str) -> None:
    published: dict[Position, list[ConsumerRecord]] = {}
    for record in read_topic(kafka_bootstrap, DEAD_LETTER_TOPIC):
        published.setdefault(source_position(record), []).append(record)
    for poison, position in zip(poisoned["corpus"], poisoned["positions"], strict=True):
        records = published.get(position, [])
        assert len(records) == 1, f"{poison.name} at {position}: {len(records)} records"
        record = records[0]
        assert record.value == (poison.value or b""), poison.name
        assert record.key == poison.key, poison.name
        reason = dict(record.headers)["faceaudit.reason"].decode()
        assert reason == poison.reason, poison.name


def test_dead_letter_limit_stops_the_validator_without_committing(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    data = tmp_path / "clickhouse"
    start_group_at_end(kafka_bootstrap, unique_group)
    garbage = [f"garbage-{n}-{uuid.uuid4().hex}".encode() for n in range(30)]
    key = f"garbage-{unique_group}".encode()  # one key: one partition, 30 in a row
    with EventProducer(kafka_as("producer")) as producer:
        futures = [producer.send_raw(CAPTURE, value, key) for value in garbage]
        producer.flush(timeout=60)
        metadata = [future.get(timeout=60) for future in futures]
    partition, offsets = metadata[0].partition, [m.offset for m in metadata]
    tp = TopicPartition(CAPTURE, partition)

    stopped = consume(kafka_bootstrap, data, unique_group, "--dead-letter-limit", "20")
    assert_one_clear_error(stopped, "dead letters in a row", "limit 20")
    # The batch that tripped the limit was neither stored nor committed.
    committed = committed_offsets(kafka_bootstrap, unique_group)[tp]
    assert offsets[0] <= committed <= offsets[19]
    with store(data) as client:
        stored_then = set(dead_letter_rows(client, CAPTURE))
    assert all(offset < committed for _, p, offset in stored_then if p == partition)

    resumed = consume(kafka_bootstrap, data, unique_group, "--dead-letter-limit", "1000")
    assert resumed.returncode == 0, resumed.stderr
    with store(data) as client:
        stored = dead_letter_rows(client, CAPTURE)
    for value, offset in zip(garbage, offsets, strict=True):
        assert [row[0] for row in stored.get((CAPTURE, partition, offset), [])] == [value]
    assert committed_offsets(kafka_bootstrap, unique_group)[tp] == offsets[-1] + 1
