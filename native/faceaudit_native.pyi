"""Decode faceaudit wire messages, Avro container files and JSON lines into Arrow record batches
(Rust, arrow-avro)."""

from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from typing import Literal

import pyarrow

class Decoder:
    """A decoder for the record kinds of one contract, built once and used for every batch."""

    def __init__(
        self,
        schemas: Mapping[str, str],
        non_negative: Mapping[str, Sequence[str]] | None = None,
        region_codes: Mapping[str, str] | None = None,
        provinces: Sequence[str] = (),
    ) -> None:
        """``schemas``: each kind's writer schema (Avro JSON); ``non_negative``: per kind,
        the int/long fields that must not be negative; ``region_codes``: per kind, the
        string field holding a region code, six digits starting with one of the
        two-digit ``provinces``. Raises ValueError for a schema the decoder does not
        support."""

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

class Container:
    """An Avro object container file of one kind, read in batches of its good records.

    Blocks and records are read as fastavro reads them, and each record is
    checked as ``schemas.codec.encode_payload`` checks it. Batches have the
    columns of ``Decoder.decode_batch``; ``message_index`` is the record's
    number in the file (from 1) and ``payload_sha256`` the SHA-256 of its plain
    re-encoding (null unless ``hashed``). The GIL is released while reading.
    """

    def __init__(
        self,
        decoder: Decoder,
        source: str | PathLike[str] | bytes,
        kind: str,
        batch_rows: int,
        hashed: bool,
    ) -> None:
        """Open ``source`` (a path, or the file's bytes) and read its header. ValueError
        if its writer schema is not ``decoder``'s schema of ``kind`` or its codec is
        neither null nor deflate; OSError if the file cannot be opened."""

    @property
    def codec(self) -> Literal["null", "deflate"]: ...
    @property
    def header_len(self) -> int:
        """Where the first block starts."""

    def __iter__(
        self,
    ) -> Iterator[
        tuple[pyarrow.RecordBatch | None, list[tuple[int, Literal["invalid", "undecodable"], str]]]
    ]: ...
    def __next__(
        self,
    ) -> tuple[
        pyarrow.RecordBatch | None, list[tuple[int, Literal["invalid", "undecodable"], str]]
    ]:
        """Up to ``batch_rows`` good records (None if there are none) and
        ``(record number, verdict, detail)`` for each bad record before them:
        ``invalid`` records are skipped (``detail`` is the codec's message),
        an ``undecodable`` one ends the file."""

class JsonLines:
    """A JSON-lines input read in chunks of lines into batches of the kinds named.

    A line is taken only when ``orjson.loads`` and ``schemas.codec.from_json``
    would accept it and read the same values; every other line (of another
    kind, bad, or one it is unsure of) is handed back for the caller to judge.
    Blank lines are skipped. Batches have the columns of ``Decoder.decode_batch``;
    ``message_index`` is the line number (from 1) and ``payload_sha256`` null.
    The GIL is released while reading.
    """

    def __init__(
        self,
        decoder: Decoder,
        kinds: Sequence[str],
        source: str | PathLike[str] | bytes,
        chunk_bytes: int,
    ) -> None:
        """Read ``source`` (a path, or the input's bytes) about ``chunk_bytes`` of lines at
        a time. ValueError for a kind ``decoder`` does not know; OSError if the file
        cannot be opened."""

    def __iter__(
        self,
    ) -> Iterator[tuple[dict[str, pyarrow.RecordBatch], list[tuple[int, bytes]]]]: ...
    def __next__(self) -> tuple[dict[str, pyarrow.RecordBatch], list[tuple[int, bytes]]]:
        """A batch per kind of the lines taken from the next chunk, and
        ``(line number, line)`` for each line handed back (newline included)."""

def row_hashes(batch: pyarrow.RecordBatch) -> bytes:
    """The SHA-256 of each row, 32 bytes each, in row order. Columns must be ``int64``,
    ``timestamp[us]``, ``float64``, ``bool``, ``string``, ``binary`` or ``list<string>``
    (ValueError otherwise); the GIL is released while hashing."""

def merkle_root(leaves: bytes, *, sort: bool = False) -> bytes:
    """RFC 6962's Merkle tree hash of ``leaves`` (32 bytes each, concatenated): in the order
    given, or with ``sort`` in byte order."""

def verify_ed25519(signed: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Whether each ``(public_key, message, signature)`` verifies (Ed25519, RFC 8032, as
    ``cryptography`` checks one), in order; a key or signature of the wrong length is
    False. Checked on the cores there are, with the GIL released."""

def lines_holding(
    source: str | PathLike[str] | bytes, markers: Sequence[bytes], *, block_bytes: int = ...
) -> list[bytes]:
    """The lines of ``source`` (a path, or the input's bytes) that hold any of ``markers``,
    in order, each once, with its newline; read ``block_bytes`` at a time (1 MiB) with
    the GIL released. OSError if the file cannot be read; ValueError for an empty marker
    or block size."""
