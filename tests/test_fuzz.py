"""Fuzzing the decode and rule path: every input ends as exactly one row, nothing escapes.

In process, no Kafka and no ClickHouse: records shaped as kafka-python
delivers them go through the validator's decode and judge steps, and each must
become either an `events` row or a `dead_letters` row of its batch, never
both, never neither, never an exception. The inputs come from a seeded
generator (set FACEAUDIT_FUZZ_SEED to explore other seeds; a failure names
its seed and offset, so it reproduces): valid events with random field
values, the same bytes corrupted every way a wire can corrupt them, and
messages on the wrong topic or under the wrong key. Where the outcome is
certain (a valid event, a truncated header, a wrong key, ...), the test
checks the exact outcome too. A hypothesis test adds arbitrary bytes and
keys, shrunk to a minimal example if one fails.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition
from samples import sample

from consumers.batch import Batch, Row
from consumers.chain.decode import DecodeStep
from consumers.chain.judge import EventClock, JudgeStep
from consumers.chain.step import Collect
from consumers.checkpoints import CheckpointJudge
from consumers.dead_letters import DeadLetterPolicy
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.registry import Registry
from schemas import codec
from schemas.regions import PROVINCES, is_region_code
from schemas.topics import EVENT_KINDS, KINDS, REGISTRY_KINDS, TOPICS

SEED = int(os.environ.get("FACEAUDIT_FUZZ_SEED", "20260301"))
MESSAGES = 100_000
PER_BATCH = 10_000
MAX_BYTES = 1 << 20
PARTITIONS = 6
EVENT_TOPICS = tuple(dict.fromkeys(TOPICS[kind] for kind in EVENT_KINDS))
REGISTRY_TOPICS = tuple(TOPICS[kind] for kind in REGISTRY_KINDS)

# What the contract says must not be negative; the generator keeps valid events valid.
NON_NEGATIVE = frozenset(("device_seq", "retention_days", "subject_age", "gallery_size"))
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
EPOCH_2026 = datetime(2026, 3, 1, tzinfo=UTC)
FIRST_MICROSECOND = datetime(1, 1, 1, tzinfo=UTC)
LAST_MICROSECOND = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
# Letters for random text: ASCII, CJK, an emoji, quotes, controls; no lone surrogates,
# which no encoder can write (the codec refuses them at encode time).
ALPHABET = "abcxyz-_019 设备摄像头人脸\U0001f600'\"\\\n\t\x00é"
SPECIAL_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e-45, 3.4e38, 1e300, float("inf"), float("nan"))
DEVICES = tuple(f"fuzz-dev-{n}" for n in range(40))


def make_steps() -> tuple[DecodeStep, Collect]:
    """The validator's decode and judge steps, with sample registry records and limits
    that never stop them; and what they hand on."""
    registry = Registry()
    registry.apply("deployment", sample("deployment"))
    registry.apply("consent", sample("consent"))
    judge, handed = Judge("cac-2025", registry), Collect()
    judging = JudgeStep(
        handed,
        judge,
        judge.sequence_tracker(),
        CheckpointJudge(judge, None, judge.checkpoint_tracker()),
        EventClock(),
        {},
        registry_grace=0,
        max_held=10,
        reported=set(),
        held_gauge=PipelineMetrics().held,
    )
    return DecodeStep(judging, DeadLetterPolicy(10**9, 1.0), MAX_BYTES), handed


def consumer_record(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> ConsumerRecord:
    """A record with every field kafka-python's fetcher fills."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        leader_epoch=0,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        headers=[("source", b"fuzz")],
        checksum=None,
        serialized_key_size=-1 if key is None else len(key),
        serialized_value_size=-1 if value is None else len(value),
        serialized_header_size=len("source") + len(b"fuzz"),
    )


# -- generating inputs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One input and, where it is certain, its outcome: "event" or a dead-letter reason."""

    topic: str
    key: bytes | None
    value: bytes | None
    expect: str | None
    how: str


@dataclass(frozen=True, slots=True)
class Valid:
    kind: str
    key: bytes
    message: bytes


class Inputs:
    """A seeded stream of cases; corrupted cases start from recently generated valid ones."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.recent: list[Valid] = []
        self.next_seq: Counter[str] = Counter()
        self.registry_messages = [codec.encode(kind, sample(kind)) for kind in REGISTRY_KINDS]
        self.registry_messages.append(codec.encode("deletion", sample("deletion")))
        self.strategies: list[tuple[Callable[[], Case], int]] = [
            (self.valid_event, 30),
            (self.truncated, 10),
            (self.bit_flipped, 15),
            (self.spliced, 8),
            (self.trailing_bytes, 5),
            (self.bad_region, 3),
            (self.wrong_key, 5),
            (self.wrong_topic, 5),
            (self.random_bytes, 5),
            (self.unknown_fingerprint, 3),
            (self.known_header_random_payload, 10),
            (self.empty, 2),
        ]

    def case(self, index: int) -> Case:
        if index % 2500 == 2499:  # a few only: each costs a megabyte
            return self.oversized()
        strategies, weights = zip(*self.strategies, strict=True)
        return self.rng.choices(strategies, weights)[0]()

    # valid events

    def valid_event(self) -> Case:
        kind = self.rng.choice(EVENT_KINDS)
        record = sample(kind)
        for field in codec.schema(kind)["fields"]:
            if self.rng.random() < 0.25:
                record[field["name"]] = self.value(field["type"], field["name"])
        device = record["device_id"] if self.rng.random() < 0.05 else self.rng.choice(DEVICES)
        record["device_id"] = device
        if self.rng.random() < 0.9:  # mostly in order, so the chain rules see real chains
            record["device_seq"] = self.next_seq[device]
            self.next_seq[device] += 1
        valid = Valid(kind, device.encode(), codec.encode(kind, record))
        self.recent = [*self.recent[-199:], valid]
        return Case(TOPICS[kind], valid.key, valid.message, "event", "valid event")

    def value(self, declared: Any, name: str) -> Any:
        """A random value of an Avro type, as the codec accepts it."""
        if isinstance(declared, list):
            options = [option for option in declared if option != "null"]
            if "null" in declared and self.rng.random() < 0.3:
                return None
            return self.value(self.rng.choice(options), name)
        if isinstance(declared, dict):
            if declared.get("logicalType") == "timestamp-micros":
                return self.timestamp()
            if declared["type"] == "enum":
                return self.rng.choice(declared["symbols"])
            if declared["type"] == "array":
                return [self.value(declared["items"], name) for _ in range(self.rng.randrange(4))]
        return self.primitive(declared, name)

    def primitive(self, declared: str, name: str) -> Any:
        rng = self.rng
        if declared == "string" and name in codec.REGION_CODES.values():
            return rng.choice(list(PROVINCES)) + f"{rng.randrange(10_000):04d}"
        if declared == "string":
            return "".join(rng.choices(ALPHABET, k=rng.choice((0, 1, 8, 36, 200))))
        if declared == "boolean":
            return rng.random() < 0.5
        if declared in ("int", "long"):
            low, high = INT32 if declared == "int" else INT64
            low = 0 if name in NON_NEGATIVE else low
            return rng.choice((low, high, 0, 1, rng.randint(low, high), rng.randint(0, 1000)))
        if declared == "float":
            return rng.choice((*SPECIAL_FLOATS, rng.uniform(-1, 2)))
        raise AssertionError(f"the generator knows no Avro type {declared!r}")

    def timestamp(self) -> datetime:
        """Mostly near the samples' date; sometimes anywhere from year 1 to year 9999."""
        if self.rng.random() < 0.8:
            return EPOCH_2026 + timedelta(seconds=self.rng.randint(-(10**7), 10**7))
        span = (LAST_MICROSECOND - FIRST_MICROSECOND) // timedelta(microseconds=1)
        return FIRST_MICROSECOND + timedelta(microseconds=self.rng.randint(0, span))

    def base(self) -> Valid:
        if not self.recent:
            self.valid_event()
        return self.rng.choice(self.recent)

    # corrupted bytes

    def truncated(self) -> Case:
        base = self.base()
        cut = self.rng.randrange(len(base.message))
        if cut == 0:
            expect = "empty"
        elif cut < codec.HEADER_SIZE:
            expect = "truncated_header"
        else:  # Avro reads a record front to back: a shorter body ends mid-field
            expect = "invalid_payload"
        return Case(TOPICS[base.kind], base.key, base.message[:cut], expect, "truncated")

    def bit_flipped(self) -> Case:
        base = self.base()
        flipped = bytearray(base.message)
        for _ in range(self.rng.choice((1, 1, 2, 3, 8))):
            bit = self.rng.randrange(len(flipped) * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
        return Case(TOPICS[base.kind], base.key, bytes(flipped), None, "bit flips")

    def spliced(self) -> Case:
        first, second = self.base(), self.base()
        head = first.message[: self.rng.randrange(len(first.message) + 1)]
        tail = second.message[self.rng.randrange(len(second.message) + 1) :]
        return Case(TOPICS[first.kind], first.key, head + tail, None, "splice")

    def trailing_bytes(self) -> Case:
        base = self.base()
        extra = self.rng.randbytes(self.rng.randint(1, 40))
        return Case(TOPICS[base.kind], base.key, base.message + extra, "trailing_bytes", "trailing")

    def bad_region(self) -> Case:
        """A well-formed event whose region code is not one (written past the codec)."""
        kind, device = self.rng.choice(EVENT_KINDS), self.rng.choice(DEVICES)
        code = self.rng.choice(
            (
                "990000",
                "000000",
                "44030",
                "4403051",
                "44O305",
                "",
                "\uff1440305",  # a full-width 4
                self.primitive("string", ""),
            )
        )
        assert not is_region_code(code)
        record = sample(kind, device_id=device, region_code=code)
        buffer = BytesIO()
        fastavro.schemaless_writer(buffer, codec.schema(kind), record)
        message = codec.frame(kind, buffer.getvalue())
        return Case(TOPICS[kind], device.encode(), message, "schema_invalid", "bad region code")

    def oversized(self) -> Case:
        base = self.base()
        padding = bytes(MAX_BYTES + 1 - len(base.message) + self.rng.randrange(1000))
        return Case(TOPICS[base.kind], base.key, base.message + padding, "oversized", "oversized")

    # right bytes, wrong place

    def wrong_key(self) -> Case:
        base = self.base()
        others = [k for k in (None, b"", self.rng.randbytes(8), b"another-device") if k != base.key]
        key = self.rng.choice(others)
        return Case(TOPICS[base.kind], key, base.message, "wrong_key", "wrong key")

    def wrong_topic(self) -> Case:
        if self.rng.random() < 0.5:
            base = self.base()
            other = self.rng.choice(REGISTRY_TOPICS)
            return Case(other, base.key, base.message, "wrong_topic", "event on a registry topic")
        message = self.rng.choice(self.registry_messages)
        topic = self.rng.choice(EVENT_TOPICS)
        return Case(topic, b"dev-1", message, "wrong_topic", "registry record on an event topic")

    # not ours at all

    def random_bytes(self) -> Case:
        first = self.rng.choice([b for b in range(256) if b != codec.MAGIC[0]])
        value = bytes([first]) + self.rng.randbytes(self.rng.randrange(500))
        return Case(self.rng.choice(EVENT_TOPICS), self.key(), value, "bad_magic", "random bytes")

    def unknown_fingerprint(self) -> Case:
        fp = self.rng.randbytes(8)
        while codec.kind_for_fingerprint(fp) is not None:
            fp = self.rng.randbytes(8)
        value = codec.MAGIC + fp + self.rng.randbytes(self.rng.randrange(200))
        topic = self.rng.choice(EVENT_TOPICS)
        return Case(topic, self.key(), value, "unknown_fingerprint", "unknown fingerprint")

    def known_header_random_payload(self) -> Case:
        kind = self.rng.choice(KINDS)
        value = codec.MAGIC + codec.fingerprint(kind) + self.rng.randbytes(self.rng.randrange(300))
        return Case(self.rng.choice(EVENT_TOPICS), self.key(), value, None, "random payload")

    def empty(self) -> Case:
        value = self.rng.choice((None, b""))
        return Case(self.rng.choice(EVENT_TOPICS), self.key(), value, "empty", "empty")

    def key(self) -> bytes | None:
        return self.rng.choice(
            (None, b"", self.rng.choice(DEVICES).encode(), self.rng.randbytes(6))
        )


# -- checking outcomes ----------------------------------------------------------------

DEAD_LETTER_REASONS = frozenset((*codec.DECODE_REASONS, "oversized", "wrong_topic", "wrong_key"))
NO_EVENT = ("", 0, 0)  # where a violation with no event (FR-DELETION-OVERDUE) is staged


def rows_by_offset(batch: Batch) -> dict[int, list[tuple[str, Row]]]:
    found: dict[int, list[tuple[str, Row]]] = {}
    for events in batch.event_tables:
        for row in events.to_pylist():
            found.setdefault(row["offset"], []).append(("events", row))
    for table in ("dead_letters", "checkpoints"):
        for row in batch.rows[table]:
            found.setdefault(row["offset"], []).append((table, row))
    return found


def check_outcome(case: Case, offset: int, rows: list[tuple[str, Row]] | None) -> str:
    """Exactly one row for the input, the one it calls for; "event" or the dead-letter reason."""
    where = f"seed {SEED}, offset {offset} ({case.how}): {case.value!r:.200}"
    assert rows is not None and len(rows) == 1, f"{where}: rows {rows}"
    table, row = rows[0]
    if table == "events":
        assert case.expect in (None, "event"), (
            f"{where}: stored as an event, expected {case.expect}"
        )
        assert row["device_id"].encode() == case.key, where
        assert TOPICS[row["kind"]] == case.topic, where
        return "event"
    if table == "checkpoints":  # a valid checkpoint: the events topic carries those too
        assert case.expect in (None, "event"), f"{where}: a checkpoint, expected {case.expect}"
        assert row["device_id"].encode() == case.key, where
        return "checkpoint"
    assert case.expect != "event", f"{where}: a valid event became a dead letter: {row['detail']}"
    assert row["reason"] in DEAD_LETTER_REASONS, f"{where}: unknown reason {row['reason']}"
    assert case.expect in (None, row["reason"]), f"{where}: {row['reason']}, not {case.expect}"
    assert row["raw"] == (case.value or b""), where
    assert row["message_key"] == case.key, where
    return row["reason"]


def check_anchors(batch: Batch, events_seen: set[tuple[str, int, int]]) -> None:
    """Every violation sits at an event that was stored, never at a dead letter."""
    for row in batch.rows["violations"]:
        position = (row["topic"], row["partition"], row["offset"])
        assert position == NO_EVENT or position in events_seen, row


def test_every_generated_input_ends_as_exactly_one_row() -> None:
    steps, handed = make_steps()
    inputs = Inputs(random.Random(SEED))
    offsets = itertools.count()
    events_seen: set[tuple[str, int, int]] = set()
    outcomes: Counter[str] = Counter()
    violations = 0
    for first in range(0, MESSAGES, PER_BATCH):
        batch, cases = Batch(), {}
        for index in range(first, first + PER_BATCH):
            case, offset = inputs.case(index), next(offsets)
            partition = offset % PARTITIONS
            record = consumer_record(case.topic, partition, offset, case.key, case.value)
            batch.read(TopicPartition(case.topic, partition), [record])
            cases[offset] = case
        steps.submit(batch)
        if first + PER_BATCH >= MESSAGES:
            steps.join(end_of_input=True)
            batch.rows["violations"] += handed.batches[-1].rows["violations"]
        found = rows_by_offset(batch)
        extra = sorted(found.keys() - cases.keys())
        assert not extra, f"seed {SEED}: rows at offsets never fed: {extra[:5]}"
        for offset, case in cases.items():
            outcomes[check_outcome(case, offset, found.get(offset))] += 1
        violations += len(batch.rows["violations"])
        events_seen |= {
            (r["topic"], r["partition"], r["offset"])
            for events in batch.event_tables
            for r in events.select(["topic", "partition", "offset"]).to_pylist()
        }
        check_anchors(batch, events_seen)
    assert sum(outcomes.values()) == MESSAGES
    # The generator reached every corner it aims at: events and every dead-letter reason.
    assert outcomes.keys() >= DEAD_LETTER_REASONS | {"event"}, outcomes
    assert violations, "no violation at all: the rules were never exercised"


# -- arbitrary bytes and keys (hypothesis) -----------------------------------------------

VALID_MESSAGES = [codec.encode(kind, sample(kind)) for kind in KINDS]
HEADERS = [codec.MAGIC + codec.fingerprint(kind) for kind in KINDS]
KEYS = [b"dev-1", b"c-1", b"d-1", b"p-1", b""]


def flip(message: bytes, bits: list[int]) -> bytes:
    flipped = bytearray(message)
    for bit in bits:
        flipped[(bit // 8) % len(flipped)] ^= 1 << (bit % 8)
    return bytes(flipped)


values = st.one_of(
    st.none(),
    st.binary(max_size=400),
    st.builds(bytes.__add__, st.sampled_from(HEADERS), st.binary(max_size=400)),
    st.builds(flip, st.sampled_from(VALID_MESSAGES), st.lists(st.integers(0, 10**4), max_size=4)),
    st.builds(
        lambda message, cut: message[:cut], st.sampled_from(VALID_MESSAGES), st.integers(0, 400)
    ),
)
keys = st.one_of(st.none(), st.sampled_from(KEYS), st.binary(max_size=24))


@functools.cache
def shared_steps() -> DecodeStep:
    """One chain for all examples: state carried between inputs is part of what is tested."""
    return make_steps()[0]


_hypothesis_offsets = itertools.count()


@settings(max_examples=2000, deadline=None)
@given(topic=st.sampled_from(EVENT_TOPICS), key=keys, value=values)
def test_arbitrary_bytes_and_keys_end_as_exactly_one_row(
    topic: str, key: bytes | None, value: bytes | None
) -> None:
    steps, batch, offset = shared_steps(), Batch(), next(_hypothesis_offsets)
    batch.read(TopicPartition(topic, 0), [consumer_record(topic, 0, offset, key, value)])
    steps.submit(batch)
    found = rows_by_offset(batch)
    assert found.keys() == {offset}
    check_outcome(Case(topic, key, value, None, "hypothesis"), offset, found[offset])
