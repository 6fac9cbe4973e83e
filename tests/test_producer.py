"""The producer SDK: pseudonymous subject refs, the per-device chain, and real sends to Kafka."""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from typing import Any

import pytest
from helpers import kafka_as
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from samples import sample
from signing import TEST_SIGNERS

from core.clients import kafka_consumer
from producers.checkpointing import CheckpointSchedule
from producers.event_producer import DeviceChain, DeviceChains, EventProducer, ProducerError
from producers.subject import subject_ref
from schemas import codec
from schemas.topics import EVENTS_TOPIC, TOPICS

KEY = b"k" * 32


def _event(kind: str, device_id: str, **overrides: Any) -> dict[str, Any]:
    """A sample event as a device hands it to the SDK: no device_seq, no prev_hash."""
    record = sample(kind, device_id=device_id, event_id=str(uuid.uuid4()), **overrides)
    del record["device_seq"], record["prev_hash"]
    return record


class _Collector:
    """A ``deliver`` callback that keeps what would have gone to Kafka."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, device_id: str, message: bytes) -> int:
        self.messages.append((device_id, message))
        return len(self.messages)

    def decoded(self, device_id: str) -> list[codec.Decoded]:
        return [codec.decode(message) for key, message in self.messages if key == device_id]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------- subject_ref


def test_subject_ref_is_deterministic_hex_sha256() -> None:
    ref = subject_ref(KEY, "member-000001")
    assert ref == subject_ref(KEY, "member-000001")
    assert len(ref) == 64 and int(ref, 16) >= 0


def test_subject_ref_depends_on_key_and_id() -> None:
    ref = subject_ref(KEY, "member-000001")
    assert ref != subject_ref(b"other key", "member-000001")
    assert ref != subject_ref(KEY, "member-000002")
    # Keyed: not the plain hash anyone could recompute from a guessed id.
    assert ref != _sha256(b"member-000001")


def test_subject_ref_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="key"):
        subject_ref(b"", "member-000001")


# -------------------------------------------------------------- DeviceChains


def test_first_event_of_a_device_has_seq_0_and_no_prev_hash() -> None:
    chains, out = DeviceChains(), _Collector()
    chains.append("capture", _event("capture", "dev-a"), out)
    (first,) = out.decoded("dev-a")
    assert first.record["device_seq"] == 0
    assert first.record["prev_hash"] is None


def test_prev_hash_is_sha256_of_the_previous_payload_across_kinds() -> None:
    chains, out = DeviceChains(), _Collector()
    for kind in ("capture", "match", "capture", "match"):
        chains.append(kind, _event(kind, "dev-a"), out)
    events = out.decoded("dev-a")
    assert [e.record["device_seq"] for e in events] == [0, 1, 2, 3]
    for previous, current in itertools.pairwise(events):
        assert current.record["prev_hash"] == _sha256(previous.payload)
    assert chains.state("dev-a") == DeviceChain(4, _sha256(events[-1].payload))


def test_devices_have_independent_chains() -> None:
    chains, out = DeviceChains(), _Collector()
    for device_id in ("dev-a", "dev-b", "dev-a", "dev-a", "dev-b"):
        chains.append("capture", _event("capture", device_id), out)
    assert [e.record["device_seq"] for e in out.decoded("dev-a")] == [0, 1, 2]
    assert [e.record["device_seq"] for e in out.decoded("dev-b")] == [0, 1]
    assert out.decoded("dev-b")[0].record["prev_hash"] is None


def test_sdk_overrides_caller_seq_and_hash_and_leaves_the_record_alone() -> None:
    chains, out = DeviceChains(), _Collector()
    record = sample("capture", device_id="dev-a", device_seq=41, prev_hash="f" * 64)
    chains.append("capture", record, out)
    (event,) = out.decoded("dev-a")
    assert (event.record["device_seq"], event.record["prev_hash"]) == (0, None)
    assert (record["device_seq"], record["prev_hash"]) == (41, "f" * 64)


def test_encode_error_leaves_the_chain_untouched() -> None:
    chains, out = DeviceChains(), _Collector()
    chains.append("capture", _event("capture", "dev-a"), out)
    before = chains.state("dev-a")
    with pytest.raises(codec.EncodeError):
        chains.append("capture", _event("capture", "dev-a", purpose="surveillance"), out)
    assert chains.state("dev-a") == before
    chains.append("match", _event("match", "dev-a"), out)
    first, second = out.decoded("dev-a")
    assert second.record["device_seq"] == 1
    assert second.record["prev_hash"] == _sha256(first.payload)


def test_encode_error_on_a_new_device_creates_no_chain() -> None:
    chains, out = DeviceChains(), _Collector()
    with pytest.raises(codec.EncodeError):
        chains.append("capture", _event("capture", "dev-a", retention_days=-1), out)
    chains.append("capture", _event("capture", "dev-a"), out)
    assert out.decoded("dev-a")[0].record["device_seq"] == 0


def test_a_record_without_device_id_is_an_encode_error() -> None:
    record = _event("capture", "dev-a")
    del record["device_id"]
    with pytest.raises(codec.EncodeError, match="device_id"):
        DeviceChains().append("capture", record, _Collector())


def test_failed_delivery_leaves_the_chain_untouched() -> None:
    chains = DeviceChains()

    def refuse(device_id: str, message: bytes) -> None:
        raise ProducerError(1, RuntimeError("broker gone"))

    with pytest.raises(ProducerError):
        chains.append("capture", _event("capture", "dev-a"), refuse)
    assert chains.state("dev-a") == DeviceChain()


def test_resume_continues_a_chain_after_restart() -> None:
    last_hash = _sha256(b"payload of event 6")
    chains, out = DeviceChains(), _Collector()
    chains.resume("dev-a", 7, last_hash)
    chains.append("capture", _event("capture", "dev-a"), out)
    (event,) = out.decoded("dev-a")
    assert (event.record["device_seq"], event.record["prev_hash"]) == (7, last_hash)


@pytest.mark.parametrize(
    ("next_seq", "last_hash"),
    [(-1, None), (0, "a" * 64), (3, None), (3, "not-a-hash"), (3, "A" * 64)],
)
def test_resume_refuses_a_state_that_would_break_the_chain(
    next_seq: int, last_hash: str | None
) -> None:
    with pytest.raises(ValueError):
        DeviceChains().resume("dev-a", next_seq, last_hash)


def test_a_device_left_to_sign_its_own_checkpoints_is_due_none() -> None:
    schedule = CheckpointSchedule(every=2)
    t = sample("capture")["event_time"]
    assert [schedule.sent("p-1", "dev-1", t) for _ in range(2)] == [False, True]
    schedule.sent("p-1", "dev-1", t)
    schedule.leave("dev-1")
    assert [schedule.sent("p-1", "dev-1", t) for _ in range(4)] == [False] * 4
    assert schedule.sent("p-1", "dev-2", t) is False and schedule.take_pending() == {"dev-2": "p-1"}


def test_producer_error_names_the_count_and_first_error() -> None:
    error = ProducerError(3, MessageSizeTooLargeError("too big"))
    assert "3 send(s)" in str(error) and "too big" in str(error)
    assert error.failed == 3


# ------------------------------------------------------ against a real broker


def _consume(bootstrap: str, group: str, device_ids: set[str], expected: int) -> list[Any]:
    """Read the event topics from the beginning until ``expected`` messages of ``device_ids``."""
    consumer = kafka_consumer(
        kafka_as("validator"),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumer.subscribe([EVENTS_TOPIC])
    found: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                found += [m for m in batch if m.key and m.key.decode() in device_ids]
    finally:
        consumer.close()
    return found


def test_events_arrive_keyed_by_device_in_chain_order(
    kafka_bootstrap: str, unique_group: str
) -> None:
    devices = [f"dev-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    kinds = ("capture", "match", "capture", "capture", "match")
    with EventProducer(kafka_as("producer")) as producer:
        futures = [
            producer.send_event(kind, _event(kind, device_id))
            for kind in kinds
            for device_id in devices
        ]
    assert all(future.succeeded() for future in futures)

    messages = _consume(kafka_bootstrap, unique_group, set(devices), len(futures))
    assert len(messages) == len(futures)
    for device_id in devices:
        mine = [m for m in messages if m.key == device_id.encode()]
        assert {m.topic for m in mine} == {EVENTS_TOPIC}
        assert len({m.partition for m in mine}) == 1, f"{device_id} spread over partitions"
        # One topic, one partition: the offsets give the device's own order.
        chain = [codec.decode(m.value) for m in sorted(mine, key=lambda m: m.offset)]
        assert [d.record["device_seq"] for d in chain] == list(range(len(kinds)))
        assert [d.kind for d in chain] == list(kinds)
        assert [d.kind for d in chain] == list(kinds)
        assert chain[0].record["prev_hash"] is None
        for previous, current in itertools.pairwise(chain):
            assert current.record["prev_hash"] == _sha256(previous.payload)


def test_registry_records_are_keyed_by_their_key_field(
    kafka_bootstrap: str, unique_group: str
) -> None:
    consent_id = f"c-{uuid.uuid4()}"
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        metadata = producer.send_registry("consent", sample("consent", consent_id=consent_id))
    consumer = kafka_consumer(kafka_as("validator"), group_id=unique_group)
    try:
        record = metadata.get(timeout=10)
        tp = TopicPartition(record.topic, record.partition)
        consumer.assign([tp])
        consumer.seek(tp, record.offset)
        (message,) = consumer.poll(timeout_ms=10_000, max_records=1)[tp]
    finally:
        consumer.close()
    assert message.key == consent_id.encode()
    assert codec.decode(message.value).record["consent_id"] == consent_id


def test_flush_raises_when_the_broker_rejects_a_send(kafka_bootstrap: str) -> None:
    # The test broker accepts messages up to 12 MiB; the client is allowed to try more.
    too_big = b"\0" * (13 * 1024 * 1024)
    producer = EventProducer(kafka_as("producer"), max_request_size=32 * 1024 * 1024)
    try:
        future = producer.send_raw(TOPICS["capture"], too_big, key=b"dev-oversized")
        with pytest.raises(ProducerError) as raised:
            producer.flush(timeout=60)
        assert raised.value.failed == 1
        assert isinstance(raised.value.first_error, MessageSizeTooLargeError)
        assert future.failed()
        producer.flush(timeout=60)  # each failure is reported once
    finally:
        producer.close()


def test_send_to_a_missing_topic_raises_at_once(kafka_bootstrap: str) -> None:
    # The broker does not auto-create topics, so metadata never arrives.
    with (
        EventProducer(kafka_as("admin"), max_block_ms=500) as producer,
        pytest.raises(ProducerError) as raised,
    ):
        producer.send_raw(f"faceaudit.no-such-topic-{uuid.uuid4().hex}", b"x")
    assert isinstance(raised.value.first_error, KafkaTimeoutError)


def test_close_raises_for_failures_not_yet_flushed(kafka_bootstrap: str) -> None:
    producer = EventProducer(kafka_as("producer"), max_request_size=32 * 1024 * 1024)
    producer.send_raw(TOPICS["capture"], b"\0" * (13 * 1024 * 1024), key=b"dev-oversized")
    with pytest.raises(ProducerError):
        producer.close()
    producer.close()  # closing twice is harmless
