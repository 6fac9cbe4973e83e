"""A week of fleet history for the demo: a daily rhythm, incidents, every rule broken.

The fleet's events are spread over the last `days` days with the daily rhythm
of `producers.rhythm`. On a few days an incident hour comes: the catalogue's
examples are broken again and again (each per-event rule's example applied to
a compliant event of the fleet: the event's fields, and new consent or
deployment records where the example changes those), and the stream rules
are broken once each: a lost event (AUDIT-SEQ-GAP), an altered one
(AUDIT-CHAIN-BREAK), a checkpoint of another head (AUDIT-CHECKPOINT-MISMATCH)
or signed with another processor's key (AUDIT-CHECKPOINT-BAD), a clock ahead
of the broker's (AUDIT-CLOCK-SKEW), and a device that stops signing
(AUDIT-UNCHECKPOINTED). The registry adds a forged and a rewritten consent
(REG-*), a withdrawal nobody deleted for (FR-DELETION-OVERDUE), and an unfiled
hotel chain whose guests cross the filing threshold (`producers.crowd`).

A week's events are minutes apart per device, and the audit wants each event
covered by a checkpoint within ten minutes of the stream's time, so a device
checkpoints once the stream has moved `CHECKPOINT_AFTER` past its first
uncovered event, whether it sent more since or not. The checkpoints are sent
here, not by the SDK's schedule (which counts a device's own events), so a
tampered one can also come before the true one (a head is judged once, by its
first checkpoint).
"""

from __future__ import annotations

import hashlib
import heapq
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tqdm import tqdm

from core.clients import KafkaConfig
from producers.checkpointing import checkpoint_record
from producers.crowd import HotelChain
from producers.event_producer import EventProducer
from producers.fleet import Fleet, Record
from producers.rhythm import rhythm_times
from producers.simulate import (
    BULK_BATCH_BYTES,
    BULK_LINGER_MS,
    SigningKeys,
    earliest_time,
    lose_one,
    vouch_for_another_head,
)
from schemas import codec
from schemas.topics import EVENT_KINDS

Examples = Mapping[str, tuple[str, Mapping[str, Mapping[str, Any]]]]
"""Per rule with a per-event example: the event kind and the example's changes (the
event contract's JSON form, per record: event, consent, deployment, message)."""

STREAM_FAULTS: Final = (
    "AUDIT-SEQ-GAP",
    "AUDIT-CHAIN-BREAK",
    "AUDIT-CHECKPOINT-MISMATCH",
    "AUDIT-CHECKPOINT-BAD",
    "AUDIT-UNCHECKPOINTED",
)
REGISTRY_FAULTS: Final = ("REG-UNSIGNED-RECORD", "REG-CONSENT-REWRITTEN", "FR-DELETION-OVERDUE")
FILING: Final = "FR-FILING"
INCIDENT_DAYS: Final = 3
INCIDENT_HOURS: Final = 2
REPEATS: Final = 3
CHECKPOINT_AFTER: Final = timedelta(minutes=4)
"""How many times an incident breaks each of its rules' examples."""
_ALTERED: Final = hashlib.sha256(b"an event altered after it was sent").hexdigest()


@dataclass
class HistoryReport:
    events_sent: int
    registry_records: int
    first: datetime
    last: datetime
    broken: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass(order=True)
class _Incident:
    at: datetime
    rule: str = field(compare=False)


def send_history(
    kafka: KafkaConfig,
    *,
    examples: Examples,
    filing_threshold: int,
    signing_keys: SigningKeys,
    days: int = 7,
    events: int = 40_000,
    devices: int = 40,
    seed: int = 1,
    progress: bool = True,
    now: datetime | None = None,
) -> HistoryReport:
    """Send the fleet's registry, then `events` events over the last `days` days (plus
    the hotel chain's `filing_threshold` check-ins), incidents among them."""
    now = now or datetime.now(UTC)
    # Within the audit's 7 days of tolerance for late events, even as the sending takes time.
    start, end = now - timedelta(days=days) + timedelta(hours=1), now - timedelta(minutes=1)
    rng = random.Random(f"{seed}-history")
    fleet = Fleet(devices, seed, violation_rate=0.01, start=start)
    chain = HotelChain(seed, start)
    history = _History(fleet, examples, rng)
    registry = [*fleet.registry_records(), *chain.registry_records()]
    incidents = _incidents(rng, start, days, [*examples, *STREAM_FAULTS])
    for incident in incidents:
        if incident.rule in examples:
            history.prepare(incident)
    grants = _grants(fleet)
    registry += [*history.registry, _overdue_withdrawal(grants, end), _withdrawal(grants, end)]
    processors = [p.processor_id for p in fleet.processors] + [chain.processor_id]
    signers = signing_keys(processors, earliest_time(registry))
    report = HistoryReport(0, len(registry), start, end)
    with EventProducer(
        kafka,
        client_id="faceaudit-history",
        linger_ms=BULK_LINGER_MS,
        batch_size=BULK_BATCH_BYTES,
        signers=signers,
        checkpoint_every=None,
    ) as producer:
        for kind, record in registry:
            producer.send_registry(kind, record)
        report.broken.update(_send_registry_faults(producer, grants, signers, end))
        report.broken["FR-DELETION-OVERDUE"] += 1
        producer.flush()
        started = time.monotonic()
        total = events + filing_threshold
        timeline = rhythm_times(total, start, end)
        base = _interleaved(fleet, chain, events, filing_threshold, timeline)
        bar = tqdm(total=total, unit="event", file=sys.stderr, disable=not progress)
        with bar:
            for at, kind, record in base:
                history.advance(at)
                while incidents and incidents[0].at <= at:
                    incident = heapq.heappop(incidents)
                    history.happen(incident, producer, signers)
                    report.broken[incident.rule] += 1
                history.send(producer, kind, record)
                bar.update()
            while incidents:  # a window at the very end
                incident = heapq.heappop(incidents)
                history.happen(incident, producer, signers)
                report.broken[incident.rule] += 1
            history.checkpoint_all(producer)
        report.broken[FILING] += 1
        producer.flush()
        report.events_sent = total + history.sent
        report.seconds = time.monotonic() - started
    return report


def _incidents(rng: random.Random, start: datetime, days: int, rules: list[str]) -> list[_Incident]:
    """Incident hours on a few days; each rule broken in one of them, examples `REPEATS` times."""
    chosen = sorted(rng.sample(range(1, days), min(INCIDENT_DAYS, days - 1)))
    windows = [
        start.replace(hour=2, minute=0, second=0, microsecond=0)  # 10:00 China time
        + timedelta(days=day, hours=rng.randint(0, 6))
        for day in chosen
    ]
    order = sorted(rules)
    rng.shuffle(order)
    incidents = []
    for index, rule in enumerate(order):
        window = windows[index % len(windows)]
        repeats = 1 if rule in STREAM_FAULTS else REPEATS
        for _ in range(repeats):
            offset = timedelta(seconds=rng.uniform(0, INCIDENT_HOURS * 3600))
            incidents.append(_Incident(window + offset, rule))
    heapq.heapify(incidents)
    return incidents


def _interleaved(
    fleet: Fleet, chain: HotelChain, events: int, check_ins: int, timeline: Iterator[datetime]
) -> Iterator[tuple[datetime, str, Record]]:
    """The fleet's events and the chain's check-ins, evenly mixed, dated by the rhythm."""
    fleet_events = fleet.events(events)
    share = check_ins / (events + check_ins)
    checked_in = 0
    for index, at in enumerate(timeline):
        if checked_in < check_ins and checked_in < share * (index + 1):
            checked_in += 1
            kind, record = chain.check_in(at)
        else:
            kind, record, _ = next(fleet_events)
            record["event_time"] = at
        yield at, kind, record


def _grants(fleet: Fleet) -> list[Record]:
    return [
        record
        for kind, record in fleet.registry_records()
        if kind == "consent" and record["withdrawn_at"] is None
    ]


def _withdrawal(grants: list[Record], end: datetime) -> tuple[str, Record]:
    """A consent withdrawn two days ago (the one a later record rewrites)."""
    return "consent", {**grants[1], "withdrawn_at": end - timedelta(days=2)}


def _send_registry_faults(
    producer: EventProducer, grants: list[Record], signers: Mapping[str, Any], end: datetime
) -> list[str]:
    """Two days ago: a consent in one processor's name signed by another's key, and the
    consent withdrawn then sent again as never withdrawn (dated within the week, unlike
    the fleet's own registry faults, which are as old as its consents)."""
    forged = {
        **grants[0],
        "consent_id": f"{grants[0]['consent_id']}-forged",
        "granted_at": end - timedelta(days=2),
    }
    forger = next(signer for pid, signer in signers.items() if pid != forged["processor_id"])
    producer.send_signed("consent", forged, forger)
    _, withdrawn = _withdrawal(grants, end)
    producer.send_registry("consent", {**withdrawn, "withdrawn_at": None})
    return ["REG-UNSIGNED-RECORD", "REG-CONSENT-REWRITTEN"]


def _overdue_withdrawal(grants: list[Record], end: datetime) -> tuple[str, Record]:
    """A consent withdrawn 20 days ago whose subject's face data was never deleted."""
    consent = grants[len(grants) // 2]
    withdrawn = end - timedelta(days=20)
    return "consent", {
        **consent,
        "consent_id": f"{consent['consent_id']}-never-deleted",
        "granted_at": min(consent["granted_at"], withdrawn - timedelta(days=30)),
        "withdrawn_at": withdrawn,
    }


class _History:
    """The incidents' events: examples applied to fleet events, and the stream faults."""

    def __init__(self, fleet: Fleet, examples: Examples, rng: random.Random) -> None:
        self._fleet = fleet
        self._examples = examples
        self._rng = rng
        registry = fleet.registry_records()
        self._consents = {r["consent_id"]: r for kind, r in registry if kind == "consent"}
        self._deployments = {r["deployment_id"]: r for kind, r in registry if kind == "deployment"}
        self._prepared: dict[int, tuple[str, Record, timedelta | None]] = {}
        self.registry: list[tuple[str, Record]] = []
        self.sent = 0
        self.silent: set[str] = set()
        """Devices that stopped signing checkpoints."""
        self._uncovered: dict[str, tuple[datetime, str]] = {}
        """Per device with events no checkpoint covers: the stream's time at the first one,
        its processor (in the order they became uncovered)."""
        self._now = datetime.min.replace(tzinfo=UTC)
        """The stream's time: the timeline's, whatever a device's clock says."""

    def advance(self, at: datetime) -> None:
        self._now = at

    def send(self, producer: EventProducer, kind: str, record: Record, checkpoint: bool = True):
        """Send an event; checkpoint the devices whose first uncovered event is due."""
        producer.send_event(kind, record)
        device = record["device_id"]
        if checkpoint and device not in self.silent:
            self._uncovered.setdefault(device, (self._now, record["processor_id"]))
        due = self._now - CHECKPOINT_AFTER
        while self._uncovered:
            device, (since, processor) = next(iter(self._uncovered.items()))
            if since > due:
                break
            del self._uncovered[device]
            producer.send_checkpoint(device, processor)

    def cover_yourself(self, device: str) -> None:
        """Leave the device's uncovered events to the caller's next checkpoint."""
        self._uncovered.pop(device, None)

    def checkpoint_all(self, producer: EventProducer) -> None:
        """Cover every device's last events: the end of the history."""
        for device, (_, processor) in self._uncovered.items():
            producer.send_checkpoint(device, processor)
        self._uncovered.clear()

    def prepare(self, incident: _Incident) -> None:
        """The example's event for this incident, and the registry records it needs."""
        kind, changes = self._examples[incident.rule]
        base = self._fleet.consent_event(kind)
        event_changes = dict(changes.get("event", {}))
        example_time = event_changes.pop("event_time", None)
        event = _changed(kind, {**base, "event_time": incident.at}, event_changes)
        tag = f"{incident.rule.lower()}-{len(self._prepared)}"
        if "consent" in changes:
            consent = self._consents[base["consent_id"]]
            shifted = _shifted(changes["consent"], example_time, incident.at)
            new = _changed("consent", consent, shifted) | {
                "consent_id": f"{base['consent_id']}-{tag}"
            }
            if new["withdrawn_at"] is not None:
                if new["granted_at"] >= new["withdrawn_at"]:
                    new["granted_at"] = new["withdrawn_at"] - timedelta(days=30)
                # Deleted in time: the incident is the event that still used it.
                self.registry.append(("deletion", _deletion(new, new["withdrawn_at"])))
            self.registry.append(("consent", new))
            event["consent_id"] = new["consent_id"]
        if "deployment" in changes:
            deployment = self._deployments[base["deployment_id"]]
            new = _changed("deployment", deployment, changes["deployment"])
            new["deployment_id"] = f"{base['deployment_id']}-{tag}"
            self.registry.append(("deployment", new))
            event["deployment_id"] = new["deployment_id"]
        ahead = None
        if "broker_time" in changes.get("message", {}):
            # Dated as far from its arrival as the example's event is from the broker's time.
            ahead = _parse(example_time) - _parse(changes["message"]["broker_time"])
        self._prepared[id(incident)] = (kind, event, ahead)

    def happen(
        self, incident: _Incident, producer: EventProducer, signers: Mapping[str, Any]
    ) -> None:
        """Send the incident's events (and checkpoints)."""
        self.sent += 1
        prepared = self._prepared.get(id(incident))
        if prepared is not None:
            kind, event, ahead = prepared
            if ahead is not None:  # arrival is when it is sent
                event = {**event, "event_time": datetime.now(UTC) + ahead}
            self.send(producer, kind, event)
            return
        kind = self._rng.choice(("capture", "match"))
        event = {**self._fleet.consent_event(kind), "event_time": incident.at}
        _FAULTS[incident.rule](self, producer, kind, event, signers)


def _gap(history: _History, producer: EventProducer, kind: str, event: Record, signers) -> None:
    history.send(producer, kind, event)
    lose_one(producer, event["device_id"])
    history.send(producer, kind, {**event, "event_id": str(uuid.uuid4())})


def _chain_break(
    history: _History, producer: EventProducer, kind: str, event: Record, signers
) -> None:
    history.send(producer, kind, event, checkpoint=False)
    device = event["device_id"]
    producer.resume(device, producer.chain(device).next_seq, _ALTERED)
    history.send(producer, kind, {**event, "event_id": str(uuid.uuid4())})


def _mismatch(history: _History, producer: EventProducer, kind: str, event: Record, signers):
    # The tampered checkpoint must be the first to cover the event: a head is judged once.
    history.cover_yourself(event["device_id"])
    history.send(producer, kind, event, checkpoint=False)
    vouch_for_another_head(producer, event, signers[event["processor_id"]])
    producer.send_checkpoint(event["device_id"], event["processor_id"])  # too late: judged


def _bad_checkpoint(history: _History, producer: EventProducer, kind: str, event: Record, signers):
    history.send(producer, kind, event)
    device, processor = event["device_id"], event["processor_id"]
    head = producer.chain(device)
    other = next(signer for pid, signer in signers.items() if pid != processor)
    checkpoint = checkpoint_record(
        processor, device, head.next_seq - 1, head.last_payload_sha256, datetime.now(UTC)
    )
    producer.send_signed("checkpoint", checkpoint, other)


def _stops_signing(history: _History, producer: EventProducer, kind: str, event: Record, signers):
    history.silent.add(event["device_id"])
    history.send(producer, kind, event)


_FAULTS: Final[dict[str, Callable[..., None]]] = {
    "AUDIT-SEQ-GAP": _gap,
    "AUDIT-CHAIN-BREAK": _chain_break,
    "AUDIT-CHECKPOINT-MISMATCH": _mismatch,
    "AUDIT-CHECKPOINT-BAD": _bad_checkpoint,
    "AUDIT-UNCHECKPOINTED": _stops_signing,
}


def _deletion(consent: Record, withdrawn_at: datetime) -> Record:
    return {
        "event_id": str(uuid.uuid4()),
        "processor_id": consent["processor_id"],
        "subject_ref": consent["subject_ref"],
        "deleted_at": withdrawn_at + timedelta(days=3),
        "reason": "consent_withdrawn",
    }


def _changed(kind: str, record: Mapping[str, Any], changes: Mapping[str, Any]) -> Record:
    """`record` with JSON-form `changes`, through the codec's JSON form and back (an
    event before the producer chains it: without device_seq and prev_hash)."""
    unchained = "device_seq" not in record and kind in EVENT_KINDS
    if unchained:
        record = {**record, "device_seq": 0, "prev_hash": None}
    changed = codec.from_json(codec.to_json(kind, record) | dict(changes))[1]
    if unchained:
        del changed["device_seq"], changed["prev_hash"]
    return changed


def _shifted(changes: Mapping[str, Any], example_time: str | None, at: datetime) -> dict[str, Any]:
    """Registry changes with their times moved as the example's event moved to `at`."""
    shifted = dict(changes)
    for name, value in changes.items():
        if name.endswith("_at") and value is not None:
            if example_time is None:
                raise ValueError(f"an example that dates {name} must date its event too")
            moment = at + (_parse(value) - _parse(example_time))
            shifted[name] = moment.isoformat().replace("+00:00", "Z")
    return shifted


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
