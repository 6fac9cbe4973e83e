"""The camera-side SDK: chained, framed, durable sends of audit events to Kafka.

Every device numbers its events (``device_seq``) and links each to the previous
one by hash (``prev_hash`` = SHA-256 of the previous event's Avro payload), so
the audit side can prove that nothing was dropped, inserted or altered between
the camera and the log (AUDIT-SEQ-GAP, AUDIT-CHAIN-BREAK in rules.md).  That
proof only holds if the producer itself is honest about failures, hence:

- the Kafka producer is idempotent with ``acks="all"``, so retries never
  duplicate or reorder a device's events within its partition;
- events are keyed by ``device_id``, so one device's chain lives in one
  partition and keeps its order;
- a device's chain advances only once its event is encoded and handed to
  Kafka, so a record the codec rejects does not leave a hole in the chain;
- every failed delivery is counted and :meth:`EventProducer.flush` raises
  :class:`ProducerError`; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from core.clients import KafkaConfig, kafka_producer
from core.delivery import DeliveryFailures, describe_failure
from core.errors import FaceauditError
from producers import checkpointing
from schemas import codec
from schemas.signatures import PROCESSOR_SIGNED_KINDS, Signer
from schemas.topics import EVENT_KINDS, KEY_FIELD, TOPICS

T = TypeVar("T")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Java's default: retry until delivery_timeout_ms runs out rather than after N attempts.
_RETRIES = 2_147_483_647
# The most in-flight requests idempotence allows while still guaranteeing order.
_MAX_IN_FLIGHT = 5


class ProducerError(FaceauditError):
    """One or more sends failed; ``failed`` counts them, ``first_error`` is the earliest.

    With the producer's `kafka` config, a refusal (login, ACL) is told as one:
    who was refused to write what.
    """

    def __init__(
        self, failed: int, first_error: BaseException, kafka: KafkaConfig | None = None
    ) -> None:
        first = describe_failure(kafka, first_error) if kafka else repr(first_error)
        super().__init__(f"{failed} send(s) to Kafka failed; first error: {first}")
        self.failed = failed
        self.first_error = first_error


@dataclass
class DeviceChain:
    """Where one device's event chain stands: the next ``device_seq`` and the last payload hash."""

    next_seq: int = 0
    last_payload_sha256: str | None = None

    def stamp(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``record`` carrying this chain's next ``device_seq`` and ``prev_hash``."""
        return {**record, "device_seq": self.next_seq, "prev_hash": self.last_payload_sha256}

    def advance(self, payload: bytes) -> None:
        """Record that the event with ``payload`` (Avro body, no header) was emitted."""
        self.next_seq += 1
        self.last_payload_sha256 = hashlib.sha256(payload).hexdigest()


class DeviceChains:
    """The chains of all devices one producer speaks for.

    Stamping, encoding, handing over to Kafka and advancing happen under one
    lock, so two threads sending for the same device cannot hand Kafka events
    in an order other than their chain order.
    """

    def __init__(self) -> None:
        self._chains: dict[str, DeviceChain] = {}
        self._lock = threading.Lock()

    def resume(self, device_id: str, next_seq: int, last_hash: str | None) -> None:
        """Continue a device's chain after a restart from its persisted state.

        ``last_hash`` must be the hex SHA-256 of the last emitted payload, and
        None exactly when nothing was emitted yet (``next_seq == 0``): any other
        combination would start the device with a broken chain.
        """
        if next_seq < 0:
            raise ValueError(f"next_seq must be >= 0, got {next_seq}")
        if (next_seq == 0) != (last_hash is None):
            raise ValueError("last_hash must be None exactly when next_seq is 0")
        if last_hash is not None and not _SHA256_HEX.fullmatch(last_hash):
            raise ValueError(f"last_hash is not a lowercase hex SHA-256: {last_hash!r}")
        with self._lock:
            self._chains[device_id] = DeviceChain(next_seq, last_hash)

    def state(self, device_id: str) -> DeviceChain:
        """A copy of the device's chain state (a fresh chain if it never sent), e.g. to persist."""
        with self._lock:
            return replace(self._chains.get(device_id, DeviceChain()))

    def append(self, kind: str, record: Mapping[str, Any], deliver: Callable[[str, bytes], T]) -> T:
        """Stamp and encode ``record``, pass ``(device_id, message)`` to ``deliver``, advance.

        If encoding raises :class:`schemas.codec.EncodeError` or ``deliver``
        raises, the chain is left as it was and the exception propagates.
        """
        device_id = _device_id(kind, record)
        with self._lock:
            chain = self._chains.get(device_id) or DeviceChain()
            payload = codec.encode_payload(kind, chain.stamp(record))
            result = deliver(device_id, codec.frame(kind, payload))
            chain.advance(payload)
            self._chains[device_id] = chain
            return result


class EventProducer:
    """Sends audit events and registry records to Kafka for a fleet of devices.

    Thread-safe.  Use as a context manager, or call :meth:`close`; both flush
    and raise :class:`ProducerError` if any send failed.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        client_id: str = "faceaudit-producer",
        linger_ms: int = 5,
        signers: Mapping[str, Signer] | None = None,
        checkpoint_every: int | None = checkpointing.EVERY,
        checkpoint_interval: timedelta = checkpointing.INTERVAL,
        **kafka_overrides: Any,
    ) -> None:
        """Raises FaceauditError if no broker answers; `kafka_overrides` are kafka-python's.

        `signers`: the signing key of each processor whose registry records
        and checkpoints this producer signs, by processor_id. A device of such
        a processor gets a checkpoint after every `checkpoint_every` events,
        after an event `checkpoint_interval` of event time past the first one
        not yet covered, and at `close` (half the audit's window each, so
        AUDIT-UNCHECKPOINTED stays quiet); `checkpoint_every=None` leaves
        checkpoints to the caller (devices that sign their own).
        """
        options: dict[str, Any] = {
            "client_id": client_id,
            "linger_ms": linger_ms,
            "acks": "all",
            "enable_idempotence": True,
            "retries": _RETRIES,
            "max_in_flight_requests_per_connection": _MAX_IN_FLIGHT,
            **kafka_overrides,
        }
        self._kafka = kafka
        self._producer = kafka_producer(kafka, **options)
        self._chains = DeviceChains()
        self._signers = {} if signers is None else signers
        self._schedule = (
            None
            if checkpoint_every is None
            else checkpointing.CheckpointSchedule(checkpoint_every, checkpoint_interval)
        )
        self._failures = DeliveryFailures()
        self._closed = False

    def send_event(self, kind: str, record: Mapping[str, Any]) -> FutureRecordMetadata:
        """Chain, encode and send a ``capture`` or ``match`` event, keyed by its device.

        ``device_seq`` and ``prev_hash`` are set here; values in ``record`` are
        overridden.  Raises EncodeError (chain untouched) for an invalid record
        and ProducerError if Kafka refuses the send at once.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"send_event takes one of {EVENT_KINDS}, not {kind!r}")
        topic = TOPICS[kind]
        future = self._chains.append(
            kind, record, lambda device_id, message: self._send(topic, message, device_id.encode())
        )
        processor_id, schedule = record["processor_id"], self._schedule
        if (
            schedule is not None
            and processor_id in self._signers
            and schedule.sent(processor_id, record["device_id"], record["event_time"])
        ):
            self.send_checkpoint(record["device_id"], processor_id)
        return future

    def leave_checkpoints_to(self, device_id: str) -> None:
        """Checkpoint `device_id` no more, not even at `close`: from now on it signs its own
        checkpoints, with a device key. Send one first (`send_checkpoint`) to cover its events
        so far."""
        if self._schedule is not None:
            self._schedule.leave(device_id)

    def checkpoint_all(self) -> None:
        """Checkpoint every device with events no checkpoint covers yet (of those counted)."""
        pending = {} if self._schedule is None else self._schedule.take_pending()
        for device_id, processor_id in pending.items():
            self.send_checkpoint(device_id, processor_id)

    def send_registry(
        self, kind: str, record: Mapping[str, Any], *, signed: bool = True
    ) -> FutureRecordMetadata:
        """Encode, sign and send a consent, deployment or deletion record, keyed per KEY_FIELD.

        Signed with its processor's key; FaceauditError if this producer has
        none, unless ``signed=False`` asks for an unsigned record (which an
        audit that checks signatures refuses: REG-UNSIGNED-RECORD).
        """
        if kind not in PROCESSOR_SIGNED_KINDS:
            raise ValueError(f"send_registry takes one of {PROCESSOR_SIGNED_KINDS}, not {kind!r}")
        signer = self._signer(record["processor_id"]) if signed else None
        return self.send_signed(kind, record, signer)

    def send_checkpoint(self, device_id: str, processor_id: str) -> FutureRecordMetadata:
        """Sign and send a checkpoint of the device's chain head: its last event so far.

        Signed with the processor's key, in the device's stream after that
        event; FaceauditError if the device sent nothing yet or the processor
        has no key here.
        """
        head = self._chains.state(device_id)
        if head.last_payload_sha256 is None:
            raise FaceauditError(f"device {device_id!r} sent no event yet: nothing to checkpoint")
        signer = self._signer(processor_id)
        record = checkpointing.checkpoint_record(
            processor_id, device_id, head.next_seq - 1, head.last_payload_sha256, datetime.now(UTC)
        )
        return self.send_signed("checkpoint", record, signer)

    def send_signed(
        self, kind: str, record: Mapping[str, Any], signer: Signer | None
    ) -> FutureRecordMetadata:
        """Encode a record, sign its message with `signer` (None: unsigned) and send it to
        its kind's topic, keyed per KEY_FIELD. Nothing is chained: for registry records and
        checkpoints, whoever the signer is."""
        message = codec.encode(kind, record)
        headers = None if signer is None else signer.sign(message).headers()
        return self._send(TOPICS[kind], message, str(record[KEY_FIELD[kind]]).encode(), headers)

    def _signer(self, processor_id: str) -> Signer:
        signer = self._signers.get(processor_id)
        if signer is None:
            raise FaceauditError(
                f"no signing key for processor {processor_id!r}: register one "
                "(faceaudit keys generate --owner processor) and give it to the producer"
            )
        return signer

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> FutureRecordMetadata:
        """Send bytes as they are (dead-letter replay, tests); failures tracked like any send."""
        return self._send(topic, value, key)

    def resume(self, device_id: str, next_seq: int, last_hash: str | None) -> None:
        """Continue ``device_id``'s chain from persisted state; see :meth:`DeviceChains.resume`."""
        self._chains.resume(device_id, next_seq, last_hash)

    def chain(self, device_id: str) -> DeviceChain:
        """A copy of ``device_id``'s chain state, to persist before shutdown."""
        return self._chains.state(device_id)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every send so far completed; raise ProducerError if any failed.

        Each failure is reported once: a later flush only reports newer ones.
        """
        self._producer.flush(timeout=timeout)
        failed, first = self._failures.take()
        if first is not None:
            raise ProducerError(failed, first, self._kafka)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then close the Kafka producer even if the flush raised."""
        if self._closed:
            return
        self._closed = True
        try:
            self.checkpoint_all()
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FutureRecordMetadata:
        """Hand one message to Kafka and watch its delivery.

        Errors Kafka raises at once (no metadata for the topic within
        ``max_block_ms``, a record over ``max_request_size``, a closed
        producer) become ProducerError right here, so the caller never
        mistakes an unsent event for a sent one.
        """
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            raise ProducerError(1, exc, self._kafka) from exc
        future.add_errback(self._failures.record)
        return future


def _device_id(kind: str, record: Mapping[str, Any]) -> str:
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise codec.EncodeError(f"{kind} record has no device_id")
    return device_id
