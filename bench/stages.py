"""What each stage of the validator costs per event, timed in this process on one sample.

The sample is the first `sample` messages of the preloaded event topics, read
once into memory; then, on the same messages, each stage alone:

- decode: `schemas.codec.decode` (single-object header, Avro body, checks);
- rules: `Judge.judge_event` on the decoded records (per-event and stream rules);
- other: the rest of the decode and judge steps (topic/key checks, payload
  hash, staging rows, holding, dead-letter policy): the two steps minus
  decode and rules;
- insert: `ClickHouseSink.write` of the batches the steps filled (columns and
  the inserts into a fresh chDB store), batches of the validator's batch size.

Kafka itself (fetch, commit) is what `raw` measures.
"""

from __future__ import annotations

import gc
import hashlib
import time

from kafka import TopicPartition

from consumers.batch import Batch
from consumers.chain.decode import DecodeStep
from consumers.chain.judge import EventClock, JudgeStep
from consumers.chain.step import Collect
from consumers.dead_letters import DeadLetterPolicy
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.read import FETCH_BYTES, GROUP_TOPICS
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.settings import Settings
from consumers.sink import ClickHouseSink
from consumers.store import open_store
from core.clients import KafkaConfig, kafka_consumer
from schemas import codec


def stage_costs(bootstrap: str, dsn: str, sample: int) -> dict[str, float]:
    """Microseconds per event of each stage, over the first `sample` messages."""
    settings = Settings.resolve({"bootstrap": bootstrap})
    messages = _read(settings.kafka, sample)

    gc.collect()
    started = time.perf_counter()
    decoded = [codec.decode(message.value) for message in messages]
    decode = time.perf_counter() - started

    judge = _judge(settings)
    hashes = [hashlib.sha256(d.payload).hexdigest() for d in decoded]
    gc.collect()
    started = time.perf_counter()
    for item, digest in zip(decoded, hashes, strict=True):
        judge.judge_event(item.kind, item.record, digest)
    rules = time.perf_counter() - started
    del decoded, hashes  # the validator does not keep a batch's records either

    steps, collected = _decode_and_judge(settings)
    gc.collect()
    started = time.perf_counter()
    for first in range(0, len(messages), settings.batch_size):
        batch = Batch()
        for message in messages[first : first + settings.batch_size]:
            batch.read(TopicPartition(message.topic, message.partition), [message])
        steps.submit(batch)
    process = time.perf_counter() - started
    batches = collected.batches

    client = open_store(dsn)
    try:
        sink = ClickHouseSink(client)
        gc.collect()
        started = time.perf_counter()
        for batch in batches:
            sink.write(batch)
        insert = time.perf_counter() - started
    finally:
        client.close()

    per_event = 1e6 / len(messages)
    return {
        "decode": round(decode * per_event, 1),
        "rules": round(rules * per_event, 1),
        "other": round((process - decode - rules) * per_event, 1),
        "insert": round(insert * per_event, 1),
        "total": round((process + insert) * per_event, 1),
        "sample": len(messages),
    }


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


def _decode_and_judge(settings: Settings) -> tuple[DecodeStep, Collect]:
    """The validator's decode and judge steps, ending in a step that keeps their batches."""
    judge, collected = _judge(settings), Collect()
    judging = JudgeStep(
        collected,
        judge,
        judge.sequence_tracker(),
        EventClock(),
        {},
        registry_grace=settings.registry_grace,
        max_held=settings.max_held,
        reported=set(),
        held_gauge=PipelineMetrics().held,
    )
    policy = DeadLetterPolicy(settings.dead_letter_max_consecutive, settings.dead_letter_max_ratio)
    return DecodeStep(judging, policy, settings.max_message_bytes), collected


def _judge(settings: Settings) -> Judge:
    """A judge whose registry and deletions are read in full, as a validator's are."""
    judge = Judge(settings.profile, Registry())
    feed = RegistryFeed(settings.kafka, judge, PipelineMetrics())
    try:
        feed.catch_up(lambda batch: None)  # the registry, not its rows, is wanted
    finally:
        feed.close()
    return judge
