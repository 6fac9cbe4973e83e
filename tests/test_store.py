"""The store's schema as the migrations leave it, on the real engine (chDB)."""

from __future__ import annotations

import os
import subprocess
import sys
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


_ENGINE_DECAY = """
import sys
from consumers.store import open_store
client = open_store(sys.argv[1])
stats = client.query("SELECT * FROM system.jemalloc_stats").result_rows[0][0]
print(next(line.split()[1] for line in stats.splitlines() if "opt.dirty_decay_ms" in line))
"""


@pytest.mark.parametrize(
    ("operator_setting", "expected"), [(None, "0"), ("dirty_decay_ms:750", "750")]
)
def test_the_engine_returns_freed_memory_at_once_unless_told_otherwise(
    tmp_path: Path, operator_setting: str | None, expected: str
) -> None:
    # A fresh process: the engine reads its allocator settings when it loads.
    env = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    if operator_setting is not None:
        env["JE_MALLOC_CONF"] = operator_setting
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_DECAY, f"chdb://{tmp_path / 'store'}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == expected


_ENGINE_IMPORTS = """
import sys
sys.path.insert(0, "tests")
from arrow_events import event_table
from samples import sample
from consumers.batch import Batch, now_utc
from consumers.sink import ClickHouseSink
from consumers.store import open_store
from consumers.process import prepare_engine_process
prepare_engine_process()
client = open_store(sys.argv[1])
batch = Batch()
row = {"message_key": None, "raw": b"x", "headers": {}, "reason": "undecodable",
       "detail": "t[0]@7: test", "received_at": now_utc()}
batch.add("dead_letters", row, "t", 0, 7)
batch.add_events(event_table("capture", [sample("capture")], "faceaudit.events.v1", 0, [8]))
ClickHouseSink(client).write(batch)
stored = [client.query(f"SELECT count() FROM {t}").result_rows[0][0]
          for t in ("dead_letters", "events")]
print(*stored, sys.modules.get("pandas") is not None)
"""


def test_a_validator_process_stores_events_without_loading_pandas(tmp_path: Path) -> None:
    # A fresh process: pyarrow imports pandas (about 40 MiB) the first time it
    # converts a Python value, and clickhouse-connect at the first insert,
    # unless kept out.
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_IMPORTS, f"chdb://{tmp_path / 'store'}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.split() == ["1", "1", "False"]
