"""What a stored batch adds to the ledger: a hash per row it stores, a Merkle root per table.

The hashes go to `batch_ledgers`, one row per batch and table with the rows'
keys and hashes as arrays, in the same deduplicated way, before the batch's
data (so a crash part-way never leaves data no ledger names); the roots go to
the validator's digest chain (`consumers.trail.digests`), which signs them.
Only the tables a regulator reads findings from are covered: events,
violations and dead letters (`row_hashes.DIGESTED_TABLES`). Ledgers written
before migration 0012 are one row per stored row, in `stored_rows`; readers
take both through `LEDGER_ROWS`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import pyarrow as pa

from consumers.trail.row_hashes import (
    DIGESTED_TABLES,
    HASH_TYPE,
    canonical,
    merkle_root,
    row_hashes,
    row_keys,
)
from schemas.ddl import DATABASE

LEDGER_TABLE: Final = "batch_ledgers"
LEGACY_LEDGER_TABLE: Final = "stored_rows"
LEDGER_MIGRATION: Final = 10
"""The version of the migration that made the ledger: rows stored before it have none."""
LEDGER_SCHEMA: Final = pa.schema(
    [
        ("chain", pa.string()),
        ("batch", pa.string()),
        ("table", pa.string()),
        ("row_keys", pa.list_(pa.string())),
        ("row_hashes", pa.list_(HASH_TYPE)),
    ]
)
LEDGER_ROWS: Final = (
    f"(SELECT chain, batch, `table`, row_key, row_hash FROM {DATABASE}.{LEGACY_LEDGER_TABLE} "
    "UNION ALL SELECT chain, batch, `table`, row_key, row_hash "
    f"FROM {DATABASE}.{LEDGER_TABLE} ARRAY JOIN row_keys AS row_key, row_hashes AS row_hash)"
)
"""Every ledger entry, a row each (chain, batch, table, row_key, row_hash), in either form."""


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
    """A batch's `batch_ledgers` rows (one per table), and its roots."""

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
    names, keys, hashes, roots = [], [], [], []
    for name, table in tables:
        if name not in DIGESTED_TABLES or not table.num_rows:
            continue
        layout = columns[name]
        hashed = row_hashes(canonical(table, layout.names, layout.arrays))
        names.append(name)
        keys.append(row_keys(table, name))
        hashes.append(hashed)
        roots.append(TableRoot(token, name, len(hashed), merkle_root(hashed)))
    if not names:
        return None
    offsets = pa.array([0, *accumulate(len(part) for part in hashes)], pa.int32())
    rows = pa.Table.from_arrays(
        [
            pa.repeat(pa.scalar(chain, pa.string()), len(names)),
            pa.repeat(pa.scalar(token, pa.string()), len(names)),
            pa.array(names, pa.string()),
            pa.ListArray.from_arrays(offsets, pa.concat_arrays(keys)),
            pa.ListArray.from_arrays(offsets, pa.concat_arrays(hashes)),
        ],
        schema=LEDGER_SCHEMA,
    )
    return Ledger(rows, tuple(roots))


def rows_table(names: Sequence[str], data: Sequence[list], maps: frozenset[str]) -> pa.Table:
    """Row-table columns (`sink.to_columns`) as Arrow; a map column as its sorted JSON text."""
    arrays = []
    for name, values in zip(names, data, strict=True):
        if name in maps:
            values = [json.dumps(v or {}, sort_keys=True, separators=(",", ":")) for v in values]
        arrays.append(pa.array(values))
    return pa.Table.from_arrays(arrays, names=list(names))
