"""Shared fixtures: one real Kafka broker per test session.

Starting a broker costs seconds, so the whole session shares one (in a pytest tmp
dir, on free ports, reusing the repo's jar cache).  It is secured like
`faceaudit broker start`'s; FACEAUDIT_BROKER_HOME points at it, so the CLI
processes the tests start, and `helpers.kafka_as`, log in as their role's
user.  Set FACEAUDIT_TEST_BOOTSTRAP to ``host:port`` to run the suite against an
already running broker instead (its credentials in FACEAUDIT_KAFKA_*).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from signing import AUDITOR, auditor_key_record

from consumers.settings import Settings
from faceaudit.broker import LocalBroker, ensure_topics, free_ports
from faceaudit.keys import publish, write_private_key
from schemas import codec

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_ENV = "FACEAUDIT_TEST_BOOTSTRAP"
# Fixtures that imply a real broker; tests using them are marked `integration`
# automatically, so `pytest -m "not integration"` never needs Java.
BROKER_FIXTURES = frozenset({"kafka_bootstrap"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def auditor_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test auditor key's file, which every validator of the session signs digests with
    (FACEAUDIT_AUDITOR_KEY); the test broker registers its public key."""
    path = write_private_key(AUDITOR.private_key, tmp_path_factory.mktemp("keys"), AUDITOR.key_id)
    saved = os.environ.get("FACEAUDIT_AUDITOR_KEY")
    os.environ["FACEAUDIT_AUDITOR_KEY"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("FACEAUDIT_AUDITOR_KEY", None)
    else:
        os.environ["FACEAUDIT_AUDITOR_KEY"] = saved


@pytest.fixture(scope="session")
def trusted_keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The auditor key `faceaudit verify --keys` trusts, as `keys list --format jsonl` writes it."""
    path = tmp_path_factory.mktemp("trusted") / "keys.jsonl"
    path.write_text(json.dumps(codec.to_json("key", auditor_key_record())) + "\n")
    return path


@pytest.fixture(scope="session")
def kafka_libs_dir() -> Path:
    """The repo's jar cache, the one `faceaudit broker start` fills; test brokers share it."""
    return REPO_ROOT / ".faceaudit" / "kafka-libs"


@pytest.fixture(scope="session")
def kafka_bootstrap(
    tmp_path_factory: pytest.TempPathFactory, kafka_libs_dir: Path
) -> Iterator[str]:
    """Bootstrap address of a broker with the pipeline's topics; stopped at session end."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        ensure_topics(Settings.resolve({"bootstrap": external}, role="admin").kafka)
        publish(
            Settings.resolve({"bootstrap": external}, role="operator").kafka, auditor_key_record()
        )
        yield external
        return
    port, controller_port = free_ports(2)
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka-home"),
        port=port,
        controller_port=controller_port,
        libs_dir=kafka_libs_dir,
    )
    saved = os.environ.get("FACEAUDIT_BROKER_HOME")
    try:
        bootstrap = broker.start()
        os.environ["FACEAUDIT_BROKER_HOME"] = str(broker.home)
        ensure_topics(broker.kafka("admin"))
        publish(broker.kafka("operator"), auditor_key_record())
        yield bootstrap
    finally:
        broker.stop()
        if saved is None:
            os.environ.pop("FACEAUDIT_BROKER_HOME", None)
        else:
            os.environ["FACEAUDIT_BROKER_HOME"] = saved


@pytest.fixture
def broker_ports() -> tuple[int, int]:
    """A free (client port, controller port) pair for a test's own LocalBroker."""
    port, controller_port = free_ports(2)
    return port, controller_port


@pytest.fixture
def unique_group(request: pytest.FixtureRequest) -> str:
    """A consumer-group id no other test (or earlier run against the same broker) used."""
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    return f"faceaudit-test-{test_name}-{uuid.uuid4().hex[:12]}"
