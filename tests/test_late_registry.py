"""A consent that arrives after its event: held for the grace window, then judged.

Runs the real validator (a subprocess) against the real broker; watches its
/metrics endpoint to know that both events are held before the late consent
is sent, so the test proves the hold, not a lucky ordering.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import clickhouse_connect
import pytest
from helpers import kafka_as, start_group_at_end
from prometheus_client.parser import text_string_to_metric_families
from samples import sample
from signing import TEST_SIGNERS

from faceaudit.broker import free_port
from producers.event_producer import EventProducer

pytestmark = pytest.mark.integration


def held_events(port: int) -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return None
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "faceaudit_held_events":
            return family.samples[0].value
    return None


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_late_consent_is_waited_for_and_a_missing_one_is_reported(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    deployment = sample("deployment", deployment_id=f"d-{tag}", processor_id=f"p-{tag}")
    late = sample(
        "consent", consent_id=f"late-{tag}", processor_id=f"p-{tag}", subject_ref=f"s-{tag}"
    )

    def event(name: str, consent_id: str) -> dict:
        return sample(
            "capture",
            event_id=f"{name}-{tag}",
            device_id=f"dev-{name}-{tag}",
            processor_id=f"p-{tag}",
            deployment_id=f"d-{tag}",
            subject_ref=f"s-{tag}",
            consent_id=consent_id,
        )

    port = free_port()
    data = tmp_path / "ch"
    # Only this test's events: earlier tests' events waiting for their own
    # registry records would count as held too.
    start_group_at_end(kafka_bootstrap, unique_group)
    validator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceaudit.cli",
            "consume",
            "--bootstrap",
            kafka_bootstrap,
            "--clickhouse",
            f"chdb://{data}",
            "--group",
            unique_group,
            "--metrics-port",
            str(port),
            "--registry-grace",
            "60",
            "--until-idle",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FACEAUDIT_KAFKA_TIMEOUT": "10"},
    )
    try:
        with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
            producer.send_registry("deployment", deployment)
            producer.flush()
            producer.send_event("capture", event("arrives", late["consent_id"]))
            producer.send_event("capture", event("never", f"never-{tag}"))
            producer.flush()
            wait_for(lambda: (held_events(port) or 0) >= 2, 120, "both events to be held")
            time.sleep(5)
            producer.send_registry("consent", late)
            producer.flush()
        _, err = validator.communicate(timeout=180)
    finally:
        if validator.poll() is None:
            validator.kill()
    assert validator.returncode == 0, err

    client = clickhouse_connect.get_client(dsn=f"chdb://{data}")
    try:
        found = client.query(
            "SELECT event_id, rule_id FROM faceaudit.violations WHERE event_id LIKE {p:String}",
            parameters={"p": f"%-{tag}"},
        ).result_rows
        stored = client.query(
            "SELECT count() FROM faceaudit.events WHERE event_id LIKE {p:String}",
            parameters={"p": f"%-{tag}"},
        ).result_rows[0][0]
    finally:
        client.close()
    assert stored == 2, "held events are stored at once; only their judgement waits"
    assert (f"arrives-{tag}", "FR-CONSENT-MISSING") not in found
    assert (f"never-{tag}", "FR-CONSENT-MISSING") in found


def test_held_events_are_judged_when_the_validator_is_stopped(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    deployment = sample("deployment", deployment_id=f"d-{tag}", processor_id=f"p-{tag}")
    event = sample(
        "capture",
        event_id=f"held-{tag}",
        device_id=f"dev-held-{tag}",
        processor_id=f"p-{tag}",
        deployment_id=f"d-{tag}",
        subject_ref=f"s-{tag}",
        consent_id=f"never-{tag}",
    )
    port = free_port()
    data = tmp_path / "ch"
    # Only this test's events: earlier tests' events waiting for their own
    # registry records would count as held too.
    start_group_at_end(kafka_bootstrap, unique_group)
    validator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceaudit.cli",
            "consume",
            "--bootstrap",
            kafka_bootstrap,
            "--clickhouse",
            f"chdb://{data}",
            "--group",
            unique_group,
            "--metrics-port",
            str(port),
            "--registry-grace",
            "600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FACEAUDIT_KAFKA_TIMEOUT": "10"},
    )
    try:
        with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
            producer.send_registry("deployment", deployment)
            producer.flush()
            producer.send_event("capture", event)
            producer.flush()
        wait_for(lambda: (held_events(port) or 0) >= 1, 120, "the event to be held")
        validator.send_signal(signal.SIGTERM)
        _, err = validator.communicate(timeout=120)
    finally:
        if validator.poll() is None:
            validator.kill()
    assert validator.returncode == 0, err
    client = clickhouse_connect.get_client(dsn=f"chdb://{data}")
    try:
        found = client.query(
            "SELECT rule_id FROM faceaudit.violations WHERE event_id = {e:String}",
            parameters={"e": f"held-{tag}"},
        ).result_rows
    finally:
        client.close()
    assert ("FR-CONSENT-MISSING",) in found, "a held event is judged on shutdown, not dropped"
