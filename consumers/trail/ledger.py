"""What a stored batch adds to the ledger: a hash per row it stores, a Merkle root per table.

The rows go to `stored_rows` with the batch, in the same deduplicated way,
before its data (so a crash part-way never leaves data no ledger row names);
the roots go to the validator's digest chain (`consumers.trail.digests`), which
signs them. Only the tables a regulator reads findings from are covered:
events, violations and dead letters (`row_hashes.DIGESTED_TABLES`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from consumers.trail.row_hashes import DIGESTED_TABLES, canonical, merkle_root, row_hashes, row_keys

LEDGER_TABLE: Final = "stored_rows"
LEDGER_MIGRATION: Final = 10
"""The version of the migration that made the ledger: rows stored before it have none."""
LEDGER_SCHEMA: Final = pa.schema(
    [
        ("chain", pa.string()),
        ("batch", pa.string()),
        ("table", pa.string()),
        ("row_key", pa.string()),
        ("row_hash", pa.binary(32)),
    ]
)


@dataclass(frozen=True, slots=True)
class TableRoot:
    """One table's part of a stored batch: how many rows, and the root over their hashes."""

    batch: str
    table: str
    rows: int
    root: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "table": self.table,
            "rows": self.rows,
            "root": self.root.hex(),
        }


@dataclass(frozen=True, slots=True)
class Ledger:
    """A batch's `stored_rows` rows, and its roots."""

    rows: pa.Table
    roots: tuple[TableRoot, ...]


@dataclass(frozen=True, slots=True)
class TableColumns:
    """What the validator inserts into a table: its columns in order, the array ones, the maps."""

    names: tuple[str, ...]
    arrays: frozenset[str]
    maps: frozenset[str]


def batch_ledger(
    chain: str, token: str, tables: Sequence[tuple[str, pa.Table]], columns: dict[str, TableColumns]
) -> Ledger | None:
    """The ledger of a batch whose `tables` (name, inserted rows) are stored under `token`."""
    parts, roots = [], []
    for name, table in tables:
        if name not in DIGESTED_TABLES or not table.num_rows:
            continue
        layout = columns[name]
        hashes = row_hashes(canonical(table, layout.names, layout.arrays))
        keys = row_keys(table, name)
        count = len(keys)
        parts.append(
            pa.Table.from_arrays(
                [
                    pa.repeat(pa.scalar(chain, pa.string()), count),
                    pa.repeat(pa.scalar(token, pa.string()), count),
                    pa.repeat(pa.scalar(name, pa.string()), count),
                    keys,
                    pa.array(hashes, pa.binary(32)),
                ],
                schema=LEDGER_SCHEMA,
            )
        )
        roots.append(TableRoot(token, name, count, merkle_root(hashes)))
    if not parts:
        return None
    return Ledger(pa.concat_tables(parts), tuple(roots))


def rows_table(names: Sequence[str], data: Sequence[list], maps: frozenset[str]) -> pa.Table:
    """Row-table columns (`sink.to_columns`) as Arrow; a map column as its sorted JSON text."""
    arrays = []
    for name, values in zip(names, data, strict=True):
        if name in maps:
            values = [json.dumps(v or {}, sort_keys=True, separators=(",", ":")) for v in values]
        arrays.append(pa.array(values))
    return pa.Table.from_arrays(arrays, names=list(names))
