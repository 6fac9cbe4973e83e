"""The registries, read in full: consents, deployments and deletions.

Every validator process reads these topics from the beginning with its own
group-less consumer (a global table), so any process can judge any event.
Deletions travel with them because FR-DELETION-OVERDUE needs every deletion
known before it judges a withdrawal, as the consents must be.

With a key feed, a record counts only if its signature verifies under a
registered key (REG-UNSIGNED-RECORD): one that does not is kept as a dead
letter, with its bytes and headers, and is not applied. Without one
(``--trust none``) every record counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from consumers.batch import Batch, now_utc
from consumers.dead_letters import dead_letter_row
from consumers.decoding import decode_message
from consumers.judge import Judge
from consumers.key_feed import KeyFeed
from consumers.keyring import Refusal
from consumers.metrics import PipelineMetrics
from core.clients import KafkaConfig, kafka_consumer
from core.errors import FaceauditError
from schemas import codec
from schemas.topics import TOPICS

TABLE_FOR_KIND = {"consent": "consents", "deployment": "deployments", "deletion": "deletions"}
FEED_TOPICS = tuple(TOPICS[kind] for kind in TABLE_FOR_KIND)


class RegistryFeed:
    """Keeps the judge's registry and deletions current, and stages records for storage."""

    def __init__(
        self,
        kafka: KafkaConfig,
        judge: Judge,
        metrics: PipelineMetrics,
        stored: Mapping[tuple[str, int], int] | None = None,
        max_message_bytes: int = 1024 * 1024,
        keys: KeyFeed | None = None,
        **kafka_config: object,
    ) -> None:
        """`stored`: per registry partition, the highest offset the store already holds;
        `keys`: where signatures are checked (None: they are not)."""
        self._judge = judge
        self._keys = keys
        self._metrics = metrics
        self._max_bytes = max_message_bytes
        self._stored = dict(stored or {})
        self._consumer = kafka_consumer(
            kafka,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="faceaudit-registry",
            **kafka_config,
        )
        partitions = [
            TopicPartition(topic, p)
            for topic in FEED_TOPICS
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self._partitions = partitions

    def catch_up(
        self, submit: Callable[[Batch], None], timeout: float = 60.0, limit: int = 20_000
    ) -> None:
        """Read until every registry partition is at its end offset as of now.

        The rows go to `submit` in batches of about `limit`: they are stored
        on the way, and the memory needed to start does not grow with the
        registries' size.
        """
        if self._keys is not None:
            self._keys.read_to_end(timeout)
        ends = self._consumer.end_offsets(self._partitions)
        self._check_store_is_behind(ends)
        deadline = time.monotonic() + timeout
        batch = Batch()
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry topics not read to their end within {timeout} s")
            self.apply(self.fetch(timeout_ms=200, max_records=limit), batch)
            if len(batch) >= limit:
                submit(batch)
                batch = Batch()
        submit(batch)

    def _check_store_is_behind(self, ends: Mapping[TopicPartition, int]) -> None:
        """FaceauditError if the store holds offsets a registry partition never reached."""
        for tp, end in ends.items():
            stored = self._stored.get((tp.topic, tp.partition), -1)
            if stored >= end:
                raise FaceauditError(
                    f"the store holds {tp.topic}[{tp.partition}] up to offset {stored}, but the "
                    f"topic ends at offset {end}: it was created anew, or this is another "
                    "cluster; validate into another store (--clickhouse)"
                )

    def fetch(self, timeout_ms: int = 0, max_records: int = 50_000) -> list[ConsumerRecord]:
        """The registry records that have arrived, to `apply`.

        Takes no batch, and its caller should hold none: kafka-python (3.0.12)
        keeps the timeout error of a poll that found nothing, and through its
        traceback every frame on the calling stack with its locals, until the
        registry fetch in flight returns (up to half a second) and the cycle
        collector runs. A batch held by a caller would be kept that long,
        and moved to the oldest generation of the collector on the way.
        """
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [message for messages in polled.values() for message in messages]

    def apply(self, records: list[ConsumerRecord], batch: Batch) -> int:
        """Apply fetched registry records and stage their rows; return how many there were."""
        if self._keys is not None and records:
            self._keys.poll()  # a revocation may have come
        decoded = [decode_message(message, self._max_bytes) for message in records]
        refusals = self._refusals(records, decoded)
        for message, one, refused in zip(records, decoded, refusals, strict=True):
            self._apply(message, one, refused, batch)
        return len(records)

    def _apply(
        self,
        message: ConsumerRecord,
        decoded: codec.Decoded | tuple[str, str],
        refused: Refusal | None,
        batch: Batch,
    ) -> None:
        position = (message.topic, message.partition, message.offset)
        stored = message.offset <= self._stored.get(position[:2], -1)
        if isinstance(decoded, tuple):
            if not stored:
                row = dead_letter_row(message, *decoded)
                batch.add_finding("dead_letters", row, *position)
            return
        if refused is not None:
            if not stored:
                row = dead_letter_row(message, refused.reason, refused.detail)
                batch.add_finding("dead_letters", row, *position)
                seen_at = datetime.fromtimestamp(message.timestamp / 1000, UTC)
                for violation in self._judge.unsigned(
                    decoded.kind, decoded.record, refused, seen_at
                ):
                    batch.add_violation(violation, *position, now_utc())
            return
        found = []
        if decoded.kind == "deletion":
            self._judge.observe_deletion(decoded.record)
        else:
            found = self._judge.apply_registry(decoded.kind, decoded.record)
        self._metrics.registry_records.labels(decoded.kind).inc()
        if not stored:  # the record as sent: the trail shows a refused rewrite too
            batch.add(TABLE_FOR_KIND[decoded.kind], dict(decoded.record), *position)
            for violation in found:
                batch.add_violation(violation, *position, now_utc())

    def _refusals(
        self, records: list[ConsumerRecord], decoded: list[codec.Decoded | tuple[str, str]]
    ) -> list[Refusal | None]:
        """Why each decoded record does not count (None: it does, or signatures are not
        checked, or it did not decode)."""
        refusals: list[Refusal | None] = [None] * len(records)
        if self._keys is None:
            return refusals
        good = [n for n, one in enumerate(decoded) if not isinstance(one, tuple)]
        verdicts = self._keys.refusals(
            [
                (decoded[n].kind, decoded[n].record, records[n].value, records[n].headers)
                for n in good
            ]
        )
        for n, verdict in zip(good, verdicts, strict=True):
            refusals[n] = verdict
        return refusals

    def close(self) -> None:
        self._consumer.close(autocommit=False)
        if self._keys is not None:
            self._keys.close()
