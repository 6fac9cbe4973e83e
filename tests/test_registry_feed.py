"""The registry catch-up at start stores the registries on the way (real broker).

Every validator reads the consent, deployment and deletion topics in full
before judging; with millions of consents one batch holding all their rows
would make the memory needed to start grow with the registry.
"""

from __future__ import annotations

import uuid

import pytest
from samples import sample

from consumers.batch import Batch
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from core.clients import KafkaConfig
from producers.event_producer import EventProducer

pytestmark = pytest.mark.integration

LIMIT = 100


def feed(bootstrap: str) -> RegistryFeed:
    return RegistryFeed(KafkaConfig(bootstrap), Judge("cac-2025", Registry()), PipelineMetrics())


def test_the_catch_up_hands_over_batches_of_the_limit_and_loses_no_row(
    kafka_bootstrap: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    with EventProducer(KafkaConfig(kafka_bootstrap)) as producer:
        for n in range(5 * LIMIT):
            producer.send_registry("consent", sample("consent", consent_id=f"c-{tag}-{n}"))
        producer.flush()

    whole = Batch()
    feed(kafka_bootstrap).catch_up(whole)

    handed: list[Batch] = []
    current = [Batch()]

    def full(batch: Batch) -> Batch:
        assert batch is current[0]
        handed.append(batch)
        current[0] = Batch()
        return current[0]

    feed(kafka_bootstrap).catch_up(current[0], full=full, limit=LIMIT)

    assert len(handed) >= 5, "the rows were handed over on the way"
    assert all(LIMIT <= len(batch) < 2 * LIMIT for batch in handed)
    read = [
        (row["partition"], row["offset"])
        for batch in [*handed, current[0]]
        for row in batch.rows["consents"]
    ]
    assert sorted(read) == sorted((r["partition"], r["offset"]) for r in whole.rows["consents"])
    assert sum(map(len, [*handed, current[0]])) == len(whole)
