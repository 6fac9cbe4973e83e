"""Least privilege in the store: readers cannot write or migrate, and the embedded store's
directory is its owner's alone."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import ClickHouseError
from conftest import REPO_ROOT
from kafka.consumer.fetcher import ConsumerRecord
from samples import sample

from consumers.batch import Batch
from consumers.dead_letters import dead_letter_row
from consumers.sink import ClickHouseSink
from consumers.store import StoreError, open_reader, open_store
from consumers.stored_tail import stored_registry_offsets
from schemas.topics import TOPICS


def test_the_embedded_stores_directory_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    open_store(f"chdb://{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_reader_reads_and_can_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    open_store(f"chdb://{path}").close()
    reader = open_reader(f"chdb://{path}")
    try:
        assert reader.query("SELECT count() FROM faceaudit.events").result_rows == [(0,)]
        for statement in (
            "INSERT INTO faceaudit.schema_migrations (version, name) VALUES (99, 'forged')",
            "ALTER TABLE faceaudit.violations DELETE WHERE 1",
            "CREATE TABLE faceaudit.extra (a Int8) ENGINE = Memory",
        ):
            with pytest.raises(ClickHouseError, match="readonly"):
                reader.command(statement)
    finally:
        reader.close()


def test_a_reader_never_makes_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no store at .* yet: the validator makes it"):
        open_reader(f"chdb://{tmp_path / 'nothing'}")
    assert not (tmp_path / "nothing").exists()


def test_the_access_sql_in_the_security_docs_parses() -> None:
    """Checked by ClickHouse's own parser (formatQuery parses without executing), in a process
    of its own: chDB runs one engine per process."""
    text = (REPO_ROOT / "docs" / "security.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    code = "\n".join(re.sub(r"--.*", "", line) for block in blocks for line in block.splitlines())
    statements = [" ".join(part.split()) for part in code.split(";")]
    statements = [statement for statement in statements if statement]
    assert len(statements) >= 6
    script = (
        "import chdb, json, sys\n"
        "for q in json.loads(sys.argv[1]):\n"
        "    chdb.query('SELECT formatQuery($$' + q + '$$)')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(statements)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_registry_is_stored_up_to_the_highest_offset_any_table_holds(tmp_path: Path) -> None:
    """A dead letter early in a consent partition must not hide the records stored after it:
    they would be stored again, with their findings, at every start."""
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        batch = Batch()
        topic = TOPICS["consent"]
        batch.add("consents", sample("consent"), topic, 5, 700)
        letter = ConsumerRecord(topic, 5, 0, 3, 0, 0, b"k", b"\x00", [], None, 0, 1, 0)
        batch.add("dead_letters", dead_letter_row(letter, "bad_magic", "early"), topic, 5, 3)
        ClickHouseSink(client).write(batch)
        assert stored_registry_offsets(client)[topic, 5] == 700
    finally:
        client.close()
