"""`faceaudit migrate --cluster`: the migrations rendered for a ClickHouse cluster, every
statement checked by ClickHouse's own parser (formatQuery parses without executing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from helpers import faceaudit

from schemas.cluster_ddl import (
    SHARDING_KEYS,
    ClusterRenderError,
    bootstrap_statements,
    cluster_migrations,
    render,
)
from schemas.ddl import migrations

CLUSTER = "audit-cluster"
_PARSE = r"""
import json, sys
import chdb

def quoted(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

problems = []
for statement in json.loads(sys.stdin.read()):
    try:
        chdb.query("SELECT formatQuery(" + quoted(statement) + ")")
    except Exception as exc:
        problems.append([statement, str(exc)[:300]])
print(json.dumps(problems))
"""


def rendered() -> list[str]:
    return [
        *bootstrap_statements(CLUSTER),
        *(s for m in cluster_migrations(migrations(), CLUSTER) for s in m.statements),
    ]


def test_every_rendered_statement_parses() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PARSE],
        input=json.dumps(rendered()), capture_output=True, text=True, timeout=300,
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_table_is_replicated_and_distributed_with_a_deterministic_key() -> None:
    statements = rendered()
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    for table in SHARDING_KEYS:
        local = [s for s in creates if f"faceaudit.{table}_local ON CLUSTER" in s]
        assert len(local) == 1 and "ENGINE = Replicated" in local[0], table
        assert "{shard}" in local[0] and "'{replica}'" in local[0]
        distributed = [s for s in creates if f"faceaudit.{table} ON CLUSTER" in s]
        assert len(distributed) == 1 and "ENGINE = Distributed('audit-cluster'" in distributed[0]
    assert all("rand" not in key for key in SHARDING_KEYS.values())
    assert not any("non_replicated_deduplication_window" in s for s in statements)
    deduplicated = [s for s in creates if "replicated_deduplication_window = 10000" in s]
    assert len(deduplicated) >= 10
    assert all("ON CLUSTER 'audit-cluster'" in s for s in statements)


def test_views_read_and_write_their_nodes_local_tables() -> None:
    views = [s for s in rendered() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views
    for view in views:
        assert "TO faceaudit.event_stats_minute_local" in view or (
            "TO faceaudit.violation_stats_minute_local" in view
        )
        assert "FROM faceaudit.events_local" in view or "FROM faceaudit.violations_local" in view


def test_an_alter_reaches_the_distributed_table_only_for_its_columns() -> None:
    statements = render(
        "ALTER TABLE faceaudit.violation_stats_minute ADD COLUMN IF NOT EXISTS regions "
        "Array(String), MODIFY ORDER BY (minute, regions)",
        CLUSTER,
    )
    assert statements == (
        "ALTER TABLE faceaudit.violation_stats_minute_local ON CLUSTER 'audit-cluster' "
        "ADD COLUMN IF NOT EXISTS regions Array(String), MODIFY ORDER BY (minute, regions)",
        "ALTER TABLE faceaudit.violation_stats_minute ON CLUSTER 'audit-cluster' "
        "ADD COLUMN IF NOT EXISTS regions Array(String)",
    )


def test_migrate_prints_the_cluster_statements_and_refuses_an_embedded_store(
    tmp_path,
) -> None:
    printed = faceaudit("migrate", "--cluster", CLUSTER, "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.split(";\n\n")[:-1] == rendered()
    refused = faceaudit("migrate", "--cluster", CLUSTER, "--clickhouse", f"chdb://{tmp_path}")
    assert refused.returncode == 1
    assert "--cluster needs a ClickHouse server DSN" in refused.stderr
    alone = faceaudit("migrate", "--print")
    assert alone.returncode == 1 and "--print goes with --cluster" in alone.stderr


def test_what_it_cannot_render_is_refused_by_name() -> None:
    with pytest.raises(ClusterRenderError, match="cannot render for a cluster: INSERT"):
        render("INSERT INTO faceaudit.events VALUES (1)", CLUSTER)
    with pytest.raises(ClusterRenderError, match="letters, digits"):
        cluster_migrations(migrations(), "bad name'; DROP")
    with pytest.raises(ClusterRenderError, match="engine Log has no Replicated form"):
        render("CREATE TABLE IF NOT EXISTS faceaudit.t (x UInt8) ENGINE = Log", CLUSTER)
