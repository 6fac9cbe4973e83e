"""The validator loop: poll, decode, judge, store, then commit.

Per batch: read from the event topics (one consumer group) and the registry
topics (read in full by every process), decode each message, judge events
with the rule engine, insert every table once, and only then commit the
offsets. A crash between the insert and the commit re-reads the batch; on
partition assignment the validator loads what ClickHouse already holds from
the uncommitted tail of the partition and skips those rows, so a re-read
batch is not stored twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.batch import Batch, now_utc
from consumers.dead_letters import dead_letter_row
from consumers.judge import Anchored, Judge
from consumers.metrics import PipelineMetrics
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.sink import ClickHouseSink
from consumers.stored_tail import StoredTail
from faceaudit.errors import FaceauditError
from faceaudit.settings import Settings
from schemas import codec
from schemas.topics import TOPICS

log = logging.getLogger(__name__)

GROUP_TOPICS = (TOPICS["capture"], TOPICS["match"])
_EMPTY_TAIL = StoredTail()
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(slots=True)
class Held:
    """An event whose consent or deployment record has not arrived yet."""

    kind: str
    record: dict
    topic: str
    partition: int
    offset: int
    since: float


@dataclass(slots=True)
class RunSummary:
    """What one run of the validator stored."""

    events: Counter[str] = field(default_factory=Counter)
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    registry_records: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return sum(self.events.values()) / self.seconds if self.seconds else 0.0


class Validator:
    """One validator process: a member of the consumer group plus the registry feed."""

    def __init__(
        self,
        settings: Settings,
        sink: ClickHouseSink,
        load_tail: Callable[[TopicPartition, int], StoredTail] | None = None,
        metrics: PipelineMetrics | None = None,
        stored_registry: Mapping[tuple[str, int], int] | None = None,
        reported: Iterable[str] = (),
    ) -> None:
        """`reported`: ids of violations with no event (FR-DELETION-OVERDUE) already stored."""
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.registry = Registry()
        self.judge = Judge(settings.profile, self.registry)
        self.metrics.info.info(
            {
                "catalogue_version": self.judge.catalogue.version,
                "profile": settings.profile,
                "catalogue_sha256": self.judge.catalogue.sha256,
            }
        )
        self._reported = set(reported or ())
        self._watermark: datetime | None = None
        self.summary = RunSummary()
        self._sink = sink
        self._load_tail = load_tail or (lambda tp, start: StoredTail())
        self._stop = threading.Event()
        self._held: list[Held] = []
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._tails: dict[TopicPartition, StoredTail] = {}
        self._consumer = _group_consumer(settings)
        self._consumer.subscribe(list(GROUP_TOPICS), listener=_Rebalance(self))
        self._feed = RegistryFeed(
            settings.bootstrap, self.judge, self.metrics, stored=stored_registry
        )

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (signal-safe)."""
        self._stop.set()

    def run(self) -> RunSummary:
        """Consume until stopped, or until no message arrived for `until_idle` seconds."""
        started = time.monotonic()
        batch = Batch()
        self._feed.catch_up(batch)
        last_message = time.monotonic()
        try:
            while not self._stop.is_set():
                read = self._fill(batch)
                now = time.monotonic()
                if read:
                    last_message = now
                self._release_held(batch, now, force=False)
                self._check_overdue(batch)
                if len(batch):
                    self._flush(batch)
                    batch = Batch()
                self._commit()
                idle = self.settings.until_idle
                if idle is not None and now - last_message >= idle:
                    break  # held events are judged below, with what the registry knows
            self._release_held(batch, time.monotonic(), force=True)
            if not self._stop.is_set():
                # Drained (--until-idle): the end of the input, so sequence gaps
                # still open are gaps, as in the offline checker.
                self._add_violations(self.judge.finish_anchored(), batch)
            self._check_overdue(batch)
            if len(batch):
                self._flush(batch)
            self._commit()
        finally:
            self.summary.seconds = time.monotonic() - started
            self._feed.close()
            self._consumer.close(autocommit=False)
        return self.summary

    # -- reading --------------------------------------------------------------

    def _fill(self, batch: Batch) -> int:
        """Poll until the batch is full or `batch_seconds` have passed."""
        deadline = time.monotonic() + self.settings.batch_seconds
        read = 0
        while read < self.settings.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            polled = self._consumer.poll(
                timeout_ms=int(remaining * 1000), max_records=self.settings.batch_size - read
            )
            read += self._feed.poll(batch)
            for tp, messages in polled.items():
                tail = self._tail(tp)
                for message in messages:
                    self._process(message, batch, tail)
                read += len(messages)
                self._next[tp] = messages[-1].offset + 1
        return read

    def _tail(self, tp: TopicPartition) -> StoredTail:
        tail = self._tails.get(tp)
        if tail is None:
            committed = self._consumer.committed(tp) or 0
            self._committed[tp] = committed
            tail = self._tails[tp] = self._load_tail(tp, committed)
        return tail

    def _process(self, message: ConsumerRecord, batch: Batch, tail: StoredTail) -> None:
        position = (message.topic, message.partition, message.offset)
        decoded = self._decode(message, batch, tail)
        if decoded is None:
            return
        record = decoded.record
        record["kind"] = decoded.kind
        record["payload_sha256"] = digest = hashlib.sha256(decoded.payload).hexdigest()
        if message.offset not in tail.events:
            batch.add("events", record, *position)
            self.summary.events[decoded.kind] += 1
        if self._watermark is None or record["event_time"] > self._watermark:
            self._watermark = record["event_time"]
        found = self.judge.observe_sequence(record, digest, position, arrival=time.monotonic())
        self._add_violations(found, batch)
        if self._awaits_registry(record):
            self._held.append(Held(decoded.kind, record, *position, since=time.monotonic()))
            if len(self._held) > self.settings.max_held:
                # Memory bound: the oldest held event is judged now, with what is known.
                oldest = self._held.pop(0)
                where = (oldest.topic, oldest.partition, oldest.offset)
                self._add_violations(
                    self.judge.judge_rules(oldest.kind, oldest.record, where), batch
                )
        else:
            self._add_violations(self.judge.judge_rules(decoded.kind, record, position), batch)

    def _decode(
        self, message: ConsumerRecord, batch: Batch, tail: StoredTail
    ) -> codec.Decoded | None:
        """The decoded message, or None after staging it as a dead letter."""
        reason, detail = "", ""
        if message.value is not None and len(message.value) > MAX_MESSAGE_BYTES:
            reason = "oversized"
            detail = f"{len(message.value)} bytes, more than the {MAX_MESSAGE_BYTES} allowed"
        else:
            try:
                decoded = codec.decode(message.value)
            except codec.DecodeError as exc:
                reason, detail = exc.reason, exc.detail
            else:
                if TOPICS.get(decoded.kind) == message.topic:
                    return decoded
                reason = "wrong_topic"
                detail = f"a {decoded.kind} record on topic {message.topic}"
        if message.offset not in tail.dead_letters:
            row = dead_letter_row(
                message, reason, f"{message.topic}[{message.partition}]@{message.offset}: {detail}"
            )
            batch.add("dead_letters", row, message.topic, message.partition, message.offset)
            self.summary.dead_letters[reason] += 1
        return None

    # -- judging --------------------------------------------------------------

    def _awaits_registry(self, record: dict) -> bool:
        """True when the event names a deployment or consent not (yet) in the registry."""
        if self.registry.deployment(record["deployment_id"]) is None:
            return True
        consent_id = record.get("consent_id")
        return consent_id is not None and self.registry.consent(consent_id) is None

    def _add_violations(self, found: list[Anchored], batch: Batch) -> None:
        """Stage violations at the position of the event each was found at.

        A violation with no event (FR-DELETION-OVERDUE) has no position; it is
        stored once, by its deterministic id.
        """
        detected_at = now_utc()
        for violation, anchor in found:
            topic, partition, offset = anchor or ("", 0, 0)
            if anchor is None:
                if violation.violation_id in self._reported:
                    continue
                self._reported.add(violation.violation_id)
            else:
                tail = self._tails.get(TopicPartition(topic, partition), _EMPTY_TAIL)
                if violation.violation_id in tail.violations:
                    continue
            batch.add_violation(violation, topic, partition, offset, detected_at)
            self.summary.violations[(violation.rule_id, violation.severity)] += 1

    def _check_overdue(self, batch: Batch) -> None:
        """FR-DELETION-OVERDUE as of the latest event time seen."""
        if self._watermark is not None:
            self._add_violations([(v, None) for v in self.judge.overdue(self._watermark)], batch)

    def _release_held(self, batch: Batch, now: float, force: bool) -> None:
        """Judge held events whose records arrived, whose grace ran out, or all (`force`)."""
        grace = self.settings.registry_grace
        waiting = []
        for held in self._held:
            if force or now - held.since >= grace or not self._awaits_registry(held.record):
                position = (held.topic, held.partition, held.offset)
                self._add_violations(
                    self.judge.judge_rules(held.kind, held.record, position), batch
                )
            else:
                waiting.append(held)
        self._held = waiting
        self.metrics.held.set(len(waiting))

    # -- storing and committing ----------------------------------------------

    def _flush(self, batch: Batch) -> None:
        started = time.monotonic()
        self._write_with_retry(batch)
        stored_at = now_utc()
        for row in batch.rows["events"]:
            self.metrics.events.labels(row["kind"]).inc()
            self.metrics.latency.observe((stored_at - row["event_time"]).total_seconds())
        for row in batch.rows["violations"]:
            self.metrics.violations.labels(row["rule_id"], row["severity"]).inc()
        for row in batch.rows["dead_letters"]:
            self.metrics.dead_letters.labels(row["reason"]).inc()
        self.summary.registry_records += sum(
            len(batch.rows[table]) for table in ("consents", "deployments", "deletions")
        )
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        self._update_lag()

    def _write_with_retry(self, batch: Batch) -> None:
        """Insert the batch, retrying with backoff; the same batch keeps its dedup token."""
        delay, deadline = 0.5, time.monotonic() + self.settings.insert_retry_seconds
        while True:
            try:
                self._sink.write(batch)
                return
            except (ClickHouseError, OSError) as exc:
                self.metrics.insert_failures.inc()
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    raise FaceauditError(
                        f"cannot store a batch in ClickHouse: {exc}; offsets not committed"
                    ) from exc
                log.warning("insert failed (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _commit(self) -> None:
        """Commit, per partition, up to the first event still held (or all that was read)."""
        offsets = {}
        for tp, next_offset in self._next.items():
            held = [h.offset for h in self._held if (h.topic, h.partition) == tp]
            target = min([next_offset, *held])
            if target > self._committed.get(tp, -1):
                offsets[tp] = OffsetAndMetadata(target, "", -1)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another member; it re-reads from the last
            # commit and skips what is already stored.
            log.warning("commit failed after a rebalance: %s", exc)
            return
        for tp, meta in offsets.items():
            self._committed[tp] = meta.offset

    def _update_lag(self) -> None:
        for tp, next_offset in self._next.items():
            end = self._consumer.highwater(tp)
            if end is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(end - next_offset)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        """Drop state of revoked partitions; their uncommitted tail is re-read by the new owner."""
        gone = set(partitions)
        self._held = [h for h in self._held if TopicPartition(h.topic, h.partition) not in gone]
        for tp in gone:
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
            self._tails.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, validator: Validator) -> None:
        self._validator = validator

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._validator._forget(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Nothing to do here: a partition's stored tail is loaded when it is first read."""


def _group_consumer(settings: Settings) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=settings.group,
            client_id="faceaudit-validator",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            # A device's captures and matches travel on two topics; small
            # per-partition fetches make the two interleave, so a device's
            # events arrive well inside the reorder window of the sequence rule.
            max_partition_fetch_bytes=256 * 1024,
            # Range assignment gives one member partition N of every topic, so
            # a device's capture and match partitions have the same owner.
            partition_assignment_strategy=(RangePartitionAssignor,),
            bootstrap_timeout_ms=int(settings.kafka_timeout * 1000),
        )
    except KafkaError as exc:
        raise FaceauditError(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
            f" (no broker answered within {settings.kafka_timeout:g} s)"
        ) from None
