"""Helpers for the integration tests: run the CLI, open a chDB store, position a group."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.pipeline import GROUP_TOPICS

CLI = [sys.executable, "-m", "faceaudit.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FACEAUDIT_KAFKA_TIMEOUT": "10", **extra}


def faceaudit(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `faceaudit ARGS` to completion."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(**env)
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


def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit `group` at the current end of the event topics: it reads only what follows.

    The session broker's topics hold every earlier test's messages; a group
    positioned at the end sees only the test's own.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    partitions = [
        TopicPartition(topic, p)
        for topic in GROUP_TOPICS
        for p in consumer.partitions_for_topic(topic)
    ]
    ends = consumer.end_offsets(partitions)
    consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    consumer.close()
