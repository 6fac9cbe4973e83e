"""Devices flushing a backlog of thousands of events: judged exactly, whatever the batch size.

A device's captures and matches share one topic and key (contract v2), so
Kafka hands them over in the device's own order. Here four devices on one
partition each flush 3,000 chained events (every third a match, ten times the
size of a capture) before any validator reads. The test injects gaps (the
producer skips sequence numbers) and one chain break (a wrong previous hash),
and requires exactly those findings with small batches and with the default.
Real broker, real engine.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from helpers import (
    consume,
    fleet_seed,
    fleet_violation_rules,
    kafka_as,
    scalar,
    start_group_at_end,
    store,
)
from kafka.partitioner.default import murmur2
from samples import sample
from signing import TEST_SIGNERS, fleet_signing_keys

from core.clients import kafka_consumer
from producers.event_producer import EventProducer
from producers.fleet import SEQUENCE_GAP
from producers.simulate import simulate
from schemas.topics import EVENTS_TOPIC

pytestmark = pytest.mark.integration

DEVICES = 4
EVENTS_PER_DEVICE = 3_000
GALLERY_ID = "g-" + "x" * 2_000  # a match ten times the size of a capture; no rule reads it
# Where the producer skips numbers: (device index, events sent before it, numbers skipped).
GAPS = ((0, 1_000, 5), (1, 2_500, 1), (2, 10, 40), (3, 2_999, 3))
BREAK = (1, 1_800)  # (device index, events sent before the event whose prev_hash is wrong)
WRONG_HASH = "0" * 64


def same_partition_devices(bootstrap: str, tag: str) -> list[str]:
    """DEVICES device ids whose events all land in one partition of the events topic.

    The partition is the one kafka-python's default partitioner picks for the
    key (murmur2, as the Java client).
    """
    consumer = kafka_consumer(kafka_as("validator"))
    partitions = len(consumer.partitions_for_topic(EVENTS_TOPIC))
    consumer.close()
    by_partition: dict[int, list[str]] = {}
    for n in itertools.count():
        device = f"dev-backlog-{tag}-{n}"
        partition = (murmur2(device.encode()) & 0x7FFFFFFF) % partitions
        devices = by_partition.setdefault(partition, [])
        devices.append(device)
        if len(devices) == DEVICES:
            return devices
    raise AssertionError("unreachable")


def expected_gaps(devices: list[str]) -> set[tuple[str, int, int]]:
    """(device, first missing, last missing) of every injected gap."""
    gaps = set()
    for index, sent, skipped in GAPS:
        first = sent + sum(s for i, before, s in GAPS if i == index and before < sent)
        gaps.add((devices[index], first, first + skipped - 1))
    return gaps


@pytest.fixture(scope="module")
def backlog(kafka_bootstrap: str) -> tuple[list[str], str]:
    """The devices' chained events, produced before any validator reads; (devices, group).

    The groups `G-small` and `G-default` both start just before the backlog.
    """
    tag = uuid.uuid4().hex[:8]
    devices, group = same_partition_devices(kafka_bootstrap, tag), f"faceaudit-test-backlog-{tag}"
    for run in ("small", "default"):
        start_group_at_end(kafka_bootstrap, f"{group}-{run}")
    skips = {(devices[i], sent): skipped for i, sent, skipped in GAPS}
    with EventProducer(
        kafka_as("producer"), signers=TEST_SIGNERS, client_id="faceaudit-test-backlog"
    ) as producer:
        for kind in ("deployment", "consent"):
            producer.send_registry(kind, sample(kind))
        for n in range(EVENTS_PER_DEVICE):
            for device in devices:
                chain = producer.chain(device)
                if (device, n) in skips:
                    producer.resume(
                        device, chain.next_seq + skips[device, n], chain.last_payload_sha256
                    )
                elif (device, n) == (devices[BREAK[0]], BREAK[1]):
                    producer.resume(device, chain.next_seq, WRONG_HASH)
                kind = "match" if n % 3 == 2 else "capture"
                record = sample(kind, event_id=str(uuid.uuid4()), device_id=device)
                if kind == "match":
                    record["gallery_id"] = GALLERY_ID
                producer.send_event(kind, record)
        producer.flush()
    return devices, group


def stream_findings(
    bootstrap: str, group: str, data: Path, devices: list[str], *flags: str
) -> tuple[set[tuple[str, int, int]], list[tuple[str, int]]]:
    """Validate the backlog into a fresh store; its (gaps, chain breaks) for `devices`."""
    run = consume(bootstrap, data, group, *flags)
    assert run.returncode == 0, run.stderr
    with store(data) as client:
        assert scalar(client, "SELECT count() FROM faceaudit.events") == DEVICES * EVENTS_PER_DEVICE
        rows = client.query(
            "SELECT rule_id, device_id, details FROM faceaudit.violations"
            " WHERE rule_id IN ('AUDIT-SEQ-GAP', 'AUDIT-CHAIN-BREAK')"
            " AND has({devices:Array(String)}, device_id)",
            parameters={"devices": devices},
        ).result_rows
    gaps, breaks = set(), []
    for rule, device, details in rows:
        found = json.loads(details)
        if rule == "AUDIT-SEQ-GAP":
            gaps.add((device, found["first_missing"], found["last_missing"]))
        else:
            breaks.append((device, found["device_seq"]))
    return gaps, breaks


@pytest.mark.parametrize("run,flags", [("small", ("--batch-size", "2000")), ("default", ())])
def test_a_flushed_backlog_is_judged_exactly(
    kafka_bootstrap: str,
    backlog: tuple[list[str], str],
    tmp_path: Path,
    run: str,
    flags: tuple[str, ...],
) -> None:
    devices, group = backlog
    gaps, breaks = stream_findings(
        kafka_bootstrap, f"{group}-{run}", tmp_path / "ch", devices, *flags
    )
    assert gaps == expected_gaps(devices)
    device, sent = devices[BREAK[0]], BREAK[1]
    skipped_before = sum(s for i, before, s in GAPS if i == BREAK[0] and before <= sent)
    assert breaks == [(device, sent + skipped_before)]


def test_a_fleet_backlog_raises_exactly_the_gaps_the_fleet_was_made_to(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Counted against the simulator's own record of the events it made its devices lose."""
    seed = fleet_seed()
    start_group_at_end(kafka_bootstrap, unique_group)
    report = simulate(
        kafka_as("producer"),
        events=6_000,
        devices=12,
        seed=seed,
        gap_rate=0.01,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    run = consume(kafka_bootstrap, tmp_path / "ch", unique_group, "--batch-size", "2000")
    assert run.returncode == 0, run.stderr
    found = Counter(fleet_violation_rules(tmp_path / "ch", seed).values())
    injected = report.intended_violations[SEQUENCE_GAP]
    assert injected > 20
    assert found[SEQUENCE_GAP] == injected
    assert found == report.intended_violations
