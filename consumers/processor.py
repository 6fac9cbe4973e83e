"""One message at a time: decode, stage for storage, judge, or keep as a dead letter.

Knows nothing of Kafka's group protocol or of ClickHouse: the validator loop
feeds it messages and stores the batch it fills. Events whose consent or
deployment record has not arrived are stored at once but judged later (the
registry grace window); the stream rules never wait.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

from kafka.consumer.fetcher import ConsumerRecord

from consumers.batch import Batch, now_utc
from consumers.dead_letters import DeadLetterPolicy, dead_letter_row
from consumers.decoding import decode_message
from consumers.judge import Anchored, Judge
from consumers.stored_tail import StoredTail

Position = tuple[str, int, int]
_NOTHING_STORED = StoredTail()


@dataclass(slots=True)
class Held:
    """An event whose consent or deployment record has not arrived yet."""

    kind: str
    record: dict
    position: Position
    since: float


class MessageProcessor:
    """Turns messages of the event topics into rows of a batch."""

    def __init__(
        self,
        judge: Judge,
        policy: DeadLetterPolicy,
        *,
        registry_grace: float,
        max_held: int,
        max_message_bytes: int,
        reported: frozenset[str] = frozenset(),
    ) -> None:
        """`reported`: ids of violations with no event (FR-DELETION-OVERDUE) already stored."""
        self.judge = judge
        self.held: list[Held] = []
        self._policy = policy
        self._grace = registry_grace
        self._max_held = max_held
        self._max_bytes = max_message_bytes
        self._reported = set(reported)
        self._tails: dict[tuple[str, int], StoredTail] = {}
        self._devices: dict[int, set[tuple[str, str]]] = {}  # partition -> devices seen on it
        self._watermark: datetime | None = None

    # -- per message ----------------------------------------------------------

    def process(self, message: ConsumerRecord, batch: Batch) -> None:
        position = (message.topic, message.partition, message.offset)
        tail = self._tails.get(position[:2], _NOTHING_STORED)
        decoded = decode_message(message, self._max_bytes)
        self._policy.record(isinstance(decoded, tuple), position)
        if isinstance(decoded, tuple):
            row = dead_letter_row(message, *decoded)
            stored = message.offset in tail.dead_letters
            batch.add_finding("dead_letters", row, *position, store=not stored)
            return
        record = decoded.record
        record["kind"] = kind = decoded.kind
        record["payload_sha256"] = digest = hashlib.sha256(decoded.payload).hexdigest()
        if message.offset not in tail.events:
            batch.add("events", record, *position)
        self._devices.setdefault(message.partition, set()).add(
            (record["processor_id"], record["device_id"])
        )
        if self._watermark is None or record["event_time"] > self._watermark:
            self._watermark = record["event_time"]
        arrival = time.monotonic()
        self._stage(self.judge.observe_sequence(record, digest, position), batch)
        if self._awaits_registry(record):
            self._hold(Held(kind, record, position, arrival), batch)
        else:
            self._stage(self.judge.judge_rules(kind, record, position), batch)

    # -- judging ----------------------------------------------------------------

    def _awaits_registry(self, record: dict) -> bool:
        """True when the event names a deployment or consent not (yet) in the registry."""
        registry = self.judge.registry
        if registry.deployment(record["deployment_id"]) is None:
            return True
        consent_id = record["consent_id"]
        return consent_id is not None and registry.consent(consent_id) is None

    def _hold(self, held: Held, batch: Batch) -> None:
        self.held.append(held)
        if len(self.held) > self._max_held:
            # Memory bound: the oldest held event is judged now, with what is known.
            self._judge_held(self.held.pop(0), batch)

    def _judge_held(self, held: Held, batch: Batch) -> None:
        self._stage(self.judge.judge_rules(held.kind, held.record, held.position), batch)

    def release_held(self, batch: Batch, now: float, force: bool = False) -> None:
        """Judge held events whose records arrived, whose grace ran out, or all (`force`)."""
        waiting = []
        for held in self.held:
            if force or now - held.since >= self._grace or not self._awaits_registry(held.record):
                self._judge_held(held, batch)
            else:
                waiting.append(held)
        self.held = waiting

    def check_overdue(self, batch: Batch) -> None:
        """FR-DELETION-OVERDUE as of the latest event time seen."""
        if self._watermark is not None:
            self._stage([(v, None) for v in self.judge.overdue(self._watermark)], batch)

    def finish(self, batch: Batch) -> None:
        """End of the input: judge what is held, report open sequence gaps."""
        self.release_held(batch, time.monotonic(), force=True)
        self._stage(self.judge.finish_anchored(), batch)
        self.check_overdue(batch)

    def _stage(self, found: list[Anchored], batch: Batch) -> None:
        """Stage violations at the position of the event each was found at.

        One the store already holds (a re-read after a crash) is published
        but not stored again. A violation with no event (FR-DELETION-OVERDUE)
        has no position; it is stored and published once, by its id.
        """
        if not found:
            return
        detected_at = now_utc()
        for violation, anchor in found:
            stored = False
            if anchor is None:
                if violation.violation_id in self._reported:
                    continue
                self._reported.add(violation.violation_id)
                anchor = ("", 0, 0)
            else:
                tail = self._tails.get(anchor[:2], _NOTHING_STORED)
                stored = violation.violation_id in tail.violations
            batch.add_violation(violation, *anchor, detected_at, store=not stored)

    # -- partitions -------------------------------------------------------------

    def assign(self, topic: str, partition: int, tail: StoredTail) -> None:
        """Take a partition: `tail` is what the store already holds past its commit."""
        self._tails[(topic, partition)] = tail

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the state of partitions this process no longer owns."""
        self.held = [h for h in self.held if h.position[:2] not in partitions]
        for tp in partitions:
            self._tails.pop(tp, None)
            self.judge.sequences.forget(self._devices.pop(tp[1], set()))

    def first_held_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition with held events, the offset of the first of them."""
        first: dict[tuple[str, int], int] = {}
        for held in self.held:
            topic, partition, offset = held.position
            if offset < first.get((topic, partition), offset + 1):
                first[(topic, partition)] = offset
        return first
