"""Dead letters after the fact: list them, and replay them once the cause is fixed.

The `dead_letters` table is an audit record: nothing here deletes or changes
a row. A replay re-sends each selected dead letter's original bytes, key and headers
(a signature included) to its original topic, where the validator reads it
like any new message; one
that is still bad simply becomes a dead letter again, a new row at its new
offset. Raw bytes and keys are read as bytes: a dead letter is by definition
something that may not be valid UTF-8.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka.errors import KafkaError

from consumers.dead_letters import original_headers
from core.clients import KafkaConfig, kafka_producer
from core.delivery import DeliveryFailures, describe_failure
from core.errors import FaceauditError
from schemas.ddl import DATABASE

# The broker takes up to 12 MiB (deploy/local); oversized dead letters are
# replayed as they came, and the broker, not this client, decides.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
_BYTES = {"raw": "bytes", "message_key": "bytes"}

Headers = list[tuple[str, bytes]]
Send = Callable[[str, bytes, bytes | None, Headers], object]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: every given criterion must hold (None means any)."""

    reason: str | None = None
    topic: str | None = None
    since: datetime | None = None  # received at or after; timezone-aware

    def where(self) -> tuple[str, dict[str, Any]]:
        """A SQL condition and its bound parameters (values are never spliced into SQL)."""
        conditions, params = ["1"], {}
        if self.reason is not None:
            conditions.append("reason = {reason:String}")
            params["reason"] = self.reason
        if self.topic is not None:
            conditions.append("topic = {topic:String}")
            params["topic"] = self.topic
        if self.since is not None:
            conditions.append("received_at >= {since:DateTime64(6, 'UTC')}")
            params["since"] = self.since
        return " AND ".join(conditions), params


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of `dead_letters`; `raw` is None when the listing did not ask for the bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    size: int
    reason: str
    detail: str
    received_at: datetime
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """As the table keeps them: text, the signature in base64 (`original_headers`)."""

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def key_text(self) -> str | None:
        """The key for display: keys are device or record ids, but may be any bytes."""
        return None if self.key is None else self.key.decode("utf-8", "backslashreplace")

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form: text fields as they are, the bytes in base64."""
        shown: dict[str, Any] = {
            "position": self.position,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
            "key": self.key_text,
            "size": self.size,
            "received_at": self.received_at.isoformat().replace("+00:00", "Z"),
        }
        if self.raw is not None:
            shown["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return shown


_COLUMNS = (
    "topic, partition, offset, message_key, length(raw), reason, detail, received_at, headers"
)


def list_dead_letters(
    client: Client, selection: Selection, limit: int, with_raw: bool = False
) -> list[DeadLetter]:
    """The newest `limit` selected dead letters, newest first."""
    where, params = selection.where()
    result = client.query(
        f"SELECT {_COLUMNS}{', raw' if with_raw else ''} FROM {DATABASE}.dead_letters "
        f"WHERE {where} ORDER BY received_at DESC, topic, partition, offset DESC "
        "LIMIT {limit:UInt64}",
        parameters={**params, "limit": limit},
        column_formats=_BYTES,
    )
    return [_dead_letter(row) for row in result.result_rows]


def dead_letters_to_replay(client: Client, selection: Selection) -> Iterator[DeadLetter]:
    """The selected dead letters with their bytes, streamed, in their original order.

    Ordered by offset within each source partition, so a device's events go
    back in the order the device sent them. One row per source position: a
    message stored twice is still sent back once.
    """
    where, params = selection.where()
    query = (
        f"SELECT {_COLUMNS}, raw FROM {DATABASE}.dead_letters WHERE {where} "
        "ORDER BY topic, partition, offset LIMIT 1 BY topic, partition, offset"
    )
    with client.query_row_block_stream(query, parameters=params, column_formats=_BYTES) as blocks:
        for block in blocks:
            for row in block:
                yield _dead_letter(row)


def _dead_letter(row: tuple) -> DeadLetter:
    topic, partition, offset, key, size, reason, detail, received_at, headers, *raw = row
    if received_at.tzinfo is None:  # clickhouse-connect gives UTC columns as naive datetimes
        received_at = received_at.replace(tzinfo=UTC)
    return DeadLetter(
        topic,
        partition,
        offset,
        key,
        size,
        reason,
        detail,
        received_at,
        raw[0] if raw else None,
        dict(headers),
    )


def replay(letters: Iterable[DeadLetter], send: Send) -> Counter[str]:
    """Pass each dead letter's topic, bytes, key and headers to `send`; count them by topic."""
    sent: Counter[str] = Counter()
    for letter in letters:
        if letter.raw is None:
            raise ValueError(f"{letter.position} was read without its bytes; cannot replay it")
        send(letter.topic, letter.raw, letter.key, original_headers(letter.headers))
        sent[letter.topic] += 1
    return sent


def replay_to_kafka(kafka: KafkaConfig, letters: Iterable[DeadLetter]) -> Counter[str]:
    """Replay through an idempotent producer and wait until every send is acknowledged.

    Raises FaceauditError if Kafka cannot be reached or any send failed; the
    rows stay in the table either way, so the replay can be run again (what
    was already sent would then be sent twice).
    """
    producer = kafka_producer(
        kafka,
        client_id="faceaudit-replay",
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_REQUEST_BYTES,
    )
    failures = DeliveryFailures()

    def send(topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        producer.send(topic, value=value, key=key, headers=headers).add_errback(failures.record)

    sent: Counter[str] = Counter()
    try:
        sent = replay(letters, send)
    except KafkaError as exc:  # refused at once: too large, or no metadata for its topic
        failures.record(exc)
    finally:
        producer.close()  # after every send in flight is answered
    failed, first = failures.take()
    if first is not None:
        raise FaceauditError(
            f"replay incomplete: {failed} send(s) to Kafka failed; first error: "
            f"{describe_failure(kafka, first)}; "
            "the dead letters are still in the table"
        )
    return sent
