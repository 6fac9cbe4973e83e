"""End to end on the real broker and the embedded ClickHouse engine.

The simulator and the validator run as the `faceaudit` command would run
them (subprocesses); the test then opens the chDB store itself, after the
validator has exited, since chDB lets one process open a store at a time.
"""

from __future__ import annotations

import os

import pytest
from helpers import (
    consume,
    faceaudit,
    fleet_violations,
    kafka_as,
    published_violations,
    scalar,
    store,
)

from core.clients import kafka_producer
from producers.fleet import Fleet
from schemas.topics import TOPICS

pytestmark = pytest.mark.integration

EVENTS, DEVICES, SEED, VIOLATION_RATE = 3000, 12, 7, 0.2
GARBAGE = b"\xc3\x01not-a-fingerprint-and-no-payload"


@pytest.fixture(scope="module")
def streamed(kafka_bootstrap: str, tmp_path_factory) -> dict:
    """Simulate a fleet, add one garbage message, and validate until idle (twice)."""
    data = tmp_path_factory.mktemp("pipeline") / "clickhouse"
    group = f"faceaudit-pipeline-{os.getpid()}"
    sim = faceaudit(
        "simulate",
        "--bootstrap",
        kafka_bootstrap,
        "--events",
        str(EVENTS),
        "--devices",
        str(DEVICES),
        "--seed",
        str(SEED),
        "--violation-rate",
        str(VIOLATION_RATE),
        "--no-progress",
    )
    assert sim.returncode == 0, sim.stderr
    producer = kafka_producer(kafka_as("producer"))
    producer.send(TOPICS["capture"], key=b"garbage-device", value=GARBAGE).get(timeout=30)
    producer.close()
    first = consume(kafka_bootstrap, data, group)
    assert first.returncode == 0, first.stderr
    with store(data) as client:
        counts_after_first = scalar(client, "SELECT count() FROM faceaudit.events")
        registry_after_first = registry_rows(client)
    second = consume(kafka_bootstrap, data, group)
    assert second.returncode == 0, second.stderr
    return {
        "data": data,
        "first": first,
        "second": second,
        "counts_after_first": counts_after_first,
        "registry_after_first": registry_after_first,
    }


def registry_rows(client) -> int:
    return scalar(client, "SELECT count() FROM faceaudit.consents") + scalar(
        client, "SELECT count() FROM faceaudit.deployments"
    )


def expected_events() -> list[tuple[str, dict, list[str]]]:
    """The simulator is deterministic: the same seed regenerates the same events."""
    return list(Fleet(devices=DEVICES, seed=SEED, violation_rate=VIOLATION_RATE).events(EVENTS))


def test_every_produced_event_is_stored_exactly_once(streamed: dict) -> None:
    produced = {record["event_id"] for _, record, _ in expected_events()}
    with store(streamed["data"]) as client:
        rows = client.query(
            "SELECT event_id, count() FROM faceaudit.events GROUP BY event_id"
        ).result_rows
    stored = dict(rows)
    assert produced <= set(stored), f"{len(produced - set(stored))} events missing"
    assert all(stored[event_id] == 1 for event_id in produced)


def test_deliberate_violations_are_found(streamed: dict) -> None:
    intended = {
        (record["event_id"], rule) for _, record, rules in expected_events() for rule in rules
    }
    assert intended, "the simulator broke no rule; the test would prove nothing"
    with store(streamed["data"]) as client:
        found = set(client.query("SELECT event_id, rule_id FROM faceaudit.violations").result_rows)
    missing = intended - found
    assert not missing, f"{len(missing)} intended violations not found, e.g. {sorted(missing)[:3]}"


def test_compliant_events_raise_no_violation(streamed: dict) -> None:
    compliant = {record["event_id"] for _, record, rules in expected_events() if not rules}
    with store(streamed["data"]) as client:
        flagged = {
            row[0]
            for row in client.query(
                "SELECT DISTINCT event_id FROM faceaudit.violations WHERE event_id IS NOT NULL"
            ).result_rows
        }
    assert not compliant & flagged


def test_garbage_message_is_a_dead_letter_with_its_bytes(streamed: dict) -> None:
    with store(streamed["data"]) as client:
        rows = client.query(
            "SELECT raw, reason, message_key, topic FROM faceaudit.dead_letters",
            column_formats={"raw": "bytes"},
        ).result_rows
    matching = [row for row in rows if row[0] == GARBAGE]
    assert matching, f"garbage not in dead_letters: {rows}"
    assert matching[0][2] == "garbage-device"
    assert matching[0][3] == TOPICS["capture"]


def test_consumer_kept_going_after_the_garbage(streamed: dict) -> None:
    # The garbage was written after the whole simulated stream: every event
    # stored and the dead letter present means nothing stopped at the garbage.
    assert "dead letters" in streamed["first"].stdout
    assert streamed["counts_after_first"] >= EVENTS


def test_offsets_were_committed_so_a_second_run_stores_nothing(streamed: dict) -> None:
    assert "This run: 0 events" in streamed["second"].stdout, streamed["second"].stdout
    with store(streamed["data"]) as client:
        assert (
            scalar(client, "SELECT count() FROM faceaudit.events") == streamed["counts_after_first"]
        )


def test_registry_records_are_stored_once_across_runs(streamed: dict) -> None:
    # Every run re-reads the registry topics from the start to rebuild its
    # registry; what is already stored is not stored again.
    assert streamed["registry_after_first"] > 0
    with store(streamed["data"]) as client:
        assert registry_rows(client) == streamed["registry_after_first"]


def test_statistics_view_counts_every_event(streamed: dict) -> None:
    with store(streamed["data"]) as client:
        events = scalar(client, "SELECT count() FROM faceaudit.events")
        counted = scalar(client, "SELECT sum(events) FROM faceaudit.event_stats_minute")
    assert counted == events


def test_every_stored_violation_is_published_once(streamed: dict, kafka_bootstrap: str) -> None:
    """The violations topic holds each violation once when nothing crashed.

    Only this module's fleet is counted: validators of other tests judge the
    other fleets on the shared broker and publish their violations too.
    """
    stored = fleet_violations(streamed["data"], SEED)
    published = published_violations(kafka_bootstrap, stored)
    assert stored and set(published) == stored
    assert set(published.values()) == {1}, "a violation was published twice"


def test_summary_names_kinds_rules_and_rate(streamed: dict) -> None:
    out = streamed["first"].stdout
    assert "events by kind" in out and "capture" in out and "match" in out
    assert "violations by rule and severity" in out and "FR-PRIVATE-SPACE" in out
    assert "events/s" in out
