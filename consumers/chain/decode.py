"""The decode step: every message of the batch becomes an event or a dead letter."""

from __future__ import annotations

import hashlib

from consumers.batch import Batch, Event, Position
from consumers.chain.step import Forwarding, Step
from consumers.dead_letters import DeadLetterPolicy, dead_letter_row
from consumers.decoding import decode_message


class DecodeStep(Forwarding):
    """Decodes one message at a time; a batch-at-a-time decoder can take its place."""

    def __init__(self, next_step: Step, policy: DeadLetterPolicy, max_message_bytes: int) -> None:
        super().__init__(next_step)
        self._policy = policy
        self._max_bytes = max_message_bytes

    def submit(self, batch: Batch) -> None:
        """Decode `batch.messages` into `batch.events` and dead-letter rows; free the messages.

        Raises DeadLetterLimitExceeded (the batch goes no further) when dead
        letters pile up past the policy's limits.
        """
        for message in batch.messages:
            position = Position(message.topic, message.partition, message.offset)
            decoded = decode_message(message, self._max_bytes)
            dead = isinstance(decoded, tuple)
            self._policy.record(dead, position)
            if dead:
                batch.add_finding("dead_letters", dead_letter_row(message, *decoded), *position)
                continue
            record = decoded.record
            record["kind"] = decoded.kind
            record["payload_sha256"] = hashlib.sha256(decoded.payload).hexdigest()
            batch.events.append(Event(decoded.kind, record, position))
        batch.messages = []
        self.next_step.submit(batch)
