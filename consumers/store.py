"""Open the ClickHouse store (embedded chDB or a server) and bring its schema up to date."""

from __future__ import annotations

import os
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from consumers.process import release_engine_startup_pages
from core.clients import clickhouse_client, redact
from core.errors import FaceauditError
from core.private_files import private_dir
from schemas.ddl import DATABASE, migrate

CHDB_SCHEME = "chdb://"

# chDB's allocator (jemalloc) keeps freed pages for 5 s by default, for reuse.
# Every batch frees tens of MiB in the engine, so those pages would add to the
# process's memory for no gain here; they go back to the system at once.
# Read when the engine is loaded; an operator's own JE_MALLOC_CONF wins.
_ENGINE_ALLOCATOR = ("JE_MALLOC_CONF", "dirty_decay_ms:0")


class StoreError(FaceauditError):
    """The embedded store's directory or the schema cannot be prepared."""


def open_store(dsn: str) -> Client:
    """A migrated client for `dsn`: `chdb://PATH` (embedded) or `http(s)://…` (server)."""
    if dsn.startswith(CHDB_SCHEME):
        # An absolute path: clickhouse-connect reads `chdb://a/b` as host a, database b.
        path = Path(dsn[len(CHDB_SCHEME) :]).resolve()
        _prepare_chdb_dir(path)
        dsn = f"{CHDB_SCHEME}{path}"
        os.environ.setdefault(*_ENGINE_ALLOCATOR)
    client = clickhouse_client(dsn)
    try:
        migrate(client)
    except ClickHouseError as exc:
        client.close()
        raise StoreError(f"cannot prepare the schema at {redact(dsn)}: {exc}") from None
    client.database = DATABASE
    if dsn.startswith(CHDB_SCHEME):
        release_engine_startup_pages()
    return client


def open_reader(dsn: str) -> Client:
    """A client that can only read `dsn`'s store (the dashboard, `faceaudit verify`): it never
    creates, migrates or writes it. FaceauditError if there is no store there yet."""
    if dsn.startswith(CHDB_SCHEME):
        path = Path(dsn[len(CHDB_SCHEME) :]).resolve()
        if not (path / "metadata").is_dir():
            raise StoreError(f"no store at {path} yet: the validator makes it (faceaudit consume)")
        dsn = f"{CHDB_SCHEME}{path}"
        os.environ.setdefault(*_ENGINE_ALLOCATOR)
    client = clickhouse_client(dsn, readonly=READ_ONLY)
    client.database = DATABASE
    if dsn.startswith(CHDB_SCHEME):
        release_engine_startup_pages()
    return client


READ_ONLY = 2
"""ClickHouse's `readonly` setting: read queries only (2: a query may still set its settings)."""


def _prepare_chdb_dir(path: Path) -> None:
    """The store's directory, readable by its owner alone: whoever reads it reads the trail."""
    try:
        private_dir(path)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {path}: {exc.strerror}") from None
    probe = path / ".write-test"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"the data directory {path} is not writable: {exc.strerror}") from None
