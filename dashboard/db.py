"""The store as the dashboard uses it: one client for the server's lifetime, one query at a time.

A clickhouse-connect client is not safe for concurrent queries (a chDB
connection handle, or one HTTP session), and the server answers requests on
several threads, so queries take turns. Dashboard queries are short
aggregations; a regulator's dashboard does not need more.
"""

from __future__ import annotations

from threading import Lock
from typing import Any

from clickhouse_connect.driver.client import Client


class Database:
    """Read-only access to the faceaudit tables."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = Lock()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The result as dicts keyed by column name."""
        with self._lock:
            result = self._client.query(sql, parameters=params or {})
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.query(sql, parameters=params or {}).result_rows[0][0]

    def close(self) -> None:
        with self._lock:
            self._client.close()
