"""The registry as Arrow columns, for judging a whole batch of events at once.

A mirror of ``Registry``: the latest consent per consent_id and deployment
per deployment_id, kept current record by record. Records are held as given
until a batch needs them, then appended as one chunk, so a trickle of records
costs a dict set each and a registry of 100k consents is never rebuilt per
batch. A replaced record leaves a dead row behind; ``compact`` drops them now
and then, and merges small chunks so that a join touches few of them.

Joining a batch looks up each distinct id once (a dict get), takes those
rows from the registry (few), then spreads them over the batch's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

Record = Mapping[str, Any]

_TIME: Final = pa.timestamp("us", tz="UTC")
_PURPOSES: Final = pa.list_(pa.string())

CONSENT_SCHEMA: Final = pa.schema(
    [
        ("consent_id", pa.string()),
        ("processor_id", pa.string()),
        ("subject_ref", pa.string()),
        ("grantor", pa.string()),
        ("consent_type", pa.string()),
        ("purposes", _PURPOSES),
        ("covers_internet_transfer", pa.bool_()),
        ("covers_image_retention", pa.bool_()),
        ("notice_version", pa.string()),
        ("granted_at", _TIME),
        ("expires_at", _TIME),
        ("withdrawn_at", _TIME),
    ]
)
DEPLOYMENT_SCHEMA: Final = pa.schema(
    [
        ("deployment_id", pa.string()),
        ("processor_id", pa.string()),
        ("registered_purposes", _PURPOSES),
        ("declared_retention_days", pa.int32()),
        ("pipia_date", _TIME),
        ("notice_version", pa.string()),
        ("notice_complete", pa.bool_()),
        ("law_requires_written_consent", pa.bool_()),
    ]
)
"""The fields the per-event rules read; a record's other fields stay in ``Registry``.

Each list of purposes is also kept as a bit mask, ``<field>_mask`` (``PurposeBits``).
"""

MAX_CHUNKS: Final = 8
"""More chunks than this and the small ones (all but the first) are merged."""


class PurposeBits:
    """A bit for every purpose seen, so that "purpose in list" is one AND per row."""

    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits: dict[str, int] = {}

    def bit(self, purpose: str) -> int:
        """The purpose's bit (a power of two), assigned when first seen."""
        bit = self._bits.get(purpose)
        if bit is None:
            if len(self._bits) == 63:
                raise ValueError("more than 63 distinct purposes cannot be masked")
            bit = self._bits[purpose] = 1 << len(self._bits)
        return bit

    def mask(self, purposes: Iterable[str] | None) -> int:
        """The bits of all ``purposes`` (0 for none)."""
        mask = 0
        for purpose in purposes or ():
            mask |= self.bit(purpose)
        return mask

    def bits(self, purposes: pa.Array) -> pa.Array:
        """Each value's bit (int64, null where the value is null)."""
        return pa.array(
            [None if p is None else self.bit(p) for p in purposes.to_pylist()], pa.int64()
        )


class Joined:
    """Registry rows lined up with a batch's rows: null where the id is null or unknown."""

    __slots__ = ("_cache", "_registry", "_rows", "_spread")

    def __init__(self, registry: pa.Table, rows: pa.Array, spread: pa.Array) -> None:
        self._registry = registry
        self._rows = rows  # per distinct id of the batch: its registry row, null if unknown
        self._spread = spread  # per batch row: its id's place in self._rows (null if no id)
        self._cache: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        """The registry field ``name`` for every row of the batch."""
        column = self._cache.get(name)
        if column is None:
            distinct = self._registry.column(name).take(self._rows).combine_chunks()
            column = self._cache[name] = distinct.take(self._spread)
        return column

    @property
    def found(self) -> pa.BooleanArray:
        """Whether the row's id names a record (False for a null id)."""
        return pc.is_valid(self._rows.take(self._spread))


class _Mirror:
    """The latest record of one kind per id, as Arrow rows appended in chunks."""

    __slots__ = ("_chunks", "_dead", "_index", "_key", "_mask", "_pending", "_purposes", "_schema")

    def __init__(self, key: str, schema: pa.Schema, mask: str, purposes: PurposeBits) -> None:
        self._key = key
        self._mask = mask
        self._purposes = purposes
        self._schema = schema.append(pa.field(f"{mask}_mask", pa.int64()))
        self._chunks: list[pa.RecordBatch] = []
        self._index: dict[str, int] = {}  # id -> row, counting through the chunks in order
        self._pending: dict[str, Record] = {}  # applied, not yet in a chunk
        self._dead = 0  # rows replaced by a later record

    def apply(self, record: Record) -> None:
        """Take a record; a later one with the same id replaces it."""
        key = record[self._key]
        self._pending[key] = record

    @property
    def chunks(self) -> int:
        """Chunks the rows are held in, after any pending records are appended."""
        self._flush()
        return len(self._chunks)

    @property
    def rows(self) -> int:
        """Rows held, replaced ones included, after any pending records are appended."""
        self._flush()
        return self._rows()

    def join(self, ids: pa.Array) -> Joined:
        """The registry rows for a batch's ids (string or dictionary array)."""
        self._flush()
        encoded = ids if pa.types.is_dictionary(ids.type) else ids.dictionary_encode()
        index = self._index
        rows = pa.array([index.get(key) for key in encoded.dictionary.to_pylist()], pa.int64())
        return Joined(pa.Table.from_batches(self._chunks, self._schema), rows, encoded.indices)

    def compact(self) -> None:
        """Drop replaced rows and hold the rest in one chunk; the results do not change."""
        self._flush()
        if self._dead:
            keys = list(self._index)
            rows = pa.array(list(self._index.values()), pa.int64())
            table = pa.Table.from_batches(self._chunks, self._schema).take(rows)
            self._index = {key: row for row, key in enumerate(keys)}
            self._dead = 0
            self._chunks = table.combine_chunks().to_batches() or []
        elif len(self._chunks) > 1:
            self._chunks = [_concat(self._chunks, self._schema)]

    def _flush(self) -> None:
        if not self._pending:
            return
        records = list(self._pending.values())
        masks = [self._purposes.mask(record.get(self._mask)) for record in records]
        chunk = pa.RecordBatch.from_pylist(records, self._schema.remove(len(self._schema) - 1))
        chunk = chunk.append_column(self._schema.field(-1), pa.array(masks, pa.int64()))
        start = self._rows()
        for offset, key in enumerate(self._pending):
            self._dead += key in self._index
            self._index[key] = start + offset
        self._pending.clear()
        self._chunks.append(chunk)
        self._tidy()

    def _rows(self) -> int:
        return sum(chunk.num_rows for chunk in self._chunks)

    def _tidy(self) -> None:
        """Compact when a quarter of the rows are dead; merge the small chunks when too many."""
        if self._dead * 4 > self._rows():
            self.compact()
        elif len(self._chunks) > MAX_CHUNKS:
            tail = _concat(self._chunks[1:], self._schema)
            if tail.num_rows >= self._chunks[0].num_rows:
                self._chunks = [_concat([self._chunks[0], tail], self._schema)]
            else:
                self._chunks = [self._chunks[0], tail]


def _concat(chunks: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    """Rows of ``chunks`` in order, in one chunk (row numbers unchanged)."""
    return pa.Table.from_batches(chunks, schema).combine_chunks().to_batches()[0]


class RegistryColumns:
    """Consents by consent_id and deployments by deployment_id; a later record wins."""

    __slots__ = ("_mirrors", "purposes")

    def __init__(self) -> None:
        self.purposes = PurposeBits()
        self._mirrors = {
            "consent": _Mirror("consent_id", CONSENT_SCHEMA, "purposes", self.purposes),
            "deployment": _Mirror(
                "deployment_id", DEPLOYMENT_SCHEMA, "registered_purposes", self.purposes
            ),
        }

    def apply(self, kind: str, record: Record) -> None:
        """Take a consent or deployment record (the caller has checked the kind)."""
        self._mirrors[kind].apply(record)

    def consents(self, consent_ids: pa.Array) -> Joined:
        """Each row's consent, by its consent_id."""
        return self._mirrors["consent"].join(consent_ids)

    def deployments(self, deployment_ids: pa.Array) -> Joined:
        """Each row's deployment, by its deployment_id."""
        return self._mirrors["deployment"].join(deployment_ids)

    def compact(self) -> None:
        """Drop replaced rows and merge chunks now, instead of when they pile up."""
        for mirror in self._mirrors.values():
            mirror.compact()

    def chunks(self, kind: str) -> int:
        """How many chunks hold the records of ``kind`` (consent or deployment)."""
        return self._mirrors[kind].chunks

    def rows(self, kind: str) -> int:
        """How many rows hold the records of ``kind``, replaced ones not yet dropped included."""
        return self._mirrors[kind].rows
