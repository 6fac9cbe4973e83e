"""The migrations rendered for a ClickHouse cluster: replicated shards behind Distributed tables.

Each table ``faceaudit.T`` of the single-node schema becomes ``faceaudit.T_local``
on every node (`ON CLUSTER`), its engine the Replicated one of the same family
(a replica per ``{replica}`` macro, a Keeper path per ``{shard}``), and
``faceaudit.T`` a Distributed table over them with the same columns, so every
query and insert of the validator and the dashboard names the same table as
on one node. Materialized views read and write the local tables of their
node, where a Distributed insert lands.

Deduplication stays exact: each Replicated table keeps the same window of
block ids (``replicated_deduplication_window``, in Keeper), every sharding key
is a function of the row alone (never ``rand()``), and the validator inserts
with ``insert_distributed_sync = 1``, so a retried batch is split over the
shards exactly as before and each shard drops the part it already has,
token and all.
"""

from __future__ import annotations

import re
from typing import Final

from schemas.ddl import DATABASE, MIGRATIONS_TABLE, Migration

LOCAL_SUFFIX: Final = "_local"
SHARDING_KEYS: Final[dict[str, str]] = {
    "events": "cityHash64(device_id)",
    "violations": "cityHash64(violation_id)",
    "dead_letters": "cityHash64(topic, partition, offset)",
    "consents": "cityHash64(consent_id)",
    "deployments": "cityHash64(deployment_id)",
    "deletions": "cityHash64(processor_id, subject_ref)",
    "checkpoints": "cityHash64(topic, partition, offset)",
    "validator_runs": "cityHash64(started_at)",
    "event_stats_minute": "cityHash64(processor_id)",
    "violation_stats_minute": "cityHash64(processor_id)",
    "stored_rows": "cityHash64(chain, batch)",
    "batch_ledgers": "cityHash64(chain, batch)",
    "digests": "cityHash64(chain)",
    "digest_batches": "cityHash64(chain)",
    "schema_migrations": "version",
}
"""How rows are spread over the shards: deterministic, so a retried insert splits alike.
A device's events stay on one shard, and so do a registry record's versions (FINAL)."""

_CREATE_TABLE: Final = re.compile(
    rf"^CREATE TABLE IF NOT EXISTS {DATABASE}\.(\w+)\s*(\(.*\))\s*"
    r"ENGINE\s*=\s*(\w+)(\(([^)]*)\))?(.*)$",
    re.S,
)
_CREATE_VIEW: Final = re.compile(
    rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}\.(\w+)\s+"
    rf"TO {DATABASE}\.(\w+)\s+AS\s+(.*)$",
    re.S,
)
_ALTER: Final = re.compile(rf"^ALTER TABLE {DATABASE}\.(\w+)\s+(.*)$", re.S)
_DROP_VIEW: Final = re.compile(rf"^DROP VIEW IF EXISTS {DATABASE}\.(\w+)$")
_FROM_TABLE: Final = re.compile(rf"\bFROM {DATABASE}\.(\w+)")
_COLUMN_COMMANDS: Final = ("ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "COMMENT COLUMN")
"""What a Distributed table takes of an ALTER: its columns follow the local table's."""


class ClusterRenderError(ValueError):
    """A migration statement this renderer does not know how to spread over a cluster."""


def cluster_migrations(migrations: list[Migration], cluster: str) -> list[Migration]:
    """Every migration with each statement rendered for `cluster`."""
    if not re.fullmatch(r"[A-Za-z_][\w-]*", cluster):
        raise ClusterRenderError(f"cluster name {cluster!r}: letters, digits, _ and - only")
    return [
        Migration(
            m.version,
            m.name,
            tuple(rendered for s in m.statements for rendered in render(s, cluster)),
        )
        for m in migrations
    ]


def bootstrap_statements(cluster: str) -> tuple[str, ...]:
    """The database and the migrations' own record, on every node."""
    return (
        f"CREATE DATABASE IF NOT EXISTS {DATABASE} ON CLUSTER '{cluster}'",
        *render(MIGRATIONS_TABLE, cluster),
    )


def render(statement: str, cluster: str) -> tuple[str, ...]:
    """One single-node statement as the statements that do the same on `cluster`."""
    on = f"ON CLUSTER '{cluster}'"
    if match := _CREATE_TABLE.match(statement):
        table, columns, engine, _, args, rest = match.groups()
        return (
            _local_table(table, columns, engine, args, rest, on),
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table} {on} "
            f"AS {DATABASE}.{table}{LOCAL_SUFFIX} ENGINE = Distributed('{cluster}', "
            f"{DATABASE}, {table}{LOCAL_SUFFIX}, {_sharding_key(table)})",
        )
    if match := _CREATE_VIEW.match(statement):
        view, target, select = match.groups()
        select = _FROM_TABLE.sub(lambda m: f"FROM {DATABASE}.{m[1]}{LOCAL_SUFFIX}", select)
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.{view} {on} "
            f"TO {DATABASE}.{target}{LOCAL_SUFFIX} AS {select}",
        )
    if match := _ALTER.match(statement):
        table, commands = match.groups()
        parts = _split_commands(commands)
        local = ", ".join(_replicated_settings(part) for part in parts)
        rendered = [f"ALTER TABLE {DATABASE}.{table}{LOCAL_SUFFIX} {on} {local}"]
        columns = [part for part in parts if part.lstrip().upper().startswith(_COLUMN_COMMANDS)]
        if columns:
            rendered.append(f"ALTER TABLE {DATABASE}.{table} {on} {', '.join(columns)}")
        return tuple(rendered)
    if match := _DROP_VIEW.match(statement.strip()):
        return (f"DROP VIEW IF EXISTS {DATABASE}.{match[1]} {on} SYNC",)
    raise ClusterRenderError(f"cannot render for a cluster: {statement.splitlines()[0]}")


def _local_table(
    table: str, columns: str, engine: str, args: str | None, rest: str, on: str
) -> str:
    if not engine.endswith("MergeTree"):
        raise ClusterRenderError(f"{table}: engine {engine} has no Replicated form")
    path = f"'/clickhouse/tables/{{shard}}/{DATABASE}/{table}{LOCAL_SUFFIX}', '{{replica}}'"
    engine_args = f"{path}, {args}" if args else path
    return (
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table}{LOCAL_SUFFIX} {on} {columns} "
        f"ENGINE = Replicated{engine}({engine_args}){_replicated_settings(rest)}"
    )


def _replicated_settings(text: str) -> str:
    """The same deduplication window, kept in Keeper for every replica."""
    return text.replace("non_replicated_deduplication_window", "replicated_deduplication_window")


def _sharding_key(table: str) -> str:
    try:
        return SHARDING_KEYS[table]
    except KeyError:
        raise ClusterRenderError(f"{table}: no sharding key (SHARDING_KEYS)") from None


def _split_commands(commands: str) -> list[str]:
    """An ALTER's commands, split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(commands):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(commands[start:index].strip())
            start = index + 1
    parts.append(commands[start:].strip())
    return parts
