"""The store's schema as the migrations leave it, on the real engine (chDB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.store import open_store

WIDE_TABLES = ("events", "violations", "dead_letters")


@pytest.mark.parametrize("table", WIDE_TABLES)
def test_wide_tables_merge_vertically(tmp_path: Path, table: str) -> None:
    client = open_store(f"chdb://{tmp_path / 'store'}")
    try:
        create = client.query(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = 'faceaudit' AND name = {table:String}",
            parameters={"table": table},
        ).result_rows[0][0]
    finally:
        client.close()
    assert "vertical_merge_algorithm_min_rows_to_activate = 1" in create
    assert "vertical_merge_algorithm_min_columns_to_activate = 1" in create
    assert "non_replicated_deduplication_window" in create, "the earlier settings are kept"
