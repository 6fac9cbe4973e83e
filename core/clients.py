"""The one place where the project's Kafka and ClickHouse clients are built.

Every client is made here from its configuration and handed to the code
that uses it, so that what each connection needs is set once (and, when the
services ask for SASL_SSL or TLS, added once), and a service that cannot be
reached is reported the same way by every command.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from core.errors import FaceauditError


def clickhouse_client(dsn: str) -> Client:
    """A client for `dsn` (`chdb://ABSOLUTE-PATH` or `http(s)://…`); FaceauditError if it fails."""
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except ClickHouseError as exc:
        raise FaceauditError(_cannot_open(dsn, exc)) from None
    except OSError as exc:
        raise FaceauditError(f"cannot reach ClickHouse at {redact(dsn)}: {exc}") from None


def redact(dsn: str) -> str:
    """The DSN with any password replaced, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _cannot_open(dsn: str, exc: ClickHouseError) -> str:
    text = str(exc)
    if "EmbeddedServer" in text or "already initialized" in text:
        return (
            f"the embedded store {redact(dsn)} is already open in another process: "
            "chDB lets one process open a store; stop that process, or use a "
            "ClickHouse server DSN (http://user:pass@host:8123/faceaudit)"
        )
    return f"cannot open ClickHouse at {redact(dsn)}: {text.splitlines()[0]}"
