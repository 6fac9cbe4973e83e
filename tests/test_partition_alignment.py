"""A backlog whose matches topic is read far slower than its captures topic: no false gap.

The client fetches every partition alike by bytes (256 KiB a fetch). Here the
matches are ten times the size of the captures, so each fetch round takes a
device ten times further along its captures than along its matches, and the
captures run ahead in sequence numbers. The validator pauses a partition that
runs ahead in record time; without that, the devices' reorder buffers
overflow and AUDIT-SEQ-GAP reports gaps that are not there. Real broker, real
engine; the second run switches the alignment off (a lead longer than the
whole backlog) to show that this backlog does provoke the false gaps.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from helpers import consume, scalar, start_group_at_end, store
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2
from samples import sample

from core.clients import KafkaConfig
from producers.event_producer import EventProducer
from schemas.topics import TOPICS

pytestmark = pytest.mark.integration

DEVICES = 4
EVENTS_PER_DEVICE = 4_000  # every other one a match
GALLERY_ID = "g-" + "x" * 2_000  # a match ten times the size of a capture; no rule reads it


def same_partition_devices(bootstrap: str, tag: str) -> list[str]:
    """DEVICES device ids whose events all land in one partition of each topic.

    One partition pair carries the whole backlog, so every fetch round holds
    a share of each device's events. The partition is the one kafka-python's
    default partitioner picks for the key (murmur2, as the Java client).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    partitions = len(consumer.partitions_for_topic(TOPICS["capture"]))
    consumer.close()
    ids = (f"dev-align-{tag}-{n}" for n in itertools.count())
    by_partition: dict[int, list[str]] = {}
    for device in ids:
        partition = (murmur2(device.encode()) & 0x7FFFFFFF) % partitions
        devices = by_partition.setdefault(partition, [])
        devices.append(device)
        if len(devices) == DEVICES:
            return devices
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def backlog(kafka_bootstrap: str) -> tuple[list[str], str]:
    """The devices' chained events, produced before any validator reads; (devices, group).

    The groups `G-on` and `G-off` both start just before the backlog.
    """
    tag = uuid.uuid4().hex[:8]
    devices, group = same_partition_devices(kafka_bootstrap, tag), f"align-{tag}"
    for run in ("on", "off"):
        start_group_at_end(kafka_bootstrap, f"{group}-{run}")
    with EventProducer(KafkaConfig(kafka_bootstrap), client_id="faceaudit-test-align") as producer:
        for kind in ("deployment", "consent"):
            producer.send_registry(kind, sample(kind))
        for n in range(EVENTS_PER_DEVICE):
            for device in devices:
                kind = "match" if n % 2 else "capture"
                record = sample(kind, event_id=str(uuid.uuid4()), device_id=device)
                if kind == "match":
                    record["gallery_id"] = GALLERY_ID
                producer.send_event(kind, record)
        producer.flush()
    return devices, group


def sequence_gaps(bootstrap: str, group: str, data: Path, devices: list[str], lead: str) -> int:
    """Validate the backlog into a fresh store; the AUDIT-SEQ-GAP violations of `devices`."""
    run = consume(bootstrap, data, group, "--partition-lead", lead)
    assert run.returncode == 0, run.stderr
    with store(data) as client:
        assert scalar(client, "SELECT count() FROM faceaudit.events") == DEVICES * EVENTS_PER_DEVICE
        return scalar(
            client,
            "SELECT count() FROM faceaudit.violations"
            " WHERE rule_id = 'AUDIT-SEQ-GAP' AND has({devices:Array(String)}, device_id)",
            devices=devices,
        )


def test_partitions_kept_level_raise_no_false_gap(
    kafka_bootstrap: str, backlog: tuple[list[str], str], tmp_path: Path
) -> None:
    devices, group = backlog
    # The backlog is produced in a second or two: a lead of 10 ms keeps each
    # device's captures and matches within a few hundred events of each other.
    assert sequence_gaps(kafka_bootstrap, f"{group}-on", tmp_path / "ch", devices, "0.01") == 0


def test_without_alignment_the_backlog_raises_false_gaps(
    kafka_bootstrap: str, backlog: tuple[list[str], str], tmp_path: Path
) -> None:
    devices, group = backlog
    assert sequence_gaps(kafka_bootstrap, f"{group}-off", tmp_path / "ch", devices, "86400") > 0
