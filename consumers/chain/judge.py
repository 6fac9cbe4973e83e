"""The judge step: every rule of the profile on every event of the batch.

Events whose consent or deployment record has not arrived are stored at once
but judged later, when the record arrives or the registry grace window runs
out; the stream rules (sequence and chain) never wait. A partition is
committed only up to its first event still held, so a crash re-reads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kafka.structs import TopicPartition

from consumers.batch import NO_POSITION, Batch, Event, Row, now_utc
from consumers.chain.step import Step
from consumers.judge import Anchored, Judge
from consumers.rules.stream import SequenceTracker


@dataclass(slots=True)
class Held:
    """An event waiting for its consent or deployment record, since `since` (monotonic s)."""

    event: Event
    since: float


class EventClock:
    """The latest event time this process has seen: the stream's watermark.

    Outlives the chains, so FR-DELETION-OVERDUE is judged as of the same
    time after a rebalance as before it.
    """

    def __init__(self) -> None:
        self.latest: datetime | None = None

    def advance(self, moment: datetime) -> None:
        if self.latest is None or moment > self.latest:
            self.latest = moment


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


class JudgeStep:
    """Judges each event, holds those waiting for the registry, and sets `batch.commit`."""

    def __init__(
        self,
        next_step: Step,
        judge: Judge,
        sequences: SequenceTracker,
        clock: EventClock,
        commits: Mapping[TopicPartition, int],
        *,
        registry_grace: float,
        max_held: int,
        reported: set[str],
        held_gauge: Gauge,
    ) -> None:
        """`commits`: the assignment's committed offsets; `reported`: ids of the
        violations with no event already stored (FR-DELETION-OVERDUE), shared
        by every chain of the process."""
        self.next_step = next_step
        self.held: list[Held] = []
        self._judge = judge
        self._sequences = sequences
        self._clock = clock
        self._read_to = dict(commits)
        self._grace = registry_grace
        self._max_held = max_held
        self._reported = reported
        self._held_gauge = held_gauge

    def submit(self, batch: Batch) -> None:
        now = time.monotonic()
        for event in batch.events:
            self._judge_event(event, now, batch)
        batch.events = []
        self._read_to.update(batch.read_to)
        self._release(batch, now, force=False)
        self._pass_on(batch)

    def poll(self) -> None:
        self.next_step.poll()

    def join(self, end_of_input: bool) -> None:
        """Judge every held event with what is known; at the end, report open gaps too."""
        batch = Batch()
        self._release(batch, time.monotonic(), force=True)
        if end_of_input:
            self._stage(self._judge.violations(self._sequences.finish()), batch)
        self._pass_on(batch)
        self.next_step.join(end_of_input)

    def close(self) -> None:
        self.held = []
        self.next_step.close()

    def _judge_event(self, event: Event, now: float, batch: Batch) -> None:
        record = event.record
        batch.add("events", record, *event.position)
        self._clock.advance(record["event_time"])
        found = self._sequences.observe(record, record["payload_sha256"], event.position)
        if found:  # the common case has none: no call to build none
            self._stage(self._judge.violations(found), batch)
        if self._awaits_registry(record):
            self._hold(Held(event, now), batch)
        else:
            self._stage(self._judge.judge_rules(event.kind, record, event.position), batch)

    def _awaits_registry(self, record: Row) -> bool:
        """True when the event names a deployment or consent not (yet) in the registry."""
        registry = self._judge.registry
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
        event = held.event
        self._stage(self._judge.judge_rules(event.kind, event.record, event.position), batch)

    def _release(self, batch: Batch, now: float, force: bool) -> None:
        """Judge held events whose records arrived, whose grace ran out, or all (`force`)."""
        waiting = []
        for held in self.held:
            due = force or now - held.since >= self._grace
            if due or not self._awaits_registry(held.event.record):
                self._judge_held(held, batch)
            else:
                waiting.append(held)
        self.held = waiting

    def _pass_on(self, batch: Batch) -> None:
        """FR-DELETION-OVERDUE as of the watermark, the commit offsets, then the next step."""
        if self._clock.latest is not None:
            overdue = self._judge.overdue(self._clock.latest)
            self._stage([(violation, None) for violation in overdue], batch)
        batch.commit = self._commit_offsets()
        self._held_gauge.set(len(self.held))
        self.next_step.submit(batch)

    def _commit_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after the last read, or of its first event held."""
        commit = dict(self._read_to)
        for held in self.held:
            source, offset = held.event.position.source, held.event.position.offset
            if offset < commit.get(source, offset + 1):
                commit[source] = offset
        return commit

    def _stage(self, found: list[Anchored], batch: Batch) -> None:
        """Add violations at the position of the event each was found at.

        A violation with no event (FR-DELETION-OVERDUE) has no position; it
        is stored and published once, by its id.
        """
        if not found:
            return
        detected_at = now_utc()
        for violation, anchor in found:
            if anchor is None:
                if violation.violation_id in self._reported:
                    continue
                self._reported.add(violation.violation_id)
                anchor = NO_POSITION
            batch.add_violation(violation, *anchor, detected_at)
