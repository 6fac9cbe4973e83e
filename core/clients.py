"""The one place where the project's Kafka and ClickHouse clients are built.

Every client is made here from its configuration and handed to the code
that uses it, so that what each connection needs is set once (and, when the
services ask for SASL_SSL or TLS, added once), and a service that cannot be
reached is reported the same way by every command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from core.errors import FaceauditError

KafkaClient = TypeVar("KafkaClient", KafkaConsumer, KafkaProducer, KafkaAdminClient)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How every Kafka client of the project reaches the brokers."""

    bootstrap: str
    timeout: float = 15.0  # seconds to wait for the first broker answer


def kafka_consumer(config: KafkaConfig, **options: Any) -> KafkaConsumer:
    """A consumer with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaConsumer, config, options)


def kafka_producer(config: KafkaConfig, **options: Any) -> KafkaProducer:
    """A producer with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaProducer, config, options)


def kafka_admin(config: KafkaConfig, **options: Any) -> KafkaAdminClient:
    """An admin client with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaAdminClient, config, options)


def _connect(
    make: Callable[..., KafkaClient], config: KafkaConfig, options: dict[str, Any]
) -> KafkaClient:
    """`make` the client; it asks a broker for its version before it returns.

    The connection settings cannot be overridden by `options` (a repeated
    keyword is a TypeError): they are this module's alone.
    """
    connection = {
        "bootstrap_servers": config.bootstrap,
        "bootstrap_timeout_ms": int(config.timeout * 1000),
    }
    try:
        return make(**connection, **options)
    except KafkaTimeoutError:
        why = f"no broker answered within {config.timeout:g} s"
    except KafkaError as exc:
        why = f"{exc.__class__.__name__}: {exc}"
    raise FaceauditError(f"cannot reach Kafka at {config.bootstrap} ({why})")


def clickhouse_client(dsn: str) -> Client:
    """A client for `dsn` (`chdb://ABSOLUTE-PATH` or `http(s)://…`); FaceauditError if it fails."""
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except ClickHouseError as exc:
        raise FaceauditError(_cannot_open(dsn, exc)) from None
    except OSError as exc:
        raise FaceauditError(f"cannot reach ClickHouse at {redact(dsn)}: {exc}") from None


def is_embedded(client: Client) -> bool:
    """Whether `client` drives an in-process chDB engine rather than a ClickHouse server."""
    # clickhouse-connect builds its chDB client in a private module; the class
    # is what tells the two apart.
    from clickhouse_connect.driver._chdbclient import ChdbClient

    return isinstance(client, ChdbClient)


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
