"""Producing a request's records to Kafka, and waiting until the broker has them all.

One idempotent producer (acks=all) for every request: a record is answered
for only once every in-sync replica has it, and the producer's own retries
cannot write it twice. Records are keyed by their device, so each device's
stream stays in order in one partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kafka.errors import KafkaError

from core.clients import KafkaConfig, kafka_producer
from core.errors import FaceauditError
from producers.gateway.devices import Device
from producers.gateway.records import Message
from schemas.topics import TOPICS

ACK_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where the broker put a record."""

    record_id: str
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.record_id, "partition": self.partition, "offset": self.offset}


class RelayError(FaceauditError):
    """The broker did not take every record of a request (HTTP 503: send them again)."""


class KafkaRelay:
    def __init__(self, kafka: KafkaConfig) -> None:
        self._producer = kafka_producer(
            kafka,
            client_id="faceaudit-gateway",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_in_flight_requests_per_connection=5,
        )

    def send(self, device: Device, messages: list[Message]) -> list[Receipt]:
        """Produce the messages in order and return their receipts once all are acknowledged."""
        key = device.device_id.encode()
        futures = [
            self._producer.send(TOPICS[m.kind], value=m.value, key=key, headers=m.headers or None)
            for m in messages
        ]
        receipts = []
        for message, future in zip(messages, futures, strict=True):
            try:
                metadata = future.get(timeout=ACK_TIMEOUT_SECONDS)
            except KafkaError as exc:
                raise RelayError(f"the broker did not take {message.record_id}: {exc}") from None
            receipts.append(Receipt(message.record_id, metadata.partition, metadata.offset))
        return receipts

    def close(self) -> None:
        self._producer.close(timeout=ACK_TIMEOUT_SECONDS)
