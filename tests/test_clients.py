"""core.clients: every client is made there, and a service out of reach is one clear error."""

from __future__ import annotations

import pytest

from core.clients import (
    KafkaConfig,
    clickhouse_client,
    kafka_admin,
    kafka_consumer,
    kafka_producer,
    redact,
)
from core.errors import FaceauditError
from faceaudit.broker import free_port


@pytest.mark.parametrize("make", [kafka_consumer, kafka_producer, kafka_admin])
def test_no_broker_is_an_error_naming_the_address_and_the_wait(make) -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(FaceauditError) as raised:
        make(KafkaConfig(address, timeout=0.5, user="u", password="p"), client_id="faceaudit-test")
    message = str(raised.value)
    assert message == f"cannot reach Kafka at {address} (no broker answered within 0.5 s)"


def test_the_connection_settings_cannot_be_overridden_by_a_caller() -> None:
    with pytest.raises(TypeError, match="bootstrap_servers"):
        kafka_consumer(
            KafkaConfig("127.0.0.1:9", security_protocol="PLAINTEXT"),
            bootstrap_servers="elsewhere:9092",
        )


def test_an_unreachable_clickhouse_server_is_an_error_without_the_password() -> None:
    dsn = f"http://auditor:s3cret@127.0.0.1:{free_port()}/faceaudit"
    with pytest.raises(FaceauditError) as raised:
        clickhouse_client(dsn)
    message = str(raised.value)
    assert "ClickHouse at http://auditor:***@127.0.0.1" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("http://u:pw@host:8123/db", "http://u:***@host:8123/db"),
        ("http://host:8123/db", "http://host:8123/db"),
        ("chdb:///var/lib/faceaudit", "chdb:///var/lib/faceaudit"),
    ],
)
def test_redact_hides_only_the_password(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown
