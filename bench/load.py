"""Load for the benchmark: the preload of the event topics, and a live stream at a steady rate.

The preload is `producers.simulate.simulate`, a realistic fleet as fast as
the producer goes. The live stream is the same kind of fleet, paced, with
every event's `event_time` set when it is sent: the fleet's own clock moves
0.5-5 ms per event, which at 10,000 events/s runs far ahead of real time, so
it cannot stand for "when the camera saw the face".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.read import GROUP_TOPICS
from core.clients import KafkaConfig, kafka_consumer
from faceaudit.fleet_keys import register_fleet_keys
from producers.event_producer import EventProducer
from producers.fleet import Fleet
from producers.simulate import SimulationReport, earliest_time, simulate

DEVICES = 200
VIOLATION_RATE = 0.05
GAP_RATE = 0.001  # events sent after their device lost one: AUDIT-SEQ-GAP on purpose
PRELOAD_SEED = 1


@dataclass
class Sent:
    """What the live stream sent after its warm-up."""

    events: int
    total: int  # with the warm-up
    seconds: float
    first_event_time: datetime  # the first event after the warm-up

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def preload(kafka: KafkaConfig, operator: KafkaConfig, events: int) -> SimulationReport:
    """Signed registry (keys registered as `operator`), then `events` events from a fleet
    of DEVICES devices, as fast as possible."""
    return simulate(
        kafka,
        events,
        DEVICES,
        PRELOAD_SEED,
        violation_rate=VIOLATION_RATE,
        gap_rate=GAP_RATE,
        signing_keys=partial(register_fleet_keys, operator),
    )


def live(
    kafka: KafkaConfig,
    operator: KafkaConfig,
    rate: float,
    seconds: float,
    warmup: float,
    seed: int,
) -> Sent:
    """Send for `warmup` + `seconds` s at `rate` events/s; counts only what follows the warm-up.

    The fleet's events are made before the clock starts, so the send loop does
    only what a camera does: stamp the time, chain, encode, send. The producer
    is tuned as `simulate` tunes it (50 ms linger, 1 MiB batches).
    """
    fleet = Fleet(DEVICES, seed, VIOLATION_RATE)
    events = [(kind, record) for kind, record, _ in fleet.events(int(rate * (warmup + seconds)))]
    registry = fleet.registry_records()
    processors = [processor.processor_id for processor in fleet.processors]
    signers = register_fleet_keys(operator, processors, earliest_time(registry))
    with EventProducer(
        kafka, client_id="faceaudit-bench-live", linger_ms=50, batch_size=1 << 20, signers=signers
    ) as producer:
        for kind, record in registry:
            producer.send_registry(kind, record)
        producer.flush()
        start = time.monotonic()
        measured_from, measured_start, counted = None, start, 0
        for sent, (kind, record) in enumerate(events):
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0.001:
                time.sleep(ahead)
            record["event_time"] = now = datetime.now(UTC)
            if measured_from is None and time.monotonic() - start >= warmup:
                measured_from, measured_start = now, time.monotonic()
            producer.send_event(kind, record)
            counted += measured_from is not None
        producer.flush()
    return Sent(counted, len(events), time.monotonic() - measured_start, measured_from)


def end_offsets(kafka: KafkaConfig) -> dict[TopicPartition, int]:
    """The current end of every event-topic partition."""
    consumer = kafka_consumer(kafka, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in GROUP_TOPICS
            for p in consumer.partitions_for_topic(topic)
        ]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def start_group_at_end(kafka: KafkaConfig, group: str) -> None:
    """Commit `group` at the end of the event topics, so it reads only what follows."""
    ends = end_offsets(kafka)
    consumer = kafka_consumer(kafka, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()
