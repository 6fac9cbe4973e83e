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


_ENGINE_RESIDENT = """
import sys
from consumers.store import open_reader, open_store
from core.clients import clickhouse_client

def engine_resident_kib():
    total, counting = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if len(fields) >= 5 and "-" in fields[0] and ":" in fields[3]:
                counting = "/chdb/_chdb" in line and "w" not in fields[1]
            elif counting and fields[0] == "Rss:":
                total += int(fields[1])
    return total

how, dsn = sys.argv[1:]
opened = {"client": clickhouse_client, "store": open_store, "reader": open_reader}[how]
if how == "reader":
    open_store(dsn).close()
client = opened(dsn)
client.query("SELECT count() FROM system.tables")  # the engine still answers
print(engine_resident_kib())
"""


def _engine_resident_kib(how: str, dsn: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_RESIDENT, how, dsn],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(done.stdout)


@pytest.mark.parametrize("opened_with", ["store", "reader"])
def test_opening_the_embedded_store_hands_back_the_engines_start_up_pages(
    tmp_path: Path, opened_with: str
) -> None:
    # A fresh process each: loading chDB leaves about 250 MiB of its library
    # resident, most of it read once by its start-up.
    dsn = f"chdb://{tmp_path / 'store'}"
    loaded = _engine_resident_kib("client", dsn)
    opened = _engine_resident_kib(opened_with, dsn)
    assert opened < loaded / 2, (opened, loaded)
