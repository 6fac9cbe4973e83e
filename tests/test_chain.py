"""Each step of the validator's chain alone, with fakes of its neighbours (no broker, no store)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from kafka.structs import TopicPartition
from samples import sample
from test_fuzz import consumer_record

from consumers.batch import NO_POSITION, Batch, now_utc
from consumers.chain.commit import CommitStep
from consumers.chain.decode import DecodeStep
from consumers.chain.gather import GatherStep
from consumers.chain.judge import EventClock, JudgeStep
from consumers.chain.publish import PublishStep
from consumers.chain.step import Collect
from consumers.chain.store import StoreStep
from consumers.checkpoints import CheckpointJudge
from consumers.dead_letters import DeadLetterLimitExceeded, DeadLetterPolicy
from consumers.event_columns import LOG_APPEND_TIME
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.processor_regions import ProcessorRegions
from consumers.published import decode_mark
from consumers.publisher import Outbox, outgoing
from consumers.read import GroupReader
from consumers.registry import Registry
from consumers.stored_tail import StoredTail
from consumers.summary import RunSummary, RunTimer
from core.errors import FaceauditError
from schemas import codec
from schemas.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, INPUT_TOPICS, VIOLATION_TOPIC

TP = TopicPartition(EVENTS_TOPIC, 0)


def event_message(offset: int, seq: int, prev_hash: str | None = None, **fields):
    record = sample(
        "capture", event_id=f"e-{offset}", device_seq=seq, prev_hash=prev_hash, **fields
    )
    return consumer_record(EVENTS_TOPIC, 0, offset, b"dev-1", codec.encode("capture", record))


def chained(*fields: dict):
    """One device's messages at offsets 0, 1, ..., each carrying its predecessor's hash."""
    messages, prev_hash = [], None
    for n, extra in enumerate(fields):
        message = event_message(n, n, prev_hash, **extra)
        messages.append(message)
        prev_hash = hashlib.sha256(message.value[codec.HEADER_SIZE :]).hexdigest()
    return messages


def read(*messages) -> Batch:
    batch = Batch()
    for message in messages:
        batch.read(TopicPartition(message.topic, message.partition), [message])
    return batch


# -- decode -------------------------------------------------------------------------


def test_decode_turns_messages_into_events_and_dead_letters() -> None:
    handed = Collect()
    step = DecodeStep(handed, DeadLetterPolicy(10, 1.0), 1 << 20)
    garbage = consumer_record(EVENTS_TOPIC, 0, 1, b"dev-1", b"\x00junk")
    step.submit(read(event_message(0, 0), garbage))
    [batch] = handed.batches
    [(kind, events)] = batch.events.items()
    [event] = events.to_pylist()
    assert (kind, event["topic"], event["partition"], event["offset"]) == (
        "capture",
        EVENTS_TOPIC,
        0,
        0,
    )
    assert len(event["payload_sha256"]) == 64
    [dead] = batch.rows["dead_letters"]
    assert (dead["offset"], dead["reason"], dead["raw"]) == (1, "bad_magic", b"\x00junk")
    assert batch.outbox["dead_letters"] == [dead]
    assert batch.messages == [], "the raw messages are freed once decoded"


def test_decode_keeps_an_event_under_another_key_as_a_dead_letter() -> None:
    handed = Collect()
    step = DecodeStep(handed, DeadLetterPolicy(10, 1.0), 1 << 20)
    good, misplaced = event_message(0, 0), event_message(1, 1)
    misplaced = misplaced._replace(key=b"dev-2")
    step.submit(read(good, misplaced))
    [batch] = handed.batches
    assert event_offsets(batch.events["capture"]) == [0]
    [dead] = batch.rows["dead_letters"]
    assert (dead["offset"], dead["reason"]) == (1, "wrong_key")
    assert "key b'dev-2', but the record's device_id is 'dev-1'" in dead["detail"]


def test_decode_keeps_a_registry_record_on_the_events_topic_as_a_dead_letter() -> None:
    handed = Collect()
    step = DecodeStep(handed, DeadLetterPolicy(10, 1.0), 1 << 20)
    consent = sample("consent")
    message = consumer_record(
        EVENTS_TOPIC, 0, 0, consent["consent_id"].encode(), codec.encode("consent", consent)
    )
    step.submit(read(message))
    [batch] = handed.batches
    assert batch.events == {}
    [dead] = batch.rows["dead_letters"]
    assert dead["reason"] == "wrong_topic"
    assert dead["detail"].endswith(f"a consent record on topic {EVENTS_TOPIC}")


def test_decode_stops_the_batch_at_the_dead_letter_limit() -> None:
    handed = Collect()
    step = DecodeStep(handed, DeadLetterPolicy(2, 1.0), 1 << 20)
    garbage = [consumer_record(EVENTS_TOPIC, 0, n, b"k", b"\x00") for n in range(2)]
    with pytest.raises(DeadLetterLimitExceeded, match="2 dead letters in a row"):
        step.submit(read(*garbage))
    assert handed.batches == []


# -- judge --------------------------------------------------------------------------


def event_offsets(table) -> list[int]:
    return table.column("offset").to_pylist()


def stored_offsets(batch: Batch) -> list[int]:
    return [offset for table in batch.event_tables for offset in event_offsets(table)]


def judge_step(
    registry: Registry, commits=None, grace: float = 30.0, clock: EventClock | None = None
) -> tuple[JudgeStep, Collect]:
    judge, handed = Judge("cac-2025", registry), Collect()
    step = JudgeStep(
        handed,
        judge,
        judge.sequence_tracker(),
        CheckpointJudge(judge, None, judge.checkpoint_tracker()),
        clock or EventClock(),
        commits or {TP: 0},
        registry_grace=grace,
        max_held=100,
        reported=set(),
        held_gauge=PipelineMetrics().held,
    )
    return step, handed


def decoded(*messages) -> Batch:
    handed = Collect()
    DecodeStep(handed, DeadLetterPolicy(10, 1.0), 1 << 20).submit(read(*messages))
    batch = handed.batches[0]
    batch.read_to = {TP: messages[-1].offset + 1}
    return batch


def full_registry() -> Registry:
    registry = Registry()
    registry.apply("deployment", sample("deployment"))
    registry.apply("consent", sample("consent"))
    return registry


def test_judge_stores_every_event_and_commits_past_it() -> None:
    step, handed = judge_step(full_registry())
    step.submit(decoded(*chained({}, {"location_type": "toilet"})))
    [batch] = handed.batches
    assert stored_offsets(batch) == [0, 1]
    assert [v["rule_id"] for v in batch.rows["violations"]] == ["FR-PRIVATE-SPACE"]
    assert batch.outbox["violations"] == batch.rows["violations"]
    assert batch.commit == {TP: 2}


def test_judge_holds_an_event_until_its_deployment_arrives_and_commits_before_it() -> None:
    registry = Registry()
    step, handed = judge_step(registry)
    step.submit(decoded(*chained({}, {})))
    assert handed.batches[-1].commit == {TP: 0}, "held at offset 0: the commit waits"
    assert handed.batches[-1].rows["violations"] == []
    assert step.held_events == 2
    registry.apply("deployment", sample("deployment"))
    registry.apply("consent", sample("consent"))
    step.submit(Batch())
    assert step.held == []
    assert handed.batches[-1].commit == {TP: 2}


def broker_stamped(message, at: datetime):
    """`message` as the events topic stamps it: with the broker's time of arrival."""
    return message._replace(timestamp=int(at.timestamp() * 1000), timestamp_type=LOG_APPEND_TIME)


def test_an_event_dated_far_after_it_arrived_is_skewed_and_moves_no_watermark() -> None:
    """One event dated 9999-12-31 must not make every withdrawn consent look overdue."""
    clock, arrived = EventClock(), sample("capture")["event_time"]
    step, handed = judge_step(full_registry(), clock=clock)
    messages = chained({}, {"event_time": datetime(9999, 12, 31, tzinfo=UTC)})
    step.submit(decoded(*(broker_stamped(message, arrived) for message in messages)))
    [batch] = handed.batches
    [skew] = batch.rows["violations"]
    assert (skew["rule_id"], skew["offset"]) == ("AUDIT-CLOCK-SKEW", 1)
    assert json.loads(skew["details"])["broker_time"] == arrived.isoformat()
    assert clock.latest == arrived, "only the event in time moved the watermark"
    [events] = batch.event_tables
    assert events.column("broker_time").to_pylist() == [arrived, arrived], "kept as evidence"


def test_an_event_its_producer_stamped_has_no_broker_time_and_is_not_judged_for_skew() -> None:
    step, handed = judge_step(full_registry())
    step.submit(decoded(*chained({}, {"event_time": datetime(9999, 12, 31, tzinfo=UTC)})))
    [batch] = handed.batches
    assert "AUDIT-CLOCK-SKEW" not in {v["rule_id"] for v in batch.rows["violations"]}
    [events] = batch.event_tables
    assert events.column("broker_time").null_count == 2


def buffer_addresses(table) -> set[int]:
    """Where every buffer of `table` lies, dictionaries and list items included."""

    def of(array) -> set[int]:
        found = {buffer.address for buffer in array.buffers() if buffer is not None}
        if pa.types.is_dictionary(array.type):
            found |= of(array.dictionary)
        if pa.types.is_list(array.type):
            found |= of(array.values)
        return found

    return {address for column in table.columns for chunk in column.chunks for address in of(chunk)}


def test_held_events_share_no_memory_with_their_decoded_batch() -> None:
    # A decoded batch stays alive as long as any of its buffers is used, so a
    # held event that kept an enum's dictionary would keep its whole batch.
    registry = Registry()
    registry.apply("consent", sample("consent"))
    step, _ = judge_step(registry)
    batch = decoded(*chained({}, {}))
    decoded_buffers = buffer_addresses(batch.events["capture"])
    step.submit(batch)
    [held] = step.held
    assert not buffer_addresses(held.tables["capture"]) & decoded_buffers


def test_judge_judges_held_events_when_the_grace_runs_out() -> None:
    step, handed = judge_step(Registry(), grace=0.0)
    step.submit(decoded(event_message(0, 0)))
    rules = {v["rule_id"] for v in handed.batches[-1].rows["violations"]}
    assert "REG-UNKNOWN-DEPLOYMENT" in rules
    assert step.held == []


def test_judge_reports_an_open_gap_only_at_the_end_of_the_input() -> None:
    step, handed = judge_step(full_registry())
    step.submit(decoded(event_message(0, 0), event_message(1, 5)))
    assert not any(
        v["rule_id"] == "AUDIT-SEQ-GAP" for b in handed.batches for v in b.rows["violations"]
    )
    step.join(end_of_input=True)
    gaps = [v for v in handed.batches[-1].rows["violations"] if v["rule_id"] == "AUDIT-SEQ-GAP"]
    assert len(gaps) == 1 and gaps[0]["offset"] == 1
    assert handed.joined == [True]


def test_closing_the_judge_drops_what_it_holds() -> None:
    step, handed = judge_step(Registry())
    step.submit(decoded(event_message(0, 0)))
    step.close()
    assert step.held == [] and handed.closed


# -- store --------------------------------------------------------------------------


class FlakyStore:
    """A store gateway whose first `failures` writes fail; keeps the tokens it was given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.written: list[tuple[str, dict]] = []

    def write(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("the store is down")
        rows = {t: list(rows) for t, rows in batch.rows.items()}
        self.written.append((batch.token, rows | {"events": stored_offsets(batch)}))


def store_step(
    store: FlakyStore, tails=None, regions: ProcessorRegions | None = None
) -> tuple[StoreStep, Collect, RunSummary]:
    handed, summary = Collect(), RunSummary()
    step = StoreStep(
        handed,
        store,
        tails or {},
        metrics=PipelineMetrics(),
        summary=summary,
        timer=RunTimer(),
        stop=threading.Event(),
        backoff_max=0.01,
        regions=regions or ProcessorRegions(),
    )
    return step, handed, summary


def judged(*messages) -> Batch:
    step, handed = judge_step(full_registry())
    step.submit(decoded(*messages))
    return handed.batches[0]


def test_store_leaves_out_what_the_store_holds_but_passes_it_on_to_publish() -> None:
    batch = judged(*chained({"location_type": "toilet"}, {}))
    stored_violation = batch.rows["violations"][0]["violation_id"]
    tail = StoredTail(events={0: payload_hash(batch, 0)}, violations=frozenset({stored_violation}))
    store = FlakyStore()
    step, handed, summary = store_step(store, {TP: tail})
    step.submit(batch)
    [(_, rows)] = store.written
    assert rows["events"] == [1]
    assert rows["violations"] == []
    assert len(handed.batches[0].outbox["violations"]) == 1, "still published"
    assert summary.events == {"capture": 1}


def test_store_gives_a_violation_with_no_event_its_processors_regions() -> None:
    """Regions known at start (the store's) and those of the events stored since."""
    batch = judged(*chained({"region_code": "310104"}, {"region_code": "440305"}))
    processor = sample("capture")["processor_id"]  # the processor of both events
    rules = Judge("cac-2025", Registry()).rules
    for owner in (processor, "processor-unseen"):
        anchor = {"processor_id": owner, "event_time": sample("capture")["event_time"]}
        details = {
            "consent_id": "c",
            "processor_id": owner,
            "subject_ref": "s",
            "withdrawn_at": "2026-01-01",
            "deadline": "2026-01-16",
        }
        violation = rules.violation("FR-DELETION-OVERDUE", anchor, details)
        batch.add_violation(violation, *NO_POSITION, now_utc())
    store = FlakyStore()
    step, _, _ = store_step(store, regions=ProcessorRegions({processor: ["110105"]}))
    step.submit(batch)
    [(_, rows)] = store.written
    regions = {
        row["processor_id"]: row.get("regions")
        for row in rows["violations"]
        if row["event_id"] is None
    }
    assert regions == {processor: ["110105", "310104", "440305"], "processor-unseen": []}
    assert all("regions" not in row for row in rows["violations"] if row["event_id"])


def payload_hash(batch: Batch, offset: int) -> str:
    """The payload SHA-256 of the batch's event at `offset`."""
    [digest] = [
        row["payload_sha256"]
        for table in batch.event_tables
        for row in table.select(["offset", "payload_sha256"]).to_pylist()
        if row["offset"] == offset
    ]
    return digest


def test_another_event_at_a_stored_offset_stops_the_store_and_writes_nothing() -> None:
    batch = judged(*chained({}, {}))
    tail = StoredTail(events={1: "0" * 64})  # what a topic created anew would show
    store = FlakyStore()
    step, handed, _ = store_step(store, {TP: tail})
    with pytest.raises(FaceauditError, match=r"another event at .*\[0\]@1 than the topic"):
        step.submit(batch)
    assert store.written == [] and handed.batches == []


def test_store_retries_a_failing_insert_with_the_same_token() -> None:
    batch = judged(event_message(0, 0))
    store = FlakyStore(failures=2)
    step, handed, _ = store_step(store)
    step.submit(batch)
    assert [token for token, _ in store.written] == [batch.token]
    assert handed.batches == [batch]


# -- publish and commit -------------------------------------------------------------


class FakePublisher:
    def __init__(self) -> None:
        self.mark = {0: 7}
        self.published: list[dict] = []

    def publish(self, due: dict) -> None:
        self.published.append(due)
        self.mark = {0: self.mark[0] + len(due["violations"])}


def test_publish_sends_findings_once_the_commit_passes_their_event() -> None:
    publisher, handed = FakePublisher(), Collect()
    step = PublishStep(handed, publisher, Outbox())
    batch = judged(event_message(0, 0, location_type="toilet"))
    batch.commit = {TP: 0}  # an earlier event is held: the commit stays behind it
    step.submit(batch)
    assert publisher.published == []
    later = Batch()
    later.commit = {TP: 1}
    step.submit(later)
    sent = [codec.decode(v.value).record for v in publisher.published[0]["violations"]]
    assert [v["rule_id"] for v in sent] == ["FR-PRIVATE-SPACE"]
    assert later.mark == {0: 8}


def test_findings_wait_as_the_messages_they_are_published_as() -> None:
    garbage = consumer_record(EVENTS_TOPIC, 0, 1, b"dev-1", b"\x00junk")
    batch = judged(event_message(0, 0, location_type="toilet"), garbage)
    messages = outgoing(batch.outbox)
    [violation] = messages["violations"]
    row = batch.outbox["violations"][0]
    assert codec.decode(violation.value).record["violation_id"] == row["violation_id"]
    assert (violation.key, violation.offset) == (row["violation_id"].encode(), 0)
    assert ("faceaudit.source.offset", b"0") in violation.headers
    [dead] = messages["dead_letters"]
    assert (dead.value, dead.key, dead.violation_id) == (b"\x00junk", b"dev-1", None)
    assert dead.offset == 1
    assert ("faceaudit.reason", b"bad_magic") in dead.headers
    assert ("source", b"fuzz") in dead.headers  # its own headers kept


def test_commit_moves_every_partition_with_the_mark_once_one_moved() -> None:
    commits: list[dict] = []
    other = TopicPartition(EVENTS_TOPIC, 1)
    step = CommitStep(lambda offsets: commits.append(offsets) or True, {TP: 5, other: 3})
    batch = Batch()
    batch.commit, batch.mark = {TP: 5, other: 3}, {0: 9}
    step.submit(batch)
    assert commits == [], "nothing moved"
    batch.commit = {TP: 6, other: 3}
    step.submit(batch)
    [offsets] = commits
    assert {tp: meta.offset for tp, meta in offsets.items()} == {TP: 6, other: 3}
    assert {decode_mark(meta.metadata)[0] for meta in offsets.values()} == {9}


def test_a_refused_commit_is_not_taken_as_done() -> None:
    attempts: list[dict] = []
    step = CommitStep(lambda offsets: attempts.append(offsets) and False, {TP: 0})
    batch = Batch()
    batch.commit = {TP: 4}
    step.submit(batch)
    step.submit(batch)
    assert len(attempts) == 2, "retried with the next batch"


def test_the_event_clock_only_moves_forward() -> None:
    clock, start = EventClock(), sample("capture")["event_time"]
    clock.advance(start)
    clock.advance(start - timedelta(days=1))
    assert clock.latest == start


# -- read -------------------------------------------------------------------------------


class FakeConsumer:
    """A group consumer that hands out scripted polls and records seeks and commits."""

    def __init__(self, polls: list[dict]) -> None:
        self.polls = polls
        self.ends: dict[TopicPartition, int] = {TP: 0}
        self.commits: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.listener = None
        self.on_poll = None

    def topics(self) -> set[str]:
        return set(INPUT_TOPICS) | {DEAD_LETTER_TOPIC, VIOLATION_TOPIC}

    def subscribe(self, topics: list[str], listener) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        if self.on_poll is not None:
            self.on_poll()
            self.on_poll = None
        return self.polls.pop(0) if self.polls else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def committed(self, tp: TopicPartition, metadata: bool = False) -> int | None:
        return self.commits.get(tp)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.ends if tp.topic == topic}

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict:
        return dict.fromkeys(partitions, 0)

    def assignment(self) -> set[TopicPartition]:
        return set()

    def end_offsets(self, partitions: list[TopicPartition]) -> dict:
        return {tp: self.ends[tp] for tp in partitions}


def messages_at(*offsets: int) -> list:
    return [consumer_record(EVENTS_TOPIC, 0, n, b"dev-1", b"x") for n in offsets]


def reader(consumer: FakeConsumer) -> GroupReader:
    return GroupReader(consumer, "test", lambda partitions, closing: None)


def test_read_fills_a_batch_up_to_its_size_and_notes_how_far_each_partition_was_read() -> None:
    consumer = FakeConsumer(
        [{TP: messages_at(0, 1)}, {TP: messages_at(2, 3)}, {TP: messages_at(4)}]
    )
    batch = reader(consumer).read(4, 5.0, threading.Event(), RunTimer())
    assert [m.offset for m in batch.messages] == [0, 1, 2, 3]
    assert batch.read_to == {TP: 4}


def test_a_process_the_group_has_not_assigned_yet_has_not_read_to_the_end() -> None:
    """--until-idle must not end a validator still waiting for its first assignment (a
    killed member's session holding the rebalance), though it owns nothing."""
    consumer = FakeConsumer([])
    read_step = reader(consumer)
    assert not read_step.read_to_the_end()
    consumer.listener.on_partitions_assigned([])  # joined, with nothing to read
    assert read_step.read_to_the_end()


def test_a_partition_another_member_owns_is_read_to_the_end_once_committed_to_it() -> None:
    """A member killed just after joining keeps its share until its session expires:
    until then no one reads it, and --until-idle must not end the run."""
    consumer = FakeConsumer([])
    consumer.ends[TP] = 10
    read_step = reader(consumer)
    consumer.listener.on_partitions_assigned([])  # the partition went to another member
    assert not read_step.read_to_the_end(), "never committed: read from the start"
    consumer.commits[TP] = 9
    assert not read_step.read_to_the_end()
    consumer.commits[TP] = 10
    assert read_step.read_to_the_end()


def test_a_partition_assigned_during_a_poll_is_read_only_once_taken_from_its_commit() -> None:
    consumer = FakeConsumer([{TP: messages_at(7, 8)}, {TP: messages_at(3, 4, 5)}])
    read_step = reader(consumer)
    consumer.on_poll = lambda: consumer.listener.on_partitions_assigned([TP])
    first = read_step.read(100, 5.0, threading.Event(), RunTimer())
    assert first.messages == [], "read from the old position: dropped"
    assert read_step.assigned
    assert read_step.take() == {TP: None}
    read_step.rewind({TP: 4})
    assert consumer.seeks == [(TP, 4)]
    again = read_step.read(100, 0.05, threading.Event(), RunTimer())
    assert [m.offset for m in again.messages] == [4, 5], "offset 3 was committed already"


def test_revoking_a_partition_mid_read_drops_what_was_read_of_it() -> None:
    revoked: list[set] = []
    consumer = FakeConsumer([{TP: messages_at(0, 1)}])
    read_step = GroupReader(
        consumer, "test", lambda partitions, closing: revoked.append(partitions)
    )
    original = consumer.poll

    def poll_then_revoke(timeout_ms: int, max_records: int) -> dict:
        polled = original(timeout_ms, max_records)
        if not polled and not revoked:
            consumer.listener.on_partitions_revoked([TP])
        return polled

    consumer.poll = poll_then_revoke
    batch = read_step.read(100, 0.05, threading.Event(), RunTimer())
    assert batch.messages == [] and batch.read_to == {}
    assert revoked == [{TP}]


# -- gather -----------------------------------------------------------------------------


def judged_part(offset: int, commit: int) -> Batch:
    """A decoded and judged batch of one message, as the judge step hands it on."""
    batch = decoded(event_message(offset, offset))
    [events] = batch.events.values()
    batch.events = {}
    batch.add_events(events)
    batch.commit = {TP: commit}
    return batch


def test_gather_hands_on_one_batch_once_it_holds_enough_messages() -> None:
    handed = Collect()
    step = GatherStep(handed, size=3, seconds=60)
    for offset in range(5):
        step.submit(judged_part(offset, offset + 1))
    [whole] = handed.batches
    assert stored_offsets(whole) == [0, 1, 2]
    assert whole.commit == {TP: 3}, "the latest part's commit covers all it gathered"
    assert whole.ranges == {TP: (0, 2)}
    step.join(end_of_input=True)
    assert stored_offsets(handed.batches[-1]) == [3, 4]
    assert handed.joined == [True]


def test_gather_hands_on_what_it_holds_once_its_window_has_passed() -> None:
    handed = Collect()
    step = GatherStep(handed, size=100, seconds=0.05)
    step.submit(judged_part(0, 1))
    step.poll()
    assert handed.batches == []
    time.sleep(0.06)
    step.poll()
    assert len(handed.batches) == 1


def test_closing_the_gather_drops_what_it_holds() -> None:
    handed = Collect()
    step = GatherStep(handed, size=100, seconds=60)
    step.submit(judged_part(0, 1))
    step.close()
    step.join(end_of_input=False)
    assert handed.batches == [] and handed.closed


def test_gather_never_joins_more_than_its_size_into_one_insert() -> None:
    handed = Collect()
    step = GatherStep(handed, size=4, seconds=60)
    for offsets in ((0, 1, 2), (3, 4), (5,)):
        part = read(*(event_message(offset, offset) for offset in offsets))
        part.messages = []
        step.submit(part)
    step.join(end_of_input=False)
    assert [batch.size for batch in handed.batches] == [3, 3]
