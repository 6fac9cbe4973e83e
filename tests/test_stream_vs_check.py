"""The streaming validator and `faceaudit check` report the same violations.

Hypothesis generates small streams (several devices, both kinds, consents
valid, withdrawn or unknown, sequence gaps, rule-breaking fields); each is
sent through the real broker to the real validator (in this process, on a
fresh chDB store) and written as JSON lines for the checker.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import broker_environ, kafka_as, start_group_at_end
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import sample, streamed_at
from signing import TEST_SIGNERS, json_lines

from consumers.pipeline import Validator
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from faceaudit.cli import main
from producers.event_producer import EventProducer
from schemas import codec
from schemas.topics import TOPICS

pytestmark = pytest.mark.integration

event_spec = st.fixed_dictionaries(
    {
        "device": st.integers(0, 2),
        "kind": st.sampled_from(["capture", "match"]),
        "location_type": st.sampled_from(["retail", "bank", "toilet", "workplace"]),
        "public_place": st.booleans(),
        "signage_present": st.booleans(),
        "purpose": st.sampled_from(["payment", "access_control", "marketing", "public_security"]),
        "legal_basis": st.sampled_from(["consent", "statutory", "contract"]),
        "consent": st.sampled_from(["valid", "withdrawn", "unknown", None]),
        "gap_before": st.booleans(),
        "subject_age": st.sampled_from([None, 10, 30]),
        "raw_image_retained": st.booleans(),
        "match_mode": st.sampled_from(["verify_1to1", "identify_1toN"]),
        "alternative_available": st.booleans(),
    }
)


def build_stream(specs: list[dict], tag: str) -> tuple[list, list]:
    """Registry records and chained events (kind, record) for one generated stream."""
    processor, deployment = f"p-{tag}", f"d-{tag}"
    start = streamed_at()
    registry = [
        ("deployment", sample("deployment", deployment_id=deployment, processor_id=processor)),
        (
            "consent",
            sample(
                "consent", consent_id=f"valid-{tag}", processor_id=processor, subject_ref=f"s-{tag}"
            ),
        ),
        (
            "consent",
            sample(
                "consent",
                consent_id=f"withdrawn-{tag}",
                processor_id=processor,
                subject_ref=f"s-{tag}",
                withdrawn_at=start - timedelta(days=1),
            ),
        ),
    ]
    chains: dict[int, tuple[int, str | None]] = {}
    events = []
    for index, spec in enumerate(specs):
        seq, previous = chains.get(spec["device"], (0, None))
        if spec["gap_before"] and seq > 0:
            seq, previous = seq + 1, None  # the skipped event never existed
        overrides = {
            "event_id": f"{tag}-{index}",
            "device_id": f"dev-{tag}-{spec['device']}",
            "processor_id": processor,
            "deployment_id": deployment,
            "subject_ref": f"s-{tag}",
            "device_seq": seq,
            "prev_hash": previous,
            "event_time": start + timedelta(seconds=index),
            "consent_id": None if spec["consent"] is None else f"{spec['consent']}-{tag}",
            **{
                key: spec[key]
                for key in (
                    "location_type",
                    "public_place",
                    "purpose",
                    "legal_basis",
                    "subject_age",
                )
            },
        }
        if spec["kind"] == "capture":
            overrides |= {key: spec[key] for key in ("signage_present", "raw_image_retained")}
        else:
            overrides |= {key: spec[key] for key in ("match_mode", "alternative_available")}
        record = sample(spec["kind"], **overrides)
        digest = hashlib.sha256(codec.encode_payload(spec["kind"], record)).hexdigest()
        chains[spec["device"]] = (seq + 1, digest)
        events.append((spec["kind"], record))
    return registry, events


def stream_violations(
    bootstrap: str, registry: list, events: list, tag: str, store: Path
) -> set[tuple]:
    group = f"faceaudit-stream-vs-check-{tag}"
    start_group_at_end(bootstrap, group)
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        for kind, record in registry:
            producer.send_registry(kind, record)
        producer.flush()
        for kind, record in events:
            producer.send_raw(
                TOPICS[kind], codec.encode(kind, record), record["device_id"].encode()
            )
        producer.flush()
    client = open_store(f"chdb://{store}")
    try:
        settings_ = Settings.resolve(
            {"bootstrap": bootstrap, "group": group, "until_idle": 2.0}, environ=broker_environ()
        )
        Validator(settings_, ClickHouseGateway(client)).run()
        rows = client.query(
            "SELECT event_id, rule_id, details FROM faceaudit.violations "
            "WHERE processor_id = {p:String}",
            parameters={"p": f"p-{tag}"},
        ).result_rows
    finally:
        client.close()
    return {identity(event_id, rule, json.loads(details)) for event_id, rule, details in rows}


def check_violations(registry: list, events: list, path: Path, capsys) -> set[tuple]:
    with path.open("w") as out:
        for line in json_lines([*registry, *events]):
            out.write(line + "\n")
    capsys.readouterr()
    main(["check", str(path), "--format", "jsonl"])
    lines = capsys.readouterr().out.splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    return {identity(v["event_id"], v["rule_id"], v["details"]) for v in found}


def identity(event_id: str | None, rule_id: str, details: dict) -> tuple:
    """A violation's identity across both paths: its event, or for none, its consent."""
    return (event_id or details.get("consent_id"), rule_id)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(event_spec, min_size=1, max_size=25))
def test_stream_and_check_report_the_same_violations(
    specs: list[dict], kafka_bootstrap: str, tmp_path: Path, capsys
) -> None:
    tag = uuid.uuid4().hex[:10]
    registry, events = build_stream(specs, tag)
    offline = check_violations(registry, events, tmp_path / f"{tag}.jsonl", capsys)
    streamed = stream_violations(kafka_bootstrap, registry, events, tag, tmp_path / tag)
    assert streamed == offline
