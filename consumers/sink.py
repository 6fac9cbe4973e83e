"""The ClickHouse sink: one columnar insert per table per batch, deduplicated on retry.

Turning a batch into columns (`to_columns`) is separate from inserting them
(`ClickHouseSink.insert`), so a worker process can do the first and hand the
columns to the process that owns an embedded store.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from consumers.batch import TABLES, Batch
from schemas.ddl import DATABASE

Layout = dict[str, tuple[tuple[str, bool], ...]]
"""Per table, (column name, is an array) of each column the sink fills, in table order."""


@dataclass(frozen=True, slots=True)
class ColumnarBatch:
    """A batch as columns, ready to insert: (table, column names, column data) per table."""

    token: str
    tables: tuple[tuple[str, list[str], list[list]], ...]


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
            for name, is_array in columns
        ]
        tables.append((table, [name for name, _ in columns], data))
    return ColumnarBatch(batch.token, tuple(tables))


class ClickHouseSink:
    """Writes batches; the column lists come from the tables themselves, not a second copy."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.layout: Layout = {table: self._insertable_columns(table) for table in TABLES}

    def _insertable_columns(self, table: str) -> tuple[tuple[str, bool], ...]:
        result = self._client.query(
            "SELECT name, startsWith(type, 'Array') FROM system.columns "
            "WHERE database = {db:String} AND table = {table:String} AND default_kind = '' "
            "ORDER BY position",
            parameters={"db": DATABASE, "table": table},
        )
        return tuple((name, bool(is_array)) for name, is_array in result.result_rows)

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
                settings={
                    "insert_deduplication_token": f"{table}:{columnar.token}",
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
