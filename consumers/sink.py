"""The ClickHouse sink: one columnar insert per table per batch, deduplicated on retry."""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from consumers.batch import TABLES, Batch, Row
from schemas.ddl import DATABASE


class ClickHouseSink:
    """Writes batches; the column lists come from the tables themselves, not a second copy."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._columns = {table: self._insertable_columns(table) for table in TABLES}

    def _insertable_columns(self, table: str) -> tuple[tuple[str, bool], ...]:
        """(name, is_array) of each column the sink fills, in table order."""
        result = self._client.query(
            "SELECT name, startsWith(type, 'Array') FROM system.columns "
            "WHERE database = {db:String} AND table = {table:String} AND default_kind = '' "
            "ORDER BY position",
            parameters={"db": DATABASE, "table": table},
        )
        return tuple((name, bool(is_array)) for name, is_array in result.result_rows)

    def write(self, batch: Batch) -> None:
        """Insert every non-empty table of the batch.

        The deduplication token names the table and the batch's offset ranges,
        so a retry of the same batch (after a failed insert) is stored once,
        and the statistics views fed by it count it once.
        """
        token = batch.token
        for table in TABLES:
            rows = batch.rows[table]
            if rows:
                self._insert(table, rows, f"{table}:{token}")

    def _insert(self, table: str, rows: Sequence[Row], token: str) -> None:
        columns = self._columns[table]
        # A field the record kind does not carry is NULL, or an empty array
        # (ClickHouse arrays cannot be NULL): a match has no attribute_analysis.
        data = [
            [row.get(name) or [] for row in rows] if is_array else [row.get(name) for row in rows]
            for name, is_array in columns
        ]
        names = [name for name, _ in columns]
        self._client.insert(
            table,
            data,
            column_names=names,
            database=DATABASE,
            column_oriented=True,
            settings={
                "insert_deduplication_token": token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
            },
        )
