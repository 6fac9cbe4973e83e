"""The ClickHouse sink: one columnar insert per table per batch, deduplicated on retry.

Events arrive as Arrow tables and are inserted as Arrow: in an embedded
store through chDB's in-process `Python()` table function, which reads the
table where it lies; on a server through clickhouse-connect's Arrow insert.
The few rows of the other tables are plain dicts, turned into columns
(`to_columns`).

Preparing a batch (columns, the events' Arrow table) and writing it to
files (`write_files`: Native format for the row tables, an Arrow IPC stream
for the events) is separate from inserting them, so a worker process can do
that work and hand only the files to the process that owns an embedded store
(`ClickHouseSink.insert_files`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver import options
from clickhouse_connect.driver.binding import format_query_value
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform

from consumers.batch import ROW_TABLES, TABLES, Batch
from consumers.trail.ledger import (
    LEDGER_TABLE,
    Ledger,
    TableColumns,
    TableRoot,
    batch_ledger,
    rows_table,
)
from consumers.trail.row_hashes import DIGESTED_TABLES
from core.clients import is_embedded
from schemas.ddl import DATABASE

EVENTS = "events"

# Row inserts here are plain Python lists and events are Arrow tables, never
# a DataFrame. Without this clickhouse-connect imports pandas (about 30 MiB
# resident) at the first insert, only to check that the data is not one;
# None is what it records when pandas is not installed.
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
class BatchFiles:
    """A batch written to files: (table, column names, file) per row table, in
    ClickHouse's Native format, the events and the ledger rows as Arrow IPC
    streams (or None), and the ledger's roots."""

    token: str
    tables: tuple[tuple[str, list[str], Path], ...]
    events: Path | None
    ledger: Path | None = None
    roots: tuple[TableRoot, ...] = ()

    def remove(self) -> None:
        """Delete the files (once inserted, or abandoned)."""
        for _, _, path in self.tables:
            path.unlink(missing_ok=True)
        for path in (self.events, self.ledger):
            if path is not None:
                path.unlink(missing_ok=True)


def events_table(batch: Batch, layout: Layout) -> pa.Table | None:
    """The batch's events as one Arrow table of the events table's columns, or None.

    Captures and matches carry different fields: a column one kind lacks is
    NULL for it, or an empty array (ClickHouse arrays cannot be NULL).
    """
    parts = [table for table in batch.event_tables if table.num_rows]
    if not parts:
        return None
    events = pa.concat_tables(parts, promote_options="permissive")
    names = [column.name for column in layout[EVENTS] if column.name in events.column_names]
    events = events.select(names)
    events = events.cast(pa.schema([field.with_nullable(True) for field in events.schema]))
    for column in layout[EVENTS]:
        if column.is_array and column.name in names:
            index = events.schema.get_field_index(column.name)
            values = events.column(index)
            events = events.set_column(
                index, column.name, pc.fill_null(values, pa.scalar([], values.type))
            )
    # One dictionary per column for all chunks, as Arrow's IPC formats require.
    return events.unify_dictionaries()


def to_columns(batch: Batch, layout: Layout) -> ColumnarBatch:
    """The batch's non-empty row tables as columns, in the insert order of `TABLES`."""
    tables = []
    for table in ROW_TABLES:
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


def table_columns(layout: Layout) -> dict[str, TableColumns]:
    """What the ledger hashes of each table: the columns the sink fills."""
    return {
        table: TableColumns(
            tuple(column.name for column in columns),
            frozenset(column.name for column in columns if column.is_array),
            frozenset(column.name for column in columns if column.type_name.startswith("Map(")),
        )
        for table, columns in layout.items()
    }


def digested_columns(layout: Layout) -> dict[str, tuple[str, ...]]:
    """The columns each digested table's rows are hashed over (a digest names them)."""
    return {table: table_columns(layout)[table].names for table in DIGESTED_TABLES}


def prepare_ledger(
    chain: str, columnar: ColumnarBatch, events: pa.Table | None, layout: Layout
) -> Ledger | None:
    """The ledger of the rows about to be inserted (`consumers.trail.ledger`)."""
    columns = table_columns(layout)
    tables = [
        (table, rows_table(names, data, columns[table].maps))
        for table, names, data in columnar.tables
        if table in DIGESTED_TABLES
    ]
    if events is not None:
        tables.append((EVENTS, events))
    return batch_ledger(chain, columnar.token, tables, columns)


def write_files(
    batch: Batch, layout: Layout, directory: Path, chain: str | None = None
) -> BatchFiles:
    """Write the batch's non-empty tables to files in `directory`, as the bodies of their inserts;
    with `chain`, its ledger too.

    The same encoder clickhouse-connect uses for `Client.insert`, run without
    a connection (the column types come from the layout), and streamed to the
    file a block at a time, so the encoded batch is never whole in memory.
    """
    columnar = to_columns(batch, layout)
    tables: list[tuple[str, list[str], Path]] = []
    events_path = ledger_path = None
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
        events = events_table(batch, layout)
        ledger = None if chain is None else prepare_ledger(chain, columnar, events, layout)
        events_path = _write_arrow(events, "events", directory)
        ledger_path = _write_arrow(None if ledger is None else ledger.rows, "ledger", directory)
    except BaseException:
        BatchFiles(columnar.token, tuple(tables), events_path, ledger_path).remove()
        raise
    roots = () if ledger is None else ledger.roots
    return BatchFiles(columnar.token, tuple(tables), events_path, ledger_path, roots)


def _write_arrow(table: pa.Table | None, prefix: str, directory: Path) -> Path | None:
    if table is None:
        return None
    handle, name = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".arrows", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file, pa.ipc.new_stream(file, table.schema) as writer:
            writer.write_table(table)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


class ClickHouseSink:
    """Writes batches; the column lists come from the tables themselves, not a second copy."""

    def __init__(self, client: Client, embedded: bool | None = None) -> None:
        """`embedded`: insert events through chDB's `Python()` table function
        (default: when `client` is an embedded store) or as a server would."""
        self._client = client
        self._embedded = is_embedded(client) if embedded is None else embedded
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

    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        """Insert every table of the batch, the events last (`TABLES`); with `chain`, its
        ledger first, and return the ledger's roots for the chain's next digest.

        The deduplication token names the table and the batch's offset ranges,
        so a retry of the same batch (after a failed insert) is stored once,
        and the statistics views fed by it count it once.
        """
        columnar = to_columns(batch, self.layout)
        events = events_table(batch, self.layout)
        ledger = None if chain is None else self.insert_ledger(chain, columnar, events)
        self._insert_rows(columnar)
        if events is not None:
            self.insert_arrow(EVENTS, events, batch.token)
        return () if ledger is None else ledger.roots

    def insert_ledger(
        self, chain: str, columnar: ColumnarBatch, events: pa.Table | None
    ) -> Ledger | None:
        """Insert the ledger of a batch's rows before the rows themselves; None when the
        batch has no row a digest covers."""
        ledger = prepare_ledger(chain, columnar, events, self.layout)
        if ledger is not None:
            self.insert_arrow(LEDGER_TABLE, ledger.rows, _ledger_token(chain, columnar.token))
        return ledger

    def insert_arrow(self, table: str, rows: pa.Table, token: str) -> None:
        """Insert an Arrow table, deduplicated by `token` as the row tables."""
        settings = _deduplicated(table, token)
        if not self._embedded:
            self._client.insert_arrow(table, rows, database=DATABASE, settings=settings)
            return
        names = ", ".join(f"`{name}`" for name in rows.column_names)
        # The settings ride in the statement: passed apart, the embedded client sets and
        # restores each around the insert, several queries more per batch.
        inline = ", ".join(f"{key} = {format_query_value(v)}" for key, v in settings.items())
        faceaudit_rows = rows  # noqa: F841 -- the name the query's Python() reads
        self._client.command(
            f"INSERT INTO {DATABASE}.{table} ({names}) SETTINGS {inline} "
            f"SELECT {names} FROM Python(faceaudit_rows)"
        )

    def _insert_rows(self, columnar: ColumnarBatch) -> None:
        for table, names, data in columnar.tables:
            self._client.insert(
                table,
                data,
                column_names=names,
                database=DATABASE,
                column_oriented=True,
                settings=_deduplicated(table, columnar.token),
            )

    def insert_files(self, files: BatchFiles) -> None:
        """Insert every table of a batch written by `write_files`, deduplicated as `write`."""
        if files.ledger is not None:
            rows = _read_arrow(files.ledger)
            chain = rows.column("chain")[0].as_py()
            self.insert_arrow(LEDGER_TABLE, rows, _ledger_token(chain, files.token))
        for table, names, path in files.tables:
            with path.open("rb") as body:
                self._client.raw_insert(
                    f"{DATABASE}.{table}",
                    names,
                    insert_block=body,
                    settings=_deduplicated(table, files.token),
                    fmt="Native",
                )
        if files.events is not None:
            self.insert_arrow(EVENTS, _read_arrow(files.events), files.token)


def _ledger_token(chain: str, token: str) -> str:
    """A batch's ledger rows are deduplicated per chain: each worker stores the registry's
    rows under one token, but each chain's ledger must keep its own."""
    return f"{chain}/{token}"


def _deduplicated(table: str, token: str) -> dict[str, object]:
    return {
        "insert_deduplication_token": f"{table}:{token}",
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        # On a cluster (`faceaudit migrate --cluster`), a Distributed table hands each
        # shard its rows before the insert returns, token and all: a retry dedups there.
        "distributed_foreground_insert": 1,
    }
