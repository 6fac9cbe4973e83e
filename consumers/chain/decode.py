"""The decode step: a whole batch of messages becomes Arrow tables of events, or dead letters.

One call of the native decoder (`schemas.native`) decodes every message,
checks the wire format, schema and size, and hashes each payload. What it
cannot know, that a record belongs on its topic under its key, is checked
here over the columns. The verdicts and reasons are those `decode_message`
gives one message at a time (the registry feed's decoder).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from kafka.consumer.fetcher import ConsumerRecord

from consumers import python_values
from consumers.batch import Batch, Position, ReadCheckpoint
from consumers.chain.step import Forwarding, Step
from consumers.dead_letters import DeadLetterPolicy, dead_letter_row
from consumers.event_columns import broker_times, with_positions
from schemas.native import contract_decoder
from schemas.topics import EVENT_KINDS, KEY_FIELD, TOPICS

Verdict = tuple[str, str]
"""Why a message is a dead letter: (reason, detail)."""


class DecodeStep(Forwarding):
    """Decodes each batch in one native call and checks topics and keys over the columns."""

    def __init__(self, next_step: Step, policy: DeadLetterPolicy, max_message_bytes: int) -> None:
        super().__init__(next_step)
        self._policy = policy
        self._max_bytes = max_message_bytes
        self._decoder = contract_decoder()

    def submit(self, batch: Batch) -> None:
        """Decode `batch.messages` into `batch.events` (a table per kind) and dead-letter rows.

        The messages are freed. Raises DeadLetterLimitExceeded (the batch
        goes no further) when dead letters pile up past the policy's limits.
        """
        messages = batch.messages
        batch.messages = []
        if messages:
            self._decode(messages, batch)
        self.next_step.submit(batch)

    def _decode(self, messages: list[ConsumerRecord], batch: Batch) -> None:
        tables, failures = self._decoder.decode_batch(
            [message.value for message in messages], self._max_bytes
        )
        dead: dict[int, Verdict] = {index: (reason, detail) for index, reason, detail in failures}
        topics = pa.array([message.topic for message in messages], pa.string())
        partitions = pa.array([message.partition for message in messages], pa.uint32())
        offsets = pa.array([message.offset for message in messages], pa.uint64())
        keys = pa.array([message.key for message in messages], pa.binary())
        received = broker_times(messages)
        for kind, record_batch in tables.items():
            table = pa.Table.from_batches([record_batch])
            if kind not in (*EVENT_KINDS, "checkpoint"):
                for index in table.column("message_index").to_pylist():
                    dead[index] = _wrong_topic(kind, messages[index])
                continue
            table = self._keep_placed(kind, table, topics, keys, messages, dead)
            if kind == "checkpoint":
                batch.checkpoints = _read_checkpoints(table, messages)
            elif table.num_rows:
                batch.events[kind] = with_positions(table, topics, partitions, offsets, received)
        self._dead_letters(messages, dead, batch)

    @staticmethod
    def _keep_placed(
        kind: str,
        table: pa.Table,
        topics: pa.Array,
        keys: pa.Array,
        messages: list[ConsumerRecord],
        dead: dict[int, Verdict],
    ) -> pa.Table:
        """The rows on their kind's topic under their key; the others become dead letters."""
        index = table.column("message_index")
        on_topic = pc.equal(pc.take(topics, index), TOPICS[kind])
        field_name = KEY_FIELD[kind]
        key_fits = pc.equal(
            pc.take(keys, index), pc.cast(table.column(field_name), pa.binary())
        ).fill_null(False)
        placed = pc.and_(on_topic, key_fits)
        if pc.all(placed).as_py():
            return table
        misplaced = pc.invert(placed)
        for row, fits_topic in zip(
            table.filter(misplaced).select(["message_index", field_name]).to_pylist(),
            on_topic.filter(misplaced).to_pylist(),
            strict=True,
        ):
            message = messages[row["message_index"]]
            if not fits_topic:
                dead[row["message_index"]] = _wrong_topic(kind, message)
            else:
                key = row[field_name]
                dead[row["message_index"]] = (
                    "wrong_key",
                    f"key {message.key!r}, but the record's {field_name} is {key!r}",
                )
        return table.filter(placed)

    def _dead_letters(
        self, messages: list[ConsumerRecord], dead: dict[int, Verdict], batch: Batch
    ) -> None:
        """Count every message with the dead-letter policy, in order; keep the dead ones' bytes."""
        if not dead:
            self._policy.record_clean(len(messages))
            return
        for index, message in enumerate(messages):
            position = Position(message.topic, message.partition, message.offset)
            verdict = dead.get(index)
            self._policy.record(verdict is not None, position)
            if verdict is not None:
                batch.add_finding("dead_letters", dead_letter_row(message, *verdict), *position)


def _read_checkpoints(table: pa.Table, messages: list[ConsumerRecord]) -> list[ReadCheckpoint]:
    """The checkpoints of a batch (a few per thousand events) as records, in read order."""
    read = []
    for row in python_values.rows(table):
        message = messages[row.pop("message_index")]
        row.pop("payload_sha256", None)
        position = Position(message.topic, message.partition, message.offset)
        read.append(ReadCheckpoint(row, message.value, list(message.headers or []), position))
    return read


def _wrong_topic(kind: str, message: ConsumerRecord) -> Verdict:
    return "wrong_topic", f"a {kind} record on topic {message.topic}"
