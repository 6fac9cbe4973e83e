"""Shared fixtures: one real Kafka broker per test session.

Starting a broker costs seconds, so the whole session shares one (in a pytest tmp
dir, on free ports, reusing the repo's jar cache).  It is secured like
`faceaudit broker start`'s; FACEAUDIT_BROKER_HOME points at it, so the CLI
processes the tests start, and `helpers.kafka_as`, log in as their role's
user.  Set FACEAUDIT_TEST_BOOTSTRAP to ``host:port`` to run the suite against an
already running broker instead (its credentials in FACEAUDIT_KAFKA_*).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.settings import Settings
from faceaudit.broker import LocalBroker, ensure_topics, free_ports

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_ENV = "FACEAUDIT_TEST_BOOTSTRAP"
# Fixtures that imply a real broker; tests using them are marked `integration`
# automatically, so `pytest -m "not integration"` never needs Java.
BROKER_FIXTURES = frozenset({"kafka_bootstrap"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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
