"""The judge step: every rule of the profile on every event of the batch, over its columns.

Events whose consent or deployment record has not arrived are stored at once
but judged later, when the record arrives or the registry grace window runs
out; the stream rules (sequence and chain) never wait. A partition is
committed only up to its first event still held, so a crash re-reads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from kafka.structs import TopicPartition

from consumers.batch import NO_POSITION, Batch, now_utc
from consumers.chain.step import Step
from consumers.checkpoints import CheckpointJudge
from consumers.event_columns import first_offsets
from consumers.judge import Anchored, Judge, Tables
from consumers.rules.clock_skew import trusted_times
from consumers.rules.sequence_columns import observe_tables
from consumers.rules.stream import SequenceTracker

Mask = dict[str, pa.Array]
"""Per kind, a boolean per row of its table."""


@dataclass(slots=True)
class Held:
    """Events of one batch (a table per kind) waiting for their consent or deployment
    record, since `since` (monotonic s), last found waiting at registry version `checked`."""

    tables: Tables
    since: float
    checked: int
    first: dict[TopicPartition, int] = field(init=False)
    """Per partition, the offset of its first event held: the commit waits there."""

    def __post_init__(self) -> None:
        self.first = {}
        for table in self.tables.values():
            for (topic, partition), offset in first_offsets(table).items():
                source = TopicPartition(topic, partition)
                self.first[source] = min(offset, self.first.get(source, offset))

    @property
    def count(self) -> int:
        return sum(table.num_rows for table in self.tables.values())

    def split(self, mask: Mapping[str, pa.Array]) -> tuple[Tables, Tables]:
        """(the rows where `mask` is true, the others), per kind, empty tables left out."""
        if not any(pc.any(rows).as_py() for rows in mask.values()):
            return {}, self.tables
        if all(pc.all(rows).as_py() for rows in mask.values()):
            return self.tables, {}
        chosen = {kind: table.filter(mask[kind]) for kind, table in self.tables.items()}
        rest = {kind: table.filter(pc.invert(mask[kind])) for kind, table in self.tables.items()}
        return _nonempty(chosen), _nonempty(rest)

    def keep(self, tables: Tables) -> None:
        """Hold only `tables` (a part of what it held) from now on."""
        self.tables = tables
        self.__post_init__()

    def oldest(self, count: int) -> Mask:
        """Per kind, whether each row is among the `count` read first."""
        arrival = pa.chunked_array(
            [chunk for table in self.tables.values() for chunk in table["message_index"].chunks],
            pa.uint32(),
        )
        cutoff = pc.sort_indices(arrival).to_pylist()[count - 1]
        last = arrival[cutoff]
        return {
            kind: pc.less_equal(table.column("message_index"), last).combine_chunks()
            for kind, table in self.tables.items()
        }


class EventClock:
    """The latest event time this process has seen: the stream's watermark.

    Skewed events (AUDIT-CLOCK-SKEW) do not move it.

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
        checkpoints: CheckpointJudge,
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
        self._checkpoints = checkpoints
        self._clock = clock
        self._read_to = dict(commits)
        self._grace = registry_grace
        self._max_held = max_held
        self._reported = reported
        self._held_gauge = held_gauge

    def submit(self, batch: Batch) -> None:
        now = time.monotonic()
        tables, batch.events = batch.events, {}
        for kind, table in tables.items():
            batch.add_events(table.append_column("kind", pa.repeat(kind, table.num_rows)))
            latest = pc.max(trusted_times(table)).as_py()
            if latest is not None:  # None: every event of the table is skewed
                self._clock.advance(latest)
        found = observe_tables(self._sequences, tables.values())
        if found:  # the common case has none: no call to build none
            self._stage(self._judge.violations(found), batch)
        checkpoints, batch.checkpoints = batch.checkpoints, []
        self._stage(self._checkpoints.submit(tables, checkpoints, batch), batch)
        found, waiting = self._judge.judge_arrivals(tables)
        self._stage(found, batch)
        if waiting:
            self._hold(Held(waiting, now, self._judge.registry.version), batch)
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

    @property
    def held_events(self) -> int:
        return sum(held.count for held in self.held)

    def _judge_now(self, tables: Tables, batch: Batch) -> None:
        if tables:
            self._stage(self._judge.judge_tables(tables), batch)

    def _hold(self, held: Held, batch: Batch) -> None:
        self.held.append(held)
        excess = self.held_events - self._max_held
        while excess > 0:
            # Memory bound: the oldest held events are judged now, with what is known.
            oldest = self.held[0]
            if oldest.count <= excess:
                self.held.pop(0)
                self._judge_now(oldest.tables, batch)
                excess -= oldest.count
            else:
                first, rest = oldest.split(oldest.oldest(excess))
                oldest.keep(rest)
                self._judge_now(first, batch)
                excess = 0

    def _release(self, batch: Batch, now: float, force: bool) -> None:
        """Judge held events whose records arrived, whose grace ran out, or all (`force`).

        Whether a record arrived is asked again only once the registry changed.
        """
        version = self._judge.registry.version
        waiting = []
        for held in self.held:
            if force or now - held.since >= self._grace:
                self._judge_now(held.tables, batch)
                continue
            if held.checked != version:
                awaiting = {
                    kind: self._judge.rules.awaiting(table) for kind, table in held.tables.items()
                }
                still, ready = held.split(awaiting)
                held.checked = version
                if ready:
                    held.keep(still)
                    self._judge_now(ready, batch)
            if held.tables:
                waiting.append(held)
        self.held = waiting

    def _pass_on(self, batch: Batch) -> None:
        """FR-DELETION-OVERDUE as of the watermark, the commit offsets, then the next step."""
        if self._clock.latest is not None:
            overdue = self._judge.overdue(self._clock.latest)
            self._stage([(violation, None) for violation in overdue], batch)
        batch.commit = self._commit_offsets()
        self._held_gauge.set(self.held_events)
        self.next_step.submit(batch)

    def _commit_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after the last read, or of its first event held."""
        commit = dict(self._read_to)
        for held in self.held:
            for source, offset in held.first.items():
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


def _nonempty(tables: Tables) -> Tables:
    return {kind: table for kind, table in tables.items() if table.num_rows}
