"""Each stored row's hash: the leaves of the digests' Merkle trees (docs/verify.md).

A row is hashed over the columns the validator inserts into its table, in the
table's order, after bringing each to one canonical type (`canonical`), so a
row hashes the same from the validator's batch and read back from the store,
whichever way it came (Arrow from the decoder, Python rows, or the store's
Arrow output). The hashing itself is native (`faceaudit_native.row_hashes`).
Each row is named by a key of its own (`ROW_KEYS`), so `faceaudit verify` can
say which row was changed, deleted or added.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

import faceaudit_native
import pyarrow as pa
import pyarrow.compute as pc

HASH_BYTES: Final = 32
HASH_TYPE: Final = pa.binary(HASH_BYTES)
ROW_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "events": ("topic", "partition", "offset"),
    "violations": ("violation_id",),
    "dead_letters": ("topic", "partition", "offset"),
}
"""The columns that name a row of each table the digests cover. Not a dead letter's time of
receipt: every worker stores the registry's dead letters, each at its own time, and the
store keeps one of them."""
DIGESTED_TABLES: Final = tuple(ROW_KEYS)

_TIME: Final = pa.timestamp("us", "UTC")


def canonical(table: pa.Table, columns: Sequence[str], arrays: Sequence[str] = ()) -> pa.Table:
    """`table`'s `columns`, in that order, as the hasher reads them.

    A column the table lacks is what the store keeps for it: an empty list
    for the `arrays`, else null (a capture has no match fields).
    """
    out = []
    for name in columns:
        if name in table.column_names:
            out.append(_canonical_column(table.column(name)))
        elif name in arrays:
            out.append(pa.array([[]] * table.num_rows, pa.list_(pa.string())))
        else:
            out.append(pa.nulls(table.num_rows, pa.int64()))
    return pa.Table.from_arrays(out, names=list(columns))


def _canonical_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_map(kind):
        return pa.chunked_array([_map_as_text(column)], pa.string())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return column.cast(pa.list_(pa.string()))
    if pa.types.is_timestamp(kind):
        return column.cast(_TIME)
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind):
        return column.cast(pa.float64())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return column.cast(pa.binary())
    if pa.types.is_null(kind):
        return column.cast(pa.int64())
    return column


def _map_as_text(column: pa.ChunkedArray) -> pa.Array:
    """A map (a dead letter's headers) as its JSON text, keys sorted: one form from both sides."""
    texts = []
    for value in column.to_pylist():
        items = {_text(k): _text(v) for k, v in (value or [])}
        texts.append(json.dumps(items, sort_keys=True, separators=(",", ":")))
    return pa.array(texts, pa.string())


def _text(value: str | bytes) -> str:
    """A header name or value: the store keeps them as text (read back as bytes, or not)."""
    return value.decode() if isinstance(value, bytes) else value


def row_hashes(table: pa.Table) -> pa.FixedSizeBinaryArray:
    """The hash of each row of a `canonical` table, in row order."""
    if not table.num_rows:
        return pa.array([], HASH_TYPE)
    # A chunk at a time: combining the chunks would copy every value first.
    joined = b"".join(faceaudit_native.row_hashes(batch) for batch in table.to_batches())
    return pa.FixedSizeBinaryArray.from_buffers(
        HASH_TYPE, table.num_rows, [None, pa.py_buffer(joined)]
    )


def row_keys(table: pa.Table, name: str) -> pa.Array:
    """Each row's key in `name` (a table of DIGESTED_TABLES), as text: its key columns
    joined by ``/`` (``faceaudit.events.v1/3/1042``)."""
    parts = [_as_text(table.column(column)) for column in ROW_KEYS[name]]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "/")


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, _TIME).cast(pa.int64())
    elif pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def merkle_root(leaves: pa.FixedSizeBinaryArray | Sequence[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash of `leaves`, sorted first: the root does not depend on
    the order the store gives rows back in."""
    if isinstance(leaves, pa.FixedSizeBinaryArray):
        start = leaves.offset * HASH_BYTES
        joined = leaves.buffers()[1][start : start + len(leaves) * HASH_BYTES].to_pybytes()
    else:
        joined = b"".join(leaves)
    return faceaudit_native.merkle_root(joined, sort=True)
