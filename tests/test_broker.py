"""The local Kafka broker: real traffic through the session broker, and the lifecycle
(idempotent start, stop, stale pid files, busy port) of a broker of the test's own.

Tests using ``kafka_bootstrap`` are marked ``integration`` by conftest.py.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import kafka_as
from kafka import TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient

from core.clients import kafka_admin, kafka_consumer, kafka_producer
from faceaudit.broker import (
    BrokerError,
    BrokerStatus,
    LocalBroker,
    ensure_topics,
    free_port,
    new_cluster_id,
)
from schemas.topics import COMPACTED_TOPICS, DEAD_LETTER_TOPIC, TOPICS

ALL_TOPICS = (*TOPICS.values(), DEAD_LETTER_TOPIC)
MESSAGE_LIMIT = 12 * 1024 * 1024


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = kafka_admin(kafka_as("admin"))
    yield client
    client.close()


def test_produce_and_consume_through_a_group(kafka_bootstrap: str, unique_group: str) -> None:
    marker = uuid.uuid4().hex.encode()
    producer = kafka_producer(kafka_as("producer"), acks="all")
    producer.send(TOPICS["capture"], key=b"device-1", value=marker).get(timeout=30)
    producer.close()

    consumer = kafka_consumer(
        kafka_as("validator"),
        group_id=unique_group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    consumer.subscribe([TOPICS["capture"]])
    try:
        found = next((record for record in consumer if record.value == marker), None)
    finally:
        consumer.close()
    assert found is not None, "the produced record never reached the consumer group"
    assert found.key == b"device-1"


def test_broker_accepts_a_10_mib_message(kafka_bootstrap: str) -> None:
    """The poison-message tests need the broker, not the client, to be the size limit."""
    payload = os.urandom(10 * 1024 * 1024)
    # The validator writes dead letters (of up to the broker's limit).
    producer = kafka_producer(kafka_as("validator"), max_request_size=MESSAGE_LIMIT)
    sent = producer.send(DEAD_LETTER_TOPIC, value=payload).get(timeout=60)
    producer.close()

    consumer = kafka_consumer(
        kafka_as("admin"),
        max_partition_fetch_bytes=MESSAGE_LIMIT,
        consumer_timeout_ms=20_000,
    )
    partition = TopicPartition(DEAD_LETTER_TOPIC, sent.partition)
    consumer.assign([partition])
    consumer.seek(partition, sent.offset)
    try:
        record = next(iter(consumer), None)
    finally:
        consumer.close()
    assert record is not None, "the 10 MiB record could not be fetched back"
    assert record.value == payload


def test_ensure_topics_is_idempotent(kafka_bootstrap: str, admin: KafkaAdminClient) -> None:
    ensure_topics(kafka_as("admin"))

    described = {topic["name"]: topic for topic in admin.describe_topics(list(ALL_TOPICS))}
    assert {name: len(described[name]["partitions"]) for name in ALL_TOPICS} == dict.fromkeys(
        ALL_TOPICS, 6
    )


def test_only_registry_topics_are_compacted(admin: KafkaAdminClient) -> None:
    resources = [ConfigResource("TOPIC", name, ["cleanup.policy"]) for name in ALL_TOPICS]
    configs = admin.describe_configs(resources, config_filter="all")["topic"]

    policies = {name: configs[name]["cleanup.policy"]["value"] for name in ALL_TOPICS}
    expected = {name: "compact" if name in COMPACTED_TOPICS else "delete" for name in ALL_TOPICS}
    assert policies == expected


@pytest.mark.integration
def test_lifecycle_is_idempotent_and_never_kills_strangers(
    tmp_path: Path, kafka_libs_dir: Path, broker_ports: tuple[int, int]
) -> None:
    port, controller_port = broker_ports
    broker = LocalBroker(
        tmp_path, port=port, controller_port=controller_port, libs_dir=kafka_libs_dir
    )
    broker.pid_path.parent.mkdir(parents=True)
    broker.pid_path.write_text(f"{_dead_pid()}\n")
    try:
        assert not broker.status().running
        assert broker.start(timeout=120) == f"127.0.0.1:{port}"
        first = broker.status()
        assert first.running and first.pid is not None
        assert broker.pid_path.read_text().strip() == str(first.pid)

        assert broker.start() == broker.bootstrap
        assert broker.status().pid == first.pid

        # Stopped by another object, as `faceaudit broker stop` in a new process would.
        assert LocalBroker(tmp_path, port=port, controller_port=controller_port).stop() is True
        assert not Path(f"/proc/{first.pid}").exists()
        assert not broker.pid_path.exists()
        assert broker.stop() is False

        # A pid file naming this very pytest process: not ours, never signalled.
        broker.pid_path.write_text(f"{os.getpid()}\n")
        cluster_id = _cluster_id(broker)
        assert broker.status() == BrokerStatus(False, None, broker.bootstrap, broker.home)
        broker.start()
        assert broker.status().pid not in (None, os.getpid(), first.pid)
        assert _cluster_id(broker) == cluster_id, "a restart must reuse the formatted data dir"
    finally:
        broker.stop()


def test_start_on_a_busy_port_says_so(tmp_path: Path, kafka_libs_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        broker = LocalBroker(
            tmp_path, port=busy, controller_port=free_port(), libs_dir=kafka_libs_dir
        )
        with pytest.raises(BrokerError, match=f"Port {busy} on 127.0.0.1 is already in use"):
            broker.start()
    assert not broker.pid_path.exists()


def test_cluster_ids_are_kafka_uuids() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert not cluster_id.startswith("-")


def _dead_pid() -> int:
    """The pid of a process that has already exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _cluster_id(broker: LocalBroker) -> str:
    meta = (broker.data_dir / "meta.properties").read_text()
    return next(
        line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster.id=")
    )
