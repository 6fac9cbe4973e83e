"""Decode a batch of faceaudit wire messages into Arrow record batches (Rust, arrow-avro)."""

from collections.abc import Mapping, Sequence

import pyarrow

class Decoder:
    """A decoder for the record kinds of one contract, built once and used for every batch."""

    def __init__(
        self,
        schemas: Mapping[str, str],
        non_negative: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``schemas``: each kind's writer schema (Avro JSON); ``non_negative``: per kind,
        the int/long fields that must not be negative. Raises ValueError for a schema
        the decoder does not support."""

    @property
    def fingerprints(self) -> dict[str, bytes]:
        """Each kind's fingerprint: the 8 header bytes after ``C3 01``."""

    def decode_batch(
        self, messages: Sequence[bytes | None], max_message_bytes: int
    ) -> tuple[dict[str, pyarrow.RecordBatch], list[tuple[int, str, str]]]:
        """One record batch per kind present (every field of the record, then
        ``message_index`` and ``payload_sha256``, the latter nullable) and
        ``(message_index, reason, detail)`` for each message refused; the GIL is
        released while decoding."""
