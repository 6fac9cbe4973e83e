"""The registry catch-up at start stores the registries on the way (real broker).

Every validator reads the consent, deployment and deletion topics in full
before judging; with millions of consents one batch holding all their rows
would make the memory needed to start grow with the registry.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from helpers import kafka_as
from samples import sample
from signing import TEST_SIGNERS

from consumers.batch import Batch
from consumers.judge import Judge
from consumers.metrics import PipelineMetrics
from consumers.registry import Registry
from consumers.registry_feed import FEED_TOPICS, RegistryFeed
from core.errors import FaceauditError
from producers.event_producer import EventProducer

pytestmark = pytest.mark.integration

LIMIT = 100


def feed(bootstrap: str) -> RegistryFeed:
    return RegistryFeed(kafka_as("validator"), Judge("cac-2025", Registry()), PipelineMetrics())


def test_the_catch_up_hands_over_batches_of_the_limit_and_loses_no_row(
    kafka_bootstrap: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        for n in range(5 * LIMIT):
            producer.send_registry("consent", sample("consent", consent_id=f"c-{tag}-{n}"))
        producer.flush()

    whole: list[Batch] = []
    feed(kafka_bootstrap).catch_up(whole.append)

    handed: list[Batch] = []
    feed(kafka_bootstrap).catch_up(handed.append, limit=LIMIT)

    assert len(handed) >= 5, "the rows were handed over on the way"
    assert all(LIMIT <= len(batch) < 2 * LIMIT for batch in handed[:-1])
    assert len(handed[-1]) < 2 * LIMIT
    read = [(row["partition"], row["offset"]) for batch in handed for row in batch.rows["consents"]]
    everything = [(r["partition"], r["offset"]) for b in whole for r in b.rows["consents"]]
    assert sorted(read) == sorted(everything)
    assert sum(map(len, handed)) == sum(map(len, whole))


def test_a_rewritten_consent_history_is_reported_once_and_not_applied(
    kafka_bootstrap: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    consent_id = f"c-{tag}"
    granted = sample("consent", consent_id=consent_id)
    withdrawn = {**granted, "withdrawn_at": granted["granted_at"] + timedelta(days=3)}
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        for record in (granted, withdrawn, granted, withdrawn):  # an un-withdrawal, then again
            producer.send_registry("consent", record)
        producer.flush()

    judge = Judge("cac-2025", Registry())
    batches: list[Batch] = []
    RegistryFeed(kafka_as("validator"), judge, PipelineMetrics()).catch_up(batches.append)

    assert judge.registry.consent(consent_id)["withdrawn_at"] == withdrawn["withdrawn_at"]
    ours = [
        row for batch in batches for row in batch.rows["violations"] if consent_id in row["details"]
    ]
    assert [row["rule_id"] for row in ours] == ["REG-CONSENT-REWRITTEN"]
    [row] = ours
    assert row["event_id"] is None and row["severity"] == "critical"
    stored = [r for b in batches for r in b.rows["consents"] if r["consent_id"] == consent_id]
    assert len(stored) == 4, "every record is stored as it was sent"
    assert (row["partition"], row["offset"]) == (stored[2]["partition"], stored[2]["offset"])


def test_a_store_ahead_of_the_registry_topics_is_refused(kafka_bootstrap: str) -> None:
    """Offsets stored that the topic never reached: it was made anew, or it is another cluster."""
    stored = {(topic, 0): 10**12 for topic in FEED_TOPICS}
    ahead = RegistryFeed(
        kafka_as("validator"), Judge("cac-2025", Registry()), PipelineMetrics(), stored=stored
    )
    with pytest.raises(FaceauditError, match=r"the store holds faceaudit\..*up to offset"):
        ahead.catch_up(lambda batch: None)
