"""Drive a simulated fleet into Kafka: registry first, then events, optionally rate-limited.

Registry records are sent and flushed before the first event so a consumer
normally knows every deployment and consent before it judges an event that
uses them (it still holds judgement for a grace window if they arrive late).
The report says which rules the simulator broke on purpose, so a run can be
checked against the pipeline's findings.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from core.clients import KafkaConfig
from producers.checkpointing import checkpoint_record
from producers.event_producer import EventProducer
from producers.fleet import (
    CHECKPOINT_MISMATCH,
    FORGED_CONSENT,
    MEAN_STEP,
    SEQUENCE_GAP,
    UNCHECKPOINTED,
    Fleet,
)
from producers.stops_signing import StopsSigning
from schemas.signatures import Signer, record_time

# Fewer, larger batches: each new batch wakes kafka-python's sender thread, and
# that hand-off (GIL contention) dominated the send loop at the SDK's defaults
# (linger 5 ms, 16 KiB batches): about 2x the throughput on a 2-core machine.
BULK_LINGER_MS = 50
BULK_BATCH_BYTES = 1 << 20


@dataclass
class SimulationReport:
    """What one simulation sent; ``seconds`` covers the events, through their final flush."""

    events_sent: int
    by_kind: dict[str, int]
    registry_records: int
    intended_violations: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events_sent / self.seconds if self.seconds > 0 else 0.0


SigningKeys = Callable[[list[str], datetime], Mapping[str, Signer]]
"""Signers by processor_id, for the fleet's processors, valid from the time given."""


def earliest_time(registry: list[tuple[str, dict[str, Any]]]) -> datetime:
    """The earliest time a registry record's signing key must count at."""
    times = [record_time(kind, record) for kind, record in registry]
    return min(moment for moment in times if moment is not None)


def _send_registry_faults(
    producer: EventProducer, fleet: Fleet, signers: Mapping[str, Signer]
) -> list[str]:
    """The fleet's registry faults, the forged one signed by another processor's key."""
    sent = []
    for kind, record, rule in fleet.registry_faults():
        if rule == FORGED_CONSENT:
            forger = next(s for pid, s in signers.items() if pid != record["processor_id"])
            producer.send_signed(kind, record, forger)
        else:
            producer.send_registry(kind, record)
        sent.append(rule)
    return sent


def vouch_for_another_head(
    producer: EventProducer, record: Mapping[str, Any], signer: Signer
) -> None:
    """A checkpoint of the event just sent whose head is not that event's payload hash."""
    device_id = record["device_id"]
    head = producer.chain(device_id)
    other = hashlib.sha256(f"altered {head.last_payload_sha256}".encode()).hexdigest()
    checkpoint = checkpoint_record(
        record["processor_id"], device_id, head.next_seq - 1, other, datetime.now(UTC)
    )
    producer.send_signed("checkpoint", checkpoint, signer)


def _start(events: int, rate: float | None) -> datetime:
    """When the fleet's first event is dated: now when paced, else so the backlog ends now."""
    now = datetime.now(UTC)
    return now if rate else now - events * MEAN_STEP


def lose_one(producer: EventProducer, device_id: str) -> None:
    """Skip the device's next sequence number, as if that event never reached Kafka."""
    chain = producer.chain(device_id)
    producer.resume(device_id, chain.next_seq + 1, chain.last_payload_sha256)


class _Pacer:
    """Holds a loop to ``rate`` iterations per second against a fixed schedule (no drift).

    The schedule starts at the first ``wait``, so setting up before the loop costs no budget.
    """

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._interval = 1.0 / rate if rate else 0.0
        self._start: float | None = None
        self._count = 0

    def wait(self) -> None:
        if not self._interval:
            return
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * self._interval
        self._count += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def simulate(
    kafka: KafkaConfig,
    events: int,
    devices: int,
    seed: int = 1,
    rate: float | None = None,
    violation_rate: float = 0.05,
    progress: bool = True,
    gap_rate: float = 0.0,
    signing_keys: SigningKeys | None = None,
    tamper_rate: float = 0.0,
    registry_faults: bool = False,
    skew_rate: float = 0.0,
    stop_signing: bool = False,
) -> SimulationReport:
    """Send a seeded fleet's registry and ``events`` events to Kafka.

    ``gap_rate``: the share of events sent after their device lost one
    (AUDIT-SEQ-GAP), counted in the report like the other intended findings.
    ``signing_keys`` gives the registry records' signers, given the fleet's
    processor ids and the earliest registry time a key must cover; without
    it the records go unsigned, and no checkpoint is sent. With it,
    ``tamper_rate`` is the share of events after which their device vouches
    for another head (AUDIT-CHECKPOINT-MISMATCH), and ``registry_faults``
    sends a consent signed by another processor (REG-UNSIGNED-RECORD) and
    an un-withdrawal (REG-CONSENT-REWRITTEN); ``stop_signing`` has one
    device stop signing checkpoints a quarter into the stream
    (AUDIT-UNCHECKPOINTED, counted if the rest of the stream makes it one).
    ``skew_rate`` is the share of events dated an hour ahead
    (AUDIT-CLOCK-SKEW). All are counted as intended.

    Event times keep to the broker's clock, as a camera's would: at
    ``rate``, the fleet's time runs with the wall clock from now; as fast as
    possible, the events are a backlog that ends about now.

    Raises ProducerError if any send failed: a simulation that lost events
    must not look like one that found violations.
    """
    if signing_keys is None and (tamper_rate or registry_faults or stop_signing):
        raise ValueError("checkpoint and registry faults need signing keys")
    pacer = _Pacer(rate)
    fleet = Fleet(
        devices,
        seed,
        violation_rate,
        start=_start(events, rate),
        gap_rate=gap_rate,
        tamper_rate=tamper_rate,
        skew_rate=skew_rate,
        events_per_second=rate,
    )
    stops_signing = StopsSigning(events) if stop_signing else None
    registry = fleet.registry_records()
    by_kind: Counter[str] = Counter()
    intended: Counter[str] = Counter()
    signers = {}
    if signing_keys is not None:
        processors = [processor.processor_id for processor in fleet.processors]
        signers = signing_keys(processors, earliest_time(registry))
    with EventProducer(
        kafka,
        client_id="faceaudit-simulator",
        linger_ms=BULK_LINGER_MS,
        batch_size=BULK_BATCH_BYTES,
        signers=signers,
    ) as producer:
        for kind, record in registry:
            producer.send_registry(kind, record, signed=signing_keys is not None)
        if registry_faults:
            intended.update(_send_registry_faults(producer, fleet, signers))
        producer.flush()
        started = time.monotonic()
        bar = tqdm(total=events, unit="event", file=sys.stderr, disable=not progress)
        with bar:
            for kind, record, broken in fleet.events(events):
                pacer.wait()
                if SEQUENCE_GAP in broken:
                    lose_one(producer, record["device_id"])
                producer.send_event(kind, record)
                if CHECKPOINT_MISMATCH in broken:
                    vouch_for_another_head(producer, record, signers[record["processor_id"]])
                if stops_signing is not None:
                    stops_signing.sent(record, broken, producer)
                by_kind[kind] += 1
                intended.update(broken)
                bar.update()
        if stops_signing is not None and stops_signing.reported:
            intended[UNCHECKPOINTED] += 1
        producer.flush()
        seconds = time.monotonic() - started
    return SimulationReport(
        events_sent=sum(by_kind.values()),
        by_kind=dict(by_kind),
        registry_records=len(registry),
        intended_violations=intended,
        seconds=seconds,
    )
