"""Helpers for the integration tests: run the CLI, open a chDB store, position a group.

Tests build their Kafka clients with `kafka_as(role)`: the session broker's
credentials for that role's user (conftest.py points FACEAUDIT_BROKER_HOME at
it), or, against an external broker, the FACEAUDIT_KAFKA_* settings.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.read import GROUP_TOPICS
from consumers.settings import Settings
from core.clients import KafkaConfig, kafka_consumer
from core.local_kafka import local_kafka
from schemas import codec
from schemas.topics import VIOLATION_TOPIC

CLI = [sys.executable, "-m", "faceaudit.cli"]
BROKER_HOME_ENV = "FACEAUDIT_BROKER_HOME"
EXTERNAL_BOOTSTRAP_ENV = "FACEAUDIT_TEST_BOOTSTRAP"


def kafka_as(role: str = "admin", user: str | None = None, timeout: float = 15.0) -> KafkaConfig:
    """How a test reaches the session broker as `role`'s user (or `user`)."""
    external = os.environ.get(EXTERNAL_BOOTSTRAP_ENV)
    if external:
        return Settings.resolve({"bootstrap": external, "kafka_timeout": timeout}).kafka
    config = local_kafka(role, timeout=timeout, user=user)
    assert config is not None, "no session broker: use the kafka_bootstrap fixture first"
    return config


def broker_environ() -> dict[str, str]:
    """Only what points Settings.resolve at the session broker's credentials, and at the
    auditor key the digests are signed with."""
    names = (BROKER_HOME_ENV, "FACEAUDIT_AUDITOR_KEY")
    return {name: os.environ[name] for name in names if name in os.environ}


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FACEAUDIT_KAFKA_TIMEOUT": "10", **extra}


def faceaudit(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `faceaudit ARGS` to completion."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(**env)
    )


def consume(
    bootstrap: str, data: Path, group: str, *flags: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`faceaudit consume` into the store at `data` until three idle seconds."""
    return faceaudit(
        "consume",
        "--bootstrap",
        bootstrap,
        "--clickhouse",
        f"chdb://{data}",
        "--group",
        group,
        "--until-idle",
        "3",
        *flags,
        **env,
    )


def start_faceaudit(*args: str, **env: str) -> subprocess.Popen[str]:
    """Start `faceaudit ARGS` in the background."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(**env),
    )


@contextmanager
def store(path: Path) -> Iterator[clickhouse_connect.driver.Client]:
    """The chDB store at `path`, opened in this process (after the validator exited)."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        yield client
    finally:
        client.close()


def scalar(client, sql: str, **parameters):
    return client.query(sql, parameters=parameters).result_rows[0][0]


def event_partitions(consumer: KafkaConsumer) -> list[TopicPartition]:
    """Every partition of the topics the validator's group reads."""
    return [
        TopicPartition(topic, p)
        for topic in GROUP_TOPICS
        for p in consumer.partitions_for_topic(topic)
    ]


def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit `group` at the current end of the event topics: it reads only what follows.

    The session broker's topics hold every earlier test's messages; a group
    positioned at the end sees only the test's own.
    """
    consumer = kafka_consumer(_as("validator", bootstrap), group_id=group, enable_auto_commit=False)
    ends = consumer.end_offsets(event_partitions(consumer))
    consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    consumer.close()


def fleet_seed() -> int:
    """A new fleet's seed: its ids carry it, so a test counts only its own rows."""
    return random.SystemRandom().randrange(10**6, 10**7)


def fleet_events(data: Path, seed: int) -> tuple[int, int]:
    """(rows, distinct event ids) of the simulated fleet with this seed."""
    with store(data) as client:
        rows, unique = client.query(
            "SELECT count(), uniqExact(event_id) FROM faceaudit.events "
            "WHERE device_id LIKE {d:String}",
            parameters={"d": f"cam-s{seed}-%"},
        ).result_rows[0]
    return rows, unique


def fleet_violation_rules(data: Path, seed: int) -> dict[str, str]:
    """Rule id by violation id, of the stored violations of the fleet with this seed."""
    with store(data) as client:
        result = client.query(
            "SELECT violation_id, rule_id FROM faceaudit.violations "
            "WHERE device_id LIKE {d:String}",
            parameters={"d": f"cam-s{seed}-%"},
        )
    return dict(result.result_rows)


def fleet_violations(data: Path, seed: int) -> set[str]:
    """Ids of the stored violations of the simulated fleet with this seed."""
    return set(fleet_violation_rules(data, seed))


def published_violations(bootstrap: str, wanted: set[str]) -> Counter[str]:
    """How often each of `wanted` appears on the violations topic."""
    consumer = kafka_consumer(
        _as("validator", bootstrap),
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    consumer.subscribe([VIOLATION_TOPIC])
    try:
        records = (codec.decode(message.value).record for message in consumer)
        return Counter(r["violation_id"] for r in records if r["violation_id"] in wanted)
    finally:
        consumer.close()


def _as(role: str, bootstrap: str | KafkaConfig) -> KafkaConfig:
    """`bootstrap` as a config: the session broker's, as `role`, if it is that broker."""
    if isinstance(bootstrap, KafkaConfig):
        return bootstrap
    config = kafka_as(role)
    assert config.bootstrap == bootstrap, f"{bootstrap} is not the session broker"
    return config
