"""The demo's week of history: a daily rhythm, and every rule of the catalogue broken,
found by the real validator through the real broker."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import consume, fleet_seed, kafka_as, scalar, start_group_at_end, store
from signing import fleet_signing_keys

from consumers.rules.catalogue import load_catalogue
from faceaudit.demo_history import catalogue_examples
from producers.history import STREAM_FAULTS, send_history
from producers.rhythm import CHINA_UTC_OFFSET, rhythm_times

PROFILE = "cac-2023-draft"
"""Its filing threshold (10,000 subjects) keeps the hotel chain small enough for a test."""


def test_rhythm_times_rise_in_the_morning_and_fall_at_night() -> None:
    start = datetime(2026, 11, 1, 16, 0, tzinfo=UTC)  # midnight in China
    times = list(rhythm_times(70_000, start, start + timedelta(days=7)))
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < start + timedelta(days=7)
    by_hour = Counter((moment + CHINA_UTC_OFFSET).hour for moment in times)
    assert by_hour[9] > 5 * by_hour[3], by_hour
    assert by_hour[18] > 4 * by_hour[3], by_hour


def test_rhythm_times_need_a_span() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="must end after it starts"):
        list(rhythm_times(3, now, now))


@pytest.mark.integration
def test_a_week_of_history_breaks_every_rule_and_each_stream_fault_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    group, seed = f"faceaudit-test-history-{fleet_seed()}", fleet_seed()
    start_group_at_end(kafka_bootstrap, group)
    catalogue = load_catalogue()
    threshold = catalogue.parameters(PROFILE).filing_threshold
    report = send_history(
        kafka_as("producer"),
        examples=catalogue_examples(),
        filing_threshold=threshold,
        signing_keys=fleet_signing_keys,
        events=4_000,
        devices=30,
        seed=seed,
        progress=False,
    )
    assert report.last - report.first > timedelta(days=6, hours=22)
    run = consume(kafka_bootstrap, tmp_path / "ch", group, "--profile", PROFILE)
    assert run.returncode == 0, run.stderr
    with store(tmp_path / "ch") as client:
        found = dict(
            client.query(
                "SELECT rule_id, count() FROM faceaudit.violations GROUP BY rule_id"
            ).result_rows
        )
        days = scalar(client, "SELECT uniqExact(toDate(event_time)) FROM faceaudit.events")
    active = {rule.id for rule in catalogue.rules if rule.severity[PROFILE] != "off"}
    assert active <= found.keys(), sorted(active - found.keys())
    assert set(report.broken) >= active
    for rule in STREAM_FAULTS:  # once each, and nothing of the history's own making
        assert found[rule] == 1, (rule, found[rule])
    assert found["FR-FILING"] == 1
    assert days >= 7
