"""Records as Arrow tables in the native decoder's columns: ``decode_batch``'s schema per kind.

The bulk readers build most tables natively. The records they leave to the
per-record path (JSON lines the native path hands back, containers it does
not read) come here as dicts: each is encoded with the codec and decoded by
the native decoder, so every table of a kind has the same schema and the
same dictionary for each enum, whichever path built it. ``message_index``
holds the record's position in its input (line or record number) and
``payload_sha256`` the hash the per-record reader gives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any, Final

import faceaudit_native
import pyarrow as pa
import pyarrow.compute as pc

from schemas import codec
from schemas.native import contract_decoder

MESSAGE_INDEX: Final = "message_index"
PAYLOAD_SHA256: Final = "payload_sha256"
BATCH_ROWS: Final = 20_000
"""Records per table the bulk readers aim at."""

_NO_LIMIT: Final = 1 << 62
Numbered = tuple[int, dict[str, Any], str | None]
"""A good record with its position in the input and its payload hash."""


@cache
def decoder() -> faceaudit_native.Decoder:
    """The contract's native decoder, built once for every reader."""
    return contract_decoder()


def records_table(
    kind: str,
    records: Sequence[dict[str, Any]],
    positions: Sequence[int],
    hashes: Sequence[str | None],
) -> pa.Table:
    """``records`` of ``kind`` (all good), at ``positions``, with ``hashes``."""
    messages = [codec.encode(kind, record) for record in records]
    batches, failures = decoder().decode_batch(messages, _NO_LIMIT)
    if failures:  # the codec wrote them: a disagreement is a bug, not bad input
        raise RuntimeError(f"the native decoder refuses records the codec wrote: {failures[:3]}")
    table = pa.Table.from_batches([batches[kind]])
    schema = table.schema
    table = table.set_column(
        schema.get_field_index(MESSAGE_INDEX),
        schema.field(MESSAGE_INDEX),
        pa.array(positions, pa.uint32()),
    )
    return table.set_column(
        schema.get_field_index(PAYLOAD_SHA256),
        schema.field(PAYLOAD_SHA256),
        pa.array(hashes, pa.string()),
    )


def numbered_tables(
    kind: str, numbered: Iterable[Numbered], rows: int = BATCH_ROWS
) -> Iterator[tuple[str, pa.Table]]:
    """Tables of up to ``rows`` records of one kind, in the order given."""
    pending: list[Numbered] = []
    for item in numbered:
        pending.append(item)
        if len(pending) == rows:
            yield kind, _table(kind, pending)
            pending = []
    if pending:
        yield kind, _table(kind, pending)


def _table(kind: str, numbered: list[Numbered]) -> pa.Table:
    positions, records, hashes = zip(*numbered, strict=True)
    return records_table(kind, records, positions, hashes)


def in_order(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables of one kind as one, rows in ``message_index`` order."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables).sort_by(MESSAGE_INDEX)


def first_position(table: pa.Table) -> int:
    """The smallest ``message_index`` of a non-empty table."""
    return pc.min(table.column(MESSAGE_INDEX)).as_py()
