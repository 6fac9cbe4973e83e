"""ClickHouse DDL as ordered migrations, applied idempotently at start-up.

Each `migrations/NNNN_name.sql` file is applied once, in order; applied
versions are recorded in `faceaudit.schema_migrations`. Every statement is
also written `IF NOT EXISTS`, so a migration interrupted half-way can simply
be applied again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

DATABASE = "faceaudit"
MIGRATIONS_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
    "(version UInt32, name String, applied_at DateTime64(6, 'UTC') DEFAULT now64(6)) "
    "ENGINE = ReplacingMergeTree ORDER BY version"
)
"""Where the applied migrations are recorded."""
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


class CommandClient(Protocol):
    """The part of a clickhouse-connect client that migrations use."""

    def command(self, cmd: str) -> object: ...

    def query(self, query: str) -> object: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration file on `;` at line ends, dropping comment-only chunks."""
    chunks = re.split(r";\s*(?:\n|$)", sql)
    statements = []
    for chunk in chunks:
        code = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("--"))
        if code.strip():
            statements.append(code.strip())
    return tuple(statements)


def migrations() -> list[Migration]:
    """All migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("schemas").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match[1]), match[2], split_statements(entry.read_text("utf-8")))
            )
    return sorted(found, key=lambda m: m.version)


def migrate(client: CommandClient) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now."""
    bootstrap = (f"CREATE DATABASE IF NOT EXISTS {DATABASE}", MIGRATIONS_TABLE)
    return apply(client, bootstrap, migrations())


def apply(client: CommandClient, bootstrap: Sequence[str], plan: Sequence[Migration]) -> list[int]:
    """Run `bootstrap`, then each migration of `plan` not yet recorded, recording it."""
    for statement in bootstrap:
        client.command(statement)
    done = {
        row[0]
        for row in client.query(f"SELECT version FROM {DATABASE}.schema_migrations").result_rows
    }
    applied = []
    for migration in plan:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.command(
            f"INSERT INTO {DATABASE}.schema_migrations (version, name) "
            f"VALUES ({migration.version}, '{migration.name}')"
        )
        applied.append(migration.version)
    return applied
