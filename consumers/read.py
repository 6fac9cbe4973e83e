"""The read step: the validator's member of the consumer group on the events topic.

It fills batches by size or time, keeps track of the partitions the group
assigns, rewinds each one taken to its commit, and commits for the commit
step. It knows nothing of what the messages mean.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import AuthorizationError, CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.batch import Batch
from consumers.metrics import PipelineMetrics
from consumers.settings import Settings
from consumers.summary import RunTimer
from core.clients import KafkaConfig, kafka_consumer, refusal
from core.errors import FaceauditError
from schemas.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, INPUT_TOPICS, VIOLATION_TOPIC

log = logging.getLogger(__name__)

GROUP_TOPICS = (EVENTS_TOPIC,)
FETCH_BYTES = 256 * 1024

Taken = dict[TopicPartition, OffsetAndMetadata | None]
"""Partitions newly assigned, with their last commit (None: never committed)."""


class GroupReader:
    """Polls the group's partitions into batches; `on_revoked` runs when the group takes them."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        bootstrap: str,
        on_revoked: Callable[[set[TopicPartition], bool], None],
        kafka: KafkaConfig | None = None,
    ) -> None:
        """`on_revoked(partitions, closing)` runs inside `poll` when the group takes partitions
        (`closing`: because this reader is closing)."""
        _require_topics(consumer, bootstrap)
        self._kafka = kafka
        self._consumer = consumer
        self._on_revoked = on_revoked
        self._assigned: set[TopicPartition] = set()  # assigned, not taken yet
        self._joined = False  # the group gave this process an assignment (maybe empty)
        self._expected: dict[TopicPartition, int] = {}  # taken: the offset reading starts at
        self._next: dict[TopicPartition, int] = {}  # taken: the next offset to read
        self._batch: Batch | None = None
        self._take_failing = False
        self._closing = False
        consumer.subscribe(list(GROUP_TOPICS), listener=_Listener(self))

    def read(self, size: int, seconds: float, stop: threading.Event, timer: RunTimer) -> Batch:
        """A batch of up to `size` messages, polled for at most `seconds`.

        Returns early, with what it read, as soon as partitions are assigned:
        they are to be taken (`take`) before anything of theirs is read.

        The batch is kept in an attribute, never in a local, while polling:
        kafka-python (3.0.12) keeps the timeout error of a poll that found
        nothing, and through its traceback every frame on the stack with its
        locals, until its next fetch returns and the cycle collector runs.
        """
        started = time.monotonic()
        deadline = started + seconds
        self._batch = Batch(started=started)
        try:
            while len(self._batch.messages) < size and not stop.is_set() and not self._assigned:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._poll(int(remaining * 1000), size - len(self._batch.messages))
            if self._batch.messages:
                timer.read()
            return self._batch
        finally:
            self._batch = None

    def _poll(self, timeout_ms: int, max_records: int) -> None:
        try:
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except AuthorizationError as exc:
            if self._kafka is None:
                raise
            raise FaceauditError(refusal(self._kafka, exc) or repr(exc)) from None
        for tp, messages in polled.items():
            if tp in self._assigned:
                continue  # read from the old position: read again once taken
            messages = self._in_order(tp, messages)
            if messages:
                self._batch.read(tp, messages)
                self._next[tp] = messages[-1].offset + 1

    @property
    def assigned(self) -> bool:
        """Whether partitions were assigned that are still to be taken."""
        return bool(self._assigned)

    def take(self) -> Taken | None:
        """The partitions assigned since the last take, with their commits.

        None while the broker cannot answer (it is restarting): the
        partitions stay to be taken after the next poll.
        """
        pending = list(self._assigned)
        try:
            taken = {tp: self._consumer.committed(tp, metadata=True) for tp in pending}
        except KafkaError as exc:
            if not self._take_failing:
                log.warning("cannot take the assigned partitions yet (%s); retrying", exc)
            self._take_failing = True
            return None
        self._take_failing = False
        self._assigned.difference_update(pending)
        return taken

    def rewind(self, commits: dict[TopicPartition, int]) -> None:
        """Read each taken partition from its commit on.

        Every rebalance revokes all partitions; the client keeps the read
        position of a partition assigned again, past the rows dropped with
        the old chain. So each is rewound now, not when its next record
        arrives: after the last record of a stream none would come.
        """
        for tp, offset in commits.items():
            self._expected[tp] = self._next[tp] = offset
            self._consumer.seek(tp, offset)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
        """Commit `offsets`; False if the partitions moved to another member meanwhile.

        Their new owner re-reads from the last commit and leaves out what is
        already stored and published.
        """
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit failed after a rebalance: %s", exc)
            return False
        return True

    def read_to_the_end(self) -> bool:
        """Whether every partition of the topic is read to its end: those this process
        owns, by it; the others, by the group (committed to their end).

        Quiet for `--until-idle` seconds is not enough: a rebalance rewinds
        the partitions taken again to their commit, and it can come as the
        quiet time runs out (another worker leaving the group), leaving the
        records after the commit, and the events held there, unread. Nor is
        reading all one owns: a member killed just after it joined keeps its
        share until its session expires, and no one reads that meanwhile.
        """
        if self._assigned or not self._joined:
            return False  # owning nothing before the first join is not having read it all
        numbers = self._consumer.partitions_for_topic(EVENTS_TOPIC)
        if not numbers:
            return False
        owned = self._consumer.assignment()
        try:
            ends = self._consumer.end_offsets([TopicPartition(EVENTS_TOPIC, n) for n in numbers])
            return all(
                (self._next.get(tp, -1) if tp in owned else self._group_position(tp)) >= end
                for tp, end in ends.items()
            )
        except KafkaError:
            return False

    def _group_position(self, tp: TopicPartition) -> int:
        """Where the group reads a partition another member owns: its commit, or its start."""
        committed = self._consumer.committed(tp)
        if committed is not None:
            return committed
        return self._consumer.beginning_offsets([tp])[tp]

    def owns_partitions(self) -> bool:
        return bool(self._consumer.assignment())

    def report_lag(self, metrics: PipelineMetrics) -> None:
        """Messages behind the end of each partition read here, as the last fetch reported.

        From what this reader has read, not the client's position, which can
        ask the broker (and fail while it restarts).
        """
        for tp, next_offset in self._next.items():
            end = self._consumer.highwater(tp)
            if end is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(end - next_offset)

    def close(self) -> None:
        self._closing = True
        self._consumer.close(autocommit=False)

    def _in_order(self, tp: TopicPartition, messages: list) -> list:
        """The messages to read, once a newly taken partition reads from its commit.

        After the rewind the client may still hand out records fetched
        earlier: from beyond the commit (refused, and the partition rewound
        again, for as long as they come), or from before it (already stored
        and committed: skipped). Only when retention has deleted the log up to
        past the commit does reading start later than the commit.
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

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        """Runs inside `poll`: noted only, the partitions are taken once it has returned."""
        self._joined = True
        self._assigned.update(TopicPartition(tp.topic, tp.partition) for tp in partitions)

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        """Runs inside `poll`: what was read of them leaves the batch, uncommitted."""
        gone = {TopicPartition(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= gone
        for tp in gone:
            self._expected.pop(tp, None)
            self._next.pop(tp, None)
        if self._batch is not None:
            self._batch.drop(gone)
        self._on_revoked(gone, self._closing)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, reader: GroupReader) -> None:
        self._reader = reader

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._reader.on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._reader.on_assigned(list(assigned))


def _require_topics(consumer: KafkaConsumer, bootstrap: str) -> None:
    """Fail at start, naming them, if topics the validator reads or writes are missing."""
    needed = {*INPUT_TOPICS, DEAD_LETTER_TOPIC, VIOLATION_TOPIC}
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
        # Memory, not order: the client's default 1 MiB per partition and
        # fetch drained no faster and peaked about 15-50 MiB higher
        # (docs/benchmarks.md).
        max_partition_fetch_bytes=FETCH_BYTES,
    )
