"""Decode one Kafka message, or say why it is a dead letter.

Used for every topic the validator reads, so the event topics and the
registry topics apply the same checks: size, wire format, schema, and that
the record belongs on its topic under its key.
"""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from schemas import codec
from schemas.topics import KEY_FIELD, TOPICS


def decode_message(message: ConsumerRecord, max_bytes: int) -> codec.Decoded | tuple[str, str]:
    """The decoded record, or (reason, detail) of why the message is a dead letter."""
    value = message.value
    if value is not None and len(value) > max_bytes:
        return "oversized", f"{len(value)} bytes, more than the {max_bytes} allowed"
    try:
        decoded = codec.decode(value)
    except codec.DecodeError as exc:
        return exc.reason, exc.detail
    if TOPICS.get(decoded.kind) != message.topic:
        return "wrong_topic", f"a {decoded.kind} record on topic {message.topic}"
    field_name = KEY_FIELD[decoded.kind]
    key = decoded.record[field_name]
    if message.key != key.encode():
        return "wrong_key", f"key {message.key!r}, but the record's {field_name} is {key!r}"
    return decoded
