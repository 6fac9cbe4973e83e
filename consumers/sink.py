"""The ClickHouse sink: one columnar insert per table per batch, deduplicated on retry.

Turning a batch into columns (`to_columns`), and columns into files in
ClickHouse's Native format (`write_native`), is separate from inserting them,
so a worker process can do that work and hand only the files to the process
that owns an embedded store (`ClickHouseSink.insert_native`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import NamedTuple

from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver import options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform

from consumers.batch import TABLES, Batch
from schemas.ddl import DATABASE

# Every insert here is plain Python lists, never a DataFrame or an array.
# Without this clickhouse-connect imports pandas (about 30 MiB resident) and
# numpy (about 15 MiB) at the first insert, only to check that the data is
# neither; None is what it records when they are not installed.
options.pd = None
options.pd_time_test = None
options.np = None


class Column(NamedTuple):
    """A column the sink fills: its name, whether it is an array, and its ClickHouse type."""

    name: str
    is_array: bool
    type_name: str


Layout = dict[str, tuple[Column, ...]]
"""Per table, each column the sink fills, in table order."""


@dataclass(frozen=True, slots=True)
class ColumnarBatch:
    """A batch as columns, ready to insert: (table, column names, column data) per table."""

    token: str
    tables: tuple[tuple[str, list[str], list[list]], ...]


@dataclass(frozen=True, slots=True)
class NativeBatch:
    """A batch in ClickHouse's Native format: (table, column names, file) per table."""

    token: str
    tables: tuple[tuple[str, list[str], Path], ...]

    def remove(self) -> None:
        """Delete the files (once inserted, or abandoned)."""
        for _, _, path in self.tables:
            path.unlink(missing_ok=True)


def to_columns(batch: Batch, layout: Layout) -> ColumnarBatch:
    """The batch's non-empty tables as columns, in the insert order of `TABLES`."""
    tables = []
    for table in TABLES:
        rows = batch.rows[table]
        if not rows:
            continue
        columns = layout[table]
        # A field the record kind does not carry is NULL, or an empty array
        # (ClickHouse arrays cannot be NULL): a match has no attribute_analysis.
        data = [
            [row.get(name) or [] for row in rows] if is_array else [row.get(name) for row in rows]
            for name, is_array, _ in columns
        ]
        tables.append((table, [column.name for column in columns], data))
    return ColumnarBatch(batch.token, tuple(tables))


def write_native(batch: Batch, layout: Layout, directory: Path) -> NativeBatch:
    """Write the batch's non-empty tables to files in `directory`, as the bodies of their inserts.

    The same encoder clickhouse-connect uses for `Client.insert`, run without
    a connection (the column types come from the layout), and streamed to the
    file a block at a time, so the encoded batch is never whole in memory.
    """
    columnar = to_columns(batch, layout)
    tables = []
    try:
        for table, names, data in columnar.tables:
            context = InsertContext(
                table,
                names,  # every column of the layout, in its order (`to_columns`)
                [get_from_name(column.type_name) for column in layout[table]],
                data,
                column_oriented=True,
                server_tz=UTC,
            )
            handle, name = tempfile.mkstemp(prefix=f"{table}-", suffix=".native", dir=directory)
            tables.append((table, names, Path(name)))
            with os.fdopen(handle, "wb") as file:
                for number, block in enumerate(NativeTransform.build_insert(context)):
                    # The first block starts with the "INSERT INTO … FORMAT Native"
                    # line an HTTP request carries; the insert names the table itself.
                    file.write(
                        memoryview(block)[block.index(b"\n") + 1 :] if number == 0 else block
                    )
    except BaseException:
        NativeBatch(columnar.token, tuple(tables)).remove()
        raise
    return NativeBatch(columnar.token, tuple(tables))


class ClickHouseSink:
    """Writes batches; the column lists come from the tables themselves, not a second copy."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.layout: Layout = {table: self._insertable_columns(table) for table in TABLES}

    def _insertable_columns(self, table: str) -> tuple[Column, ...]:
        result = self._client.query(
            "SELECT name, startsWith(type, 'Array'), type FROM system.columns "
            "WHERE database = {db:String} AND table = {table:String} AND default_kind = '' "
            "ORDER BY position",
            parameters={"db": DATABASE, "table": table},
        )
        return tuple(
            Column(name, bool(is_array), type_name)
            for name, is_array, type_name in result.result_rows
        )

    def write(self, batch: Batch) -> None:
        self.insert(to_columns(batch, self.layout))

    def insert(self, columnar: ColumnarBatch) -> None:
        """Insert every table of the batch.

        The deduplication token names the table and the batch's offset ranges,
        so a retry of the same batch (after a failed insert) is stored once,
        and the statistics views fed by it count it once.
        """
        for table, names, data in columnar.tables:
            self._client.insert(
                table,
                data,
                column_names=names,
                database=DATABASE,
                column_oriented=True,
                settings=_deduplicated(table, columnar.token),
            )

    def insert_native(self, native: NativeBatch) -> None:
        """Insert every table of a batch written by `write_native`, deduplicated as `insert`."""
        for table, names, path in native.tables:
            with path.open("rb") as body:
                self._client.raw_insert(
                    f"{DATABASE}.{table}",
                    names,
                    insert_block=body,
                    settings=_deduplicated(table, native.token),
                    fmt="Native",
                )


def _deduplicated(table: str, token: str) -> dict[str, object]:
    return {
        "insert_deduplication_token": f"{table}:{token}",
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
