"""What each stage of the validator costs per event, timed in this process on one sample.

The sample is the first `sample` messages of the preloaded event topic, read
once into memory and cut into batches of the validator's batch size; then,
on the same batches, each step of the chain alone (after one batch through
both, which loads what a process loads once):

- decode: the decode step (one native call per batch, topic and key checks
  over the columns, the dead-letter policy);
- judge: the judge step on the decoded batches (sequence and chain over the
  sorted columns, the registry test, every per-event rule over the columns,
  FR-FILING, FR-DELETION-OVERDUE);
- insert: `ClickHouseSink.write` of the judged batches (the events' Arrow
  table and the other rows, into a fresh chDB store);
- ledger: what digests add to the insert of those batches: each row's hash,
  the tables' roots and the `batch_ledgers` insert
  (`ClickHouseSink.insert_ledger`), over the columns the insert had built.

Kafka itself (fetch, commit) is what `raw` measures.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Final

from kafka import TopicPartition

from consumers.batch import Batch
from consumers.chain.decode import DecodeStep
from consumers.chain.judge import EventClock, JudgeStep
from consumers.chain.step import Collect
from consumers.checkpoints import CheckpointJudge
from consumers.dead_letters import DeadLetterPolicy
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.read import FETCH_BYTES, GROUP_TOPICS
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.settings import Settings
from consumers.sink import ClickHouseSink, events_table, to_columns
from consumers.store import open_store
from core.clients import KafkaConfig, kafka_consumer

STAGE_CHAIN: Final = "bench-stages"
"""The chain the ledger stage's rows are stored under."""


def stage_costs(bootstrap: str, dsn: str, sample: int) -> dict[str, float]:
    """Microseconds per event of each stage, over the first `sample` messages."""
    settings = Settings.resolve({"bootstrap": bootstrap})
    messages = _read(settings.kafka, sample)
    # The first batch a process decodes and judges also loads Arrow's kernels
    # (about 0.2 s): once per process, so it is left out of the timing.
    warm = _judge_step(settings, Collect())
    DecodeStep(warm, _policy(settings), settings.max_message_bytes).submit(
        _batches(messages[: settings.batch_size], settings.batch_size)[0]
    )
    batches = _batches(messages, settings.batch_size)

    decoded = Collect()
    decode_step = DecodeStep(decoded, _policy(settings), settings.max_message_bytes)
    decode = _timed(lambda: [decode_step.submit(batch) for batch in batches])

    judged = Collect()
    judge_step = _judge_step(settings, judged)
    judge = _timed(lambda: [judge_step.submit(batch) for batch in decoded.batches])

    client = open_store(dsn)
    try:
        sink = ClickHouseSink(client)
        insert = _timed(lambda: [sink.write(batch) for batch in judged.batches])
        ledger = _ledger_seconds(sink, judged.batches)
    finally:
        client.close()

    per_event = 1e6 / len(messages)
    return {
        "decode": round(decode * per_event, 1),
        "judge": round(judge * per_event, 1),
        "insert": round(insert * per_event, 1),
        "ledger": round(ledger * per_event, 1),
        "total": round((decode + judge + insert) * per_event, 1),
        "sample": len(messages),
    }


def _ledger_seconds(sink: ClickHouseSink, batches: list[Batch]) -> float:
    """Seconds the ledgers of `batches` take to prepare and insert, their columns built first."""
    built = [
        (to_columns(batch, sink.layout), events_table(batch, sink.layout)) for batch in batches
    ]
    return _timed(lambda: [sink.insert_ledger(STAGE_CHAIN, *columns) for columns in built])


def _batches(messages: list, size: int) -> list[Batch]:
    """`messages` as read batches of `size`, as the read step hands them on."""
    batches = []
    for first in range(0, len(messages), size):
        batch = Batch()
        for message in messages[first : first + size]:
            batch.read(TopicPartition(message.topic, message.partition), [message])
        batches.append(batch)
    return batches


def _timed(run: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _read(kafka: KafkaConfig, sample: int) -> list:
    """The first `sample` messages of the event topics, fetched as the validator fetches."""
    consumer = kafka_consumer(
        kafka, enable_auto_commit=False, max_partition_fetch_bytes=FETCH_BYTES
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in GROUP_TOPICS
            for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        available = sum(consumer.end_offsets(partitions).values())
        messages: list = []
        while len(messages) < min(sample, available):
            for batch in consumer.poll(timeout_ms=1000).values():
                messages.extend(batch)
        return messages[:sample]
    finally:
        consumer.close()


def _policy(settings: Settings) -> DeadLetterPolicy:
    return DeadLetterPolicy(settings.dead_letter_max_consecutive, settings.dead_letter_max_ratio)


def _judge_step(settings: Settings, collected: Collect) -> JudgeStep:
    """The validator's judge step, ending in a step that keeps its batches."""
    judge = _judge(settings)
    return JudgeStep(
        collected,
        judge,
        judge.sequence_tracker(),
        CheckpointJudge(judge, None, judge.checkpoint_tracker()),
        EventClock(),
        {},
        registry_grace=settings.registry_grace,
        max_held=settings.max_held,
        reported=set(),
        held_gauge=PipelineMetrics().held,
    )


def _judge(settings: Settings) -> Judge:
    """A judge whose registry and deletions are read in full, as a validator's are."""
    judge = Judge(settings.profile, Registry())
    feed = RegistryFeed(settings.kafka, judge, PipelineMetrics())
    try:
        feed.catch_up(lambda batch: None)  # the registry, not its rows, is wanted
    finally:
        feed.close()
    return judge
