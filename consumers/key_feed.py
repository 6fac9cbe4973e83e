"""The keys topic, read in full into a key ring: what the validator checks signatures with.

The operator registers a key before its owner signs with it, but the keys
topic and the registry topics are read by separate fetches, so a record can
arrive before its key is read. A record naming a key not yet known therefore
makes the feed read the keys topic to its end before the record is judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka import TopicPartition

from consumers.keyring import KeyRing, Refusal
from core.clients import KafkaConfig, kafka_consumer
from core.errors import FaceauditError
from schemas import codec, signatures
from schemas.signatures import Signature
from schemas.topics import KEYS_TOPIC

log = logging.getLogger(__name__)

Headers = Iterable[tuple[str, bytes | None]] | None
SignedMessage = tuple[str, Mapping[str, Any], bytes | None, Headers]
"""A signed kind's message: its kind, its decoded record, its value and its headers."""


class KeyFeed:
    """Keeps a `KeyRing` as current as the keys topic."""

    def __init__(self, kafka: KafkaConfig, keyring: KeyRing, **kafka_config: object) -> None:
        self.keyring = keyring
        self._consumer = kafka_consumer(
            kafka,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="faceaudit-keys",
            **kafka_config,
        )
        self._partitions = [
            TopicPartition(KEYS_TOPIC, p)
            for p in sorted(self._consumer.partitions_for_topic(KEYS_TOPIC) or ())
        ]
        if not self._partitions:
            raise FaceauditError(f"topic {KEYS_TOPIC} does not exist: run faceaudit topics create")
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_beginning(*self._partitions)

    def read_to_end(self, timeout: float = 30.0) -> None:
        """Apply every key record up to the topic's end as of now."""
        ends = self._consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + timeout
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{KEYS_TOPIC} not read to its end within {timeout} s")
            self.poll(timeout_ms=200)

    def poll(self, timeout_ms: int = 0) -> None:
        """Apply the key records that have arrived."""
        for messages in self._consumer.poll(timeout_ms=timeout_ms).values():
            for message in messages:
                self._apply(message.value, f"{KEYS_TOPIC}[{message.partition}]@{message.offset}")

    def refusals(self, messages: Sequence[SignedMessage]) -> list[Refusal | None]:
        """Why each signed kind's message (its value and headers) does not count, in order
        (None where it does); the signatures are verified together.

        A key id not known yet makes the feed read the keys topic to its end first.
        """
        parsed = [signatures.from_headers(headers) for *_, headers in messages]
        if any(isinstance(s, Signature) and s.key_id not in self.keyring for s in parsed):
            self.read_to_end()  # a key registered just before the records it signs
        verdicts = self.keyring.refusals(
            [
                (kind, record, value or b"", None if isinstance(signature, str) else signature)
                for (kind, record, value, _), signature in zip(messages, parsed, strict=True)
            ]
        )
        return [
            Refusal("bad_signature", signature, None) if isinstance(signature, str) else verdict
            for signature, verdict in zip(parsed, verdicts, strict=True)
        ]

    def _apply(self, value: bytes | None, where: str) -> None:
        try:
            decoded = codec.decode(value)
        except codec.DecodeError as exc:
            log.warning("%s is not a key record and was skipped: %s", where, exc)
            return
        if decoded.kind != "key":
            log.warning("%s is a %s record, not a key record, and was skipped", where, decoded.kind)
            return
        self.keyring.add(decoded.record)

    def close(self) -> None:
        self._consumer.close(autocommit=False)
