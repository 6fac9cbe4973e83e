"""The validator's Prometheus endpoint, scraped over HTTP after a real run."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from helpers import broker_environ, kafka_as
from prometheus_client.parser import text_string_to_metric_families
from signing import fleet_signing_keys

from consumers.pipeline import Validator
from consumers.rules.catalogue import load_catalogue
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from producers.simulate import simulate
from schemas.regions import PROVINCES

pytestmark = pytest.mark.integration


def samples(port: int) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_endpoint_reports_the_run(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    simulate(
        kafka_as("producer"),
        events=300,
        devices=4,
        seed=11,
        violation_rate=0.3,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        settings = Settings.resolve(
            {"bootstrap": kafka_bootstrap, "group": unique_group, "until_idle": 2.0},
            environ=broker_environ(),
        )
        validator = Validator(settings, ClickHouseGateway(client))
        port = validator.metrics.serve(0)
        summary = validator.run()
        found = samples(port)
    finally:
        client.close()

    for kind, stored in summary.events.items():
        assert found[("faceaudit_events_total", (("kind", kind),))] == stored
    violation_total = sum(
        value for (name, _), value in found.items() if name == "faceaudit_violations_total"
    )
    assert violation_total == sum(summary.violations.values()) > 0
    assert found[("faceaudit_batch_duration_seconds_count", ())] >= 1
    assert found[("faceaudit_event_to_stored_seconds_count", ())] == sum(summary.events.values())
    lags = [value for (name, _), value in found.items() if name == "faceaudit_consumer_lag"]
    assert lags and all(value == 0 for value in lags), "drained partitions must show no lag"
    labelled = [dict(labels) for (_, labels), _ in found.items()]
    provinces = {each["province"] for each in labelled if "province" in each}
    assert provinces and provinces <= {*PROVINCES, ""}, "only known provinces (or none) label"
    rules = {each["rule"] for each in labelled if "rule" in each}
    assert rules <= {rule.id for rule in load_catalogue().rules}
    info = [labels for (name, labels), _ in found.items() if name == "faceaudit_rules_info"]
    assert info and ("profile", "cac-2025") in info[0]
    assert any(key == "catalogue_version" for key, _ in info[0])
