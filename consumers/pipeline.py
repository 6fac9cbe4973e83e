"""The validator loop: poll, process, store, then commit.

Per batch: read from the event topics (one consumer group) and the registry
topics (read in full by every process), let the `MessageProcessor` decode and
judge each message, store every table once through the `StoreGateway`,
publish the violations and dead letters to their topics, and only then commit
the offsets.

Exactly-once results rest on three things. Offsets are committed only after
the rows are stored. When a partition is first read, the rows the store
already holds from its uncommitted tail are loaded and skipped, so a batch
re-read after a crash is not stored twice. And a batch retried after a failed
insert keeps its deduplication token, so ClickHouse drops what a failed
attempt had stored already. The violations topic is kept exact the same way:
a newly taken partition leaves out the violations its last owner published
past the commit (`consumers.published`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.alignment import PartitionAligner
from consumers.batch import Batch, now_utc
from consumers.collector import collecting_in_batches
from consumers.dead_letters import DeadLetterPolicy
from consumers.gateway import StoreGateway
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.processor import MessageProcessor
from consumers.published import PublishedLog, decode_mark, encode_mark
from consumers.publisher import FindingsPublisher, Outbox
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.settings import Settings
from consumers.summary import RunSummary
from core.clients import kafka_consumer
from core.errors import FaceauditError
from schemas.topics import DEAD_LETTER_TOPIC, TOPICS, VIOLATION_TOPIC

log = logging.getLogger(__name__)

GROUP_TOPICS = (TOPICS["capture"], TOPICS["match"])


class Validator:
    """One validator process: a member of the consumer group plus the registry feed."""

    def __init__(
        self,
        settings: Settings,
        store: StoreGateway,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.judge = Judge(settings.profile, Registry())
        self.metrics.describe_rules(self.judge.catalogue, settings.profile)
        for deletion in store.deletions():
            self.judge.observe_deletion(deletion)
        self.processor = MessageProcessor(
            self.judge,
            DeadLetterPolicy(settings.dead_letter_max_consecutive, settings.dead_letter_max_ratio),
            registry_grace=settings.registry_grace,
            max_held=settings.max_held,
            max_message_bytes=settings.max_message_bytes,
            reported=store.eventless_violations(),
        )
        self.summary = RunSummary()
        self._closing = False
        self._first_read: float | None = None
        self._last_stored: float | None = None
        self._store = store
        self._stop = threading.Event()
        self._batch = Batch()
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._expected: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._take_failing = False
        self._aligner = PartitionAligner(settings.partition_lead)
        self._consumer = group_consumer(settings)
        _require_topics(self._consumer, settings.bootstrap)
        self._consumer.subscribe(list(GROUP_TOPICS), listener=_Rebalance(self))
        self._feed = RegistryFeed(
            settings.kafka,
            self.judge,
            self.metrics,
            stored=store.registry_offsets(),
            max_message_bytes=settings.max_message_bytes,
        )
        self._outbox = Outbox()
        self._publisher = FindingsPublisher(settings.kafka)
        self._published_log = PublishedLog(settings.kafka)

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (signal-safe)."""
        self._stop.set()

    def run(self) -> RunSummary:
        """Consume until stopped, or until no message arrived for `until_idle` seconds."""
        with collecting_in_batches():
            return self._run()

    def _run(self) -> RunSummary:
        self._feed.catch_up(self._batch, full=self._store_full, limit=self.settings.batch_size)
        last_message = time.monotonic()
        try:
            while not self._stop.is_set():
                # Fetched here, where no batch is on the stack (`RegistryFeed.fetch`).
                fetched = self._feed.fetch()
                read = self._feed.apply(fetched, self._batch) + self._fill()
                now = time.monotonic()
                if read or not self._consumer.assignment():
                    # Not idle while still joining the group: members killed
                    # earlier hold the rebalance until their sessions expire.
                    last_message = now
                self.processor.release_held(self._batch, now)
                self.processor.check_overdue(self._batch)
                self.metrics.held.set(len(self.processor.held))
                self._store_and_commit()
                idle = self.settings.until_idle
                if idle is not None and now - last_message >= idle and self._read_to_the_end():
                    # Drained: the end of the input, as for the offline checker.
                    self.processor.finish(self._batch)
                    break
            else:
                # Stopped by a signal: events still waiting for a registry
                # record are judged with what is known, so nothing stays held.
                self.processor.release_held(self._batch, time.monotonic(), force=True)
            self._store_and_commit()
        finally:
            # From the first event read to the last stored: start-up (registry
            # catch-up, joining the group) and the --until-idle wait do not count.
            if self._first_read is not None and self._last_stored is not None:
                self.summary.seconds = max(self._last_stored - self._first_read, 0.0)
            self._feed.close()
            self._publisher.close()
            self._published_log.close()
            self._closing = True
            self._consumer.close(autocommit=False)
        return self.summary

    # -- reading --------------------------------------------------------------

    def _fill(self) -> int:
        """Poll until the batch is full or `batch_seconds` have passed."""
        deadline = time.monotonic() + self.settings.batch_seconds
        read = 0
        while read < self.settings.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # One poll may take the whole rest of the batch. The aligner keeps
            # the partitions level in record time, so that a device's captures
            # and matches (two topics) arrive close together.
            allowed = self.settings.batch_size - read
            polled = self._consumer.poll(timeout_ms=int(remaining * 1000), max_records=allowed)
            full = sum(map(len, polled.values())) >= allowed
            part_read = next(reversed(polled), None) if full else None
            self._take_assigned(polled)
            for tp, messages in polled.items():
                messages = self._in_order(tp, messages)
                if not messages:
                    continue
                if self._first_read is None:
                    self._first_read = time.monotonic()
                for message in messages:
                    self.processor.process(message, self._batch)
                read += len(messages)
                self._next[tp] = messages[-1].offset + 1
                self._aligner.read(tp, self._next[tp], messages[-1].timestamp)
            self._aligner.align(self._consumer, part_read)
        return read

    def _read_to_the_end(self) -> bool:
        """Whether every partition this process owns has been read to its end.

        Quiet for `--until-idle` seconds is not enough: a rebalance rewinds
        the partitions taken again to their commit, and it can come as the
        quiet time runs out (another worker leaving the group), leaving the
        records after the commit, and the events held there, unread.
        """
        if self._assigned:  # assigned, not taken yet
            return False
        try:
            ends = self._consumer.end_offsets(list(self._consumer.assignment()))
        except KafkaError:
            return False
        return all(self._consumer.position(tp) >= end for tp, end in ends.items())

    def _take_assigned(self, polled: dict[TopicPartition, list]) -> None:
        """Take the partitions assigned during this poll, and read each from its commit.

        Every rebalance revokes all partitions and drops their unstored rows;
        the client keeps the read position of a partition assigned again, past
        those rows. So each assigned partition is rewound to its commit now,
        not when its next record arrives: after the last record of a stream
        no record would ever come to trigger it. Records this poll returned
        for it were read from the old position and are read again.

        When the broker cannot answer (it is restarting), the partitions stay
        to be taken after the next poll, and their records wait until then.
        """
        if not self._assigned:
            return
        pending = list(self._assigned)
        for tp in pending:
            polled.pop(tp, None)
        try:
            taken = {tp: self._consumer.committed(tp, metadata=True) for tp in pending}
            commits = {tp: meta.offset if meta is not None else 0 for tp, meta in taken.items()}
            self._recall_published(taken, commits)
        except KafkaError as exc:
            if not self._take_failing:
                log.warning("cannot take the assigned partitions yet (%s); retrying", exc)
            self._take_failing = True
            return
        self._take_failing = False
        self._assigned.difference_update(pending)
        for tp, committed in commits.items():
            self._take(tp, committed)
            self._consumer.seek(tp, committed)

    def _recall_published(
        self,
        taken: dict[TopicPartition, OffsetAndMetadata | None],
        commits: dict[TopicPartition, int],
    ) -> None:
        """Find the violations the last owners of `taken` published past their commits.

        A commit that carries no mark (the group's first) gets one now,
        before anything of its partition is published.
        """
        ends = self._published_log.ends()
        self._publisher.raise_mark(ends)
        marks = {tp: decode_mark(meta.metadata if meta else None) for tp, meta in taken.items()}
        unmarked = {
            tp: OffsetAndMetadata(commits[tp], encode_mark(self._publisher.mark), -1)
            for tp, mark in marks.items()
            if mark is None
        }
        if unmarked:
            self._commit_offsets(unmarked)
        marked = {tp: mark for tp, mark in marks.items() if mark is not None}
        if not marked:
            return
        start = {
            partition: min(mark.get(partition, 0) for mark in marked.values())
            for partition in set().union(*marked.values())
        }
        sources = {(tp.topic, tp.partition): commits[tp] for tp in marked}
        self._outbox.already_published(self._published_log.published_since(start, ends, sources))

    def _in_order(self, tp: TopicPartition, messages: list) -> list:
        """The messages to process, once a newly taken partition reads from its commit.

        After the rewind to the commit the client may still hand out records
        fetched earlier: from beyond the commit (refused, and the partition
        rewound again, for as long as they come), or from before it (already
        stored and committed: skipped). Only when retention has deleted the
        log up to past the commit does reading start later than the commit.
        """
        expected = self._expected.get(tp)
        if expected is None:
            return messages
        messages = [m for m in messages if m.offset >= expected]
        if not messages:
            return messages
        if messages[0].offset > expected:
            start = self._consumer.beginning_offsets([tp])[tp]
            if start <= expected:
                self._consumer.seek(tp, expected)
                return []
        del self._expected[tp]
        return messages

    def _take(self, tp: TopicPartition, committed: int) -> None:
        """A partition was assigned: load what the store holds of it past its commit."""
        self._expected[tp] = self._committed[tp] = committed
        self._aligner.start(tp, committed)
        self.processor.assign(tp.topic, tp.partition, self._store.stored_tail(*tp, committed))
        for device, seq, digest in self._store.device_states(tp.partition):
            self.judge.sequences.resume(device, seq + 1, digest)

    # -- storing and committing ----------------------------------------------

    def _store_full(self, batch: Batch) -> Batch:
        """Store the batch the registry catch-up filled (it is `self._batch`); the next one."""
        self._store_and_commit()
        return self._batch

    def _store_and_commit(self) -> None:
        """Store the batch, then publish its due findings, then commit."""
        batch, self._batch = self._batch, Batch()
        started = time.monotonic()
        if len(batch):
            self._write_with_retry(batch)
            self._count(batch)
            if batch.rows["events"]:
                self._last_stored = time.monotonic()
        self._outbox.add(batch.outbox)
        self._commit()
        if len(batch):
            self.metrics.batch_seconds.observe(time.monotonic() - started)
        self._update_lag()

    def _write_with_retry(self, batch: Batch) -> None:
        """Insert the batch, retrying with backoff while the store is failing.

        Nothing is read meanwhile (no unbounded buffering) and nothing is
        committed; the batch keeps its deduplication token. A stop request
        ends the wait: the batch stays uncommitted and is read again next time.
        """
        delay = 0.5
        while True:
            try:
                self._store.write(batch)
                return
            except (ClickHouseError, OSError) as exc:
                self.metrics.insert_failures.inc()
                if self._stop.is_set():
                    raise FaceauditError(
                        f"stopped while ClickHouse was failing ({exc}); "
                        "the last batch was not committed and will be read again"
                    ) from exc
                log.warning("insert failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.insert_backoff_max)

    def _count(self, batch: Batch) -> None:
        """Metrics and the run summary, from what the batch stored."""
        stored_at = now_utc()
        events = Counter(row["kind"] for row in batch.rows["events"])
        violations = Counter(
            (r["rule_id"], r["severity"], r["region_code"][:2]) for r in batch.rows["violations"]
        )
        dead_letters = Counter(row["reason"] for row in batch.rows["dead_letters"])
        for row in batch.rows["events"]:
            self.metrics.latency.observe((stored_at - row["event_time"]).total_seconds())
        for kind, n in events.items():
            self.metrics.events.labels(kind).inc(n)
        for (rule, severity, province), n in violations.items():
            self.metrics.violations.labels(rule, severity, province).inc(n)
        for reason, n in dead_letters.items():
            self.metrics.dead_letters.labels(reason).inc(n)
        by_rule = Counter()
        for (rule, severity, _), n in violations.items():
            by_rule[(rule, severity)] += n
        self.summary.add(
            RunSummary(
                events,
                by_rule,
                dead_letters,
                sum(len(batch.rows[t]) for t in ("consents", "deployments", "deletions")),
            )
        )

    def _commit(self) -> None:
        """Publish the due findings, then commit, per partition, up to the first event held.

        The commit carries the violations topic's mark, taken after the
        findings were published. Partitions whose offset did not move are
        committed again with it: a partition that stays quiet for a week
        would otherwise make its next owner read a week of the topic.
        """
        targets = {}
        first_held = self.processor.first_held_offsets()
        for tp, next_offset in self._next.items():
            held = first_held.get((tp.topic, tp.partition))
            target = next_offset if held is None else min(next_offset, held)
            if target > self._committed.get(tp, -1):
                targets[tp] = target
        committed = {**self._committed, **targets}
        due = self._outbox.take_due(
            {(tp.topic, tp.partition): offset for tp, offset in committed.items()}
        )
        if not targets and not any(due.values()):
            return
        self._publisher.publish(due)
        if targets:
            mark = encode_mark(self._publisher.mark)
            offsets = {tp: OffsetAndMetadata(offset, mark, -1) for tp, offset in committed.items()}
            self._commit_offsets(offsets)

    def _commit_offsets(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another member; it re-reads from the last
            # commit and skips what is already stored and published.
            log.warning("commit failed after a rebalance: %s", exc)
            return
        for tp, meta in offsets.items():
            self._committed[tp] = meta.offset

    def _update_lag(self) -> None:
        for tp, next_offset in self._next.items():
            end = self._consumer.highwater(tp)
            if end is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(end - next_offset)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions given to this process, to take after the current `poll`."""
        self._assigned.update(TopicPartition(tp.topic, tp.partition) for tp in partitions)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Give partitions up: their unstored rows leave the batch, uncommitted.

        Runs inside `poll`, between two messages of a batch; the new owner
        re-reads those rows from the last commit.
        """
        gone = {TopicPartition(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= gone
        self._batch.drop(gone)
        self._outbox.drop({(tp.topic, tp.partition) for tp in gone})
        self.processor.forget({(tp.topic, tp.partition) for tp in gone})
        self._aligner.forget(gone)
        for tp in gone:
            if not self._closing:  # its new owner reports its lag from now on
                with contextlib.suppress(KeyError):
                    self.metrics.lag.remove(tp.topic, str(tp.partition))
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
            self._expected.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, validator: Validator) -> None:
        self._validator = validator

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._validator.revoke(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Noted only: the partitions are taken once `poll` has returned."""
        self._validator.assigned(list(assigned))


def _require_topics(consumer: KafkaConsumer, bootstrap: str) -> None:
    """Fail at start, naming them, if topics the validator reads or writes are missing."""
    needed = {*TOPICS.values(), DEAD_LETTER_TOPIC, VIOLATION_TOPIC}
    missing = sorted(needed - consumer.topics())
    if missing:
        raise FaceauditError(
            f"topics missing on {bootstrap}: {', '.join(missing)} "
            "(faceaudit broker start creates them on the local broker)"
        )


def group_consumer(settings: Settings) -> KafkaConsumer:
    """The validator's group consumer (the benchmark's raw reader uses the same settings)."""
    return kafka_consumer(
        settings.kafka,
        group_id=settings.group,
        client_id="faceaudit-validator",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_size,
        # A store outage is waited out without polling; stay in the group.
        max_poll_interval_ms=int(settings.max_poll_interval * 1000),
        session_timeout_ms=int(settings.session_timeout * 1000),
        # A device's captures and matches travel on two topics; small
        # per-partition fetches make the two interleave, so a device's
        # events arrive well inside the reorder window of the sequence rule.
        max_partition_fetch_bytes=256 * 1024,
        # Range assignment gives one member partition N of every topic, so
        # a device's capture and match partitions have the same owner.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
