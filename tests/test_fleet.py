"""The fleet simulator: reproducible, realistic, and honest about what it breaks."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from arrow_events import batch_tables
from helpers import kafka_as
from signing import fleet_signing_keys

from consumers.registry import Registry
from consumers.rules.catalogue import PROFILES
from consumers.rules.columnar import ColumnarRules
from core.clients import KafkaConfig
from producers.event_producer import DeviceChain
from producers.fleet import (
    CHECKPOINT_MISMATCH,
    CLOCK_SKEW,
    CONSENT_REWRITE,
    FAULTS,
    FORGED_CONSENT,
    MATCH_FOLLOWS_CAPTURE,
    MEAN_STEP,
    RAW_IDENTIFIER,
    SEQUENCE_GAP,
    SKEW,
    Fleet,
)
from producers.simulate import simulate
from schemas import codec
from schemas.topics import EVENTS_TOPIC

START = datetime(2026, 3, 1, 8, tzinfo=UTC)
Event = tuple[str, dict[str, Any], list[str]]
# What an event's values may be: no bytes, so no image or template can hide in one.
SCALARS = (str, int, float, bool, datetime, list, type(None))


def _events(devices: int = 20, seed: int = 1, rate: float = 0.05, n: int = 2_000) -> list[Event]:
    return list(Fleet(devices, seed, rate, start=START).events(n))


def test_same_seed_gives_the_same_world_and_events() -> None:
    first, second = Fleet(20, 7, 0.2, start=START), Fleet(20, 7, 0.2, start=START)
    assert first.registry_records() == second.registry_records()
    assert list(first.events(500)) == list(second.events(500))


def test_another_seed_gives_other_events() -> None:
    assert _events(seed=1, n=50) != _events(seed=2, n=50)


def test_start_only_shifts_time_so_a_run_can_be_regenerated_later() -> None:
    def strip_times(record: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key != "event_time"}

    now, then = Fleet(20, 7, 0.2), Fleet(20, 7, 0.2, start=START)
    assert [(k, strip_times(r), v) for k, r, v in now.events(300)] == [
        (k, strip_times(r), v) for k, r, v in then.events(300)
    ]


def test_kinds_follow_the_capture_then_match_design() -> None:
    kinds = Counter(kind for kind, _, _ in _events(rate=0.0, n=4_000))
    capture_share = kinds["capture"] / sum(kinds.values())
    assert capture_share == pytest.approx(1 / (1 + MATCH_FOLLOWS_CAPTURE), abs=0.04)


def test_no_violation_rate_means_no_intended_violations() -> None:
    assert all(rules == [] for _, _, rules in _events(rate=0.0))


def test_full_violation_rate_breaks_exactly_one_rule_per_event() -> None:
    events = _events(rate=1.0)
    assert all(len(rules) == 1 for _, _, rules in events)
    assert {rules[0] for _, _, rules in events} == set(FAULTS)


def test_events_are_judged_as_intended_by_the_rule_engine_in_both_profiles() -> None:
    """Compliant events break no per-event rule; faulty ones exactly the one they name."""
    fleet = Fleet(40, 3, 0.3, start=START)
    registry = Registry()
    for kind, record in fleet.registry_records():
        if kind in ("consent", "deployment"):
            registry.apply(kind, record)
    events = list(fleet.events(3_000))
    chained = [(kind, {**record, "device_seq": 0, "prev_hash": None}) for kind, record, _ in events]
    tables = batch_tables(chained, EVENTS_TOPIC, 0, 0)
    for profile in PROFILES:
        rules = ColumnarRules(profile, registry)
        found: list[list[str]] = [[] for _ in events]
        for kind, table in tables.items():
            arrived = table.column("message_index").to_pylist()
            for row, rule_id, _ in rules.evaluate(kind, table):
                found[arrived[row]].append(rule_id)
        for (kind, record, intended), rules_found in zip(events, found, strict=True):
            assert sorted(rules_found) == intended, (profile, kind, record)


def test_every_record_encodes_once_the_sdk_has_chained_it() -> None:
    fleet = Fleet(20, 5, 0.5, start=START)
    for kind, record in fleet.registry_records():
        codec.encode(kind, record)
    for kind, record, _ in fleet.events(1_000):
        assert "device_seq" not in record and "prev_hash" not in record
        codec.encode(kind, DeviceChain().stamp(record))


def test_gaps_follow_a_device_s_first_event_and_leave_the_events_as_they_were() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    plain = list(Fleet(10, 7, 0.05, start).events(4000))
    gappy = list(Fleet(10, 7, 0.05, start, gap_rate=0.05).events(4000))
    assert [(kind, record) for kind, record, _ in plain] == [(k, r) for k, r, _ in gappy]
    seen: set[str] = set()
    gaps = 0
    for (_, record, plain_broken), (_, _, broken) in zip(plain, gappy, strict=True):
        device = record["device_id"]
        if SEQUENCE_GAP in broken:
            assert device in seen, "a device's first event cannot follow a gap"
            gaps += 1
        assert [rule for rule in broken if rule != SEQUENCE_GAP] == plain_broken
        seen.add(device)
    assert 120 < gaps < 280


def test_tampered_heads_leave_the_events_as_they_were() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    plain = list(Fleet(10, 7, 0.05, start).events(4000))
    tampered = list(Fleet(10, 7, 0.05, start, tamper_rate=0.02).events(4000))
    assert [(kind, record) for kind, record, _ in plain] == [(k, r) for k, r, _ in tampered]
    marked = sum(CHECKPOINT_MISMATCH in broken for *_, broken in tampered)
    assert 40 < marked < 120
    for (*_, plain_broken), (*_, broken) in zip(plain, tampered, strict=True):
        assert [rule for rule in broken if rule != CHECKPOINT_MISMATCH] == plain_broken
    with pytest.raises(ValueError, match="tamper_rate"):
        Fleet(10, 7, 0.05, start, tamper_rate=1.5)


def test_skewed_events_are_dated_ahead_and_the_rest_stay_as_they_were() -> None:
    plain = list(Fleet(10, 7, 0.05, START).events(4000))
    skewed = list(Fleet(10, 7, 0.05, START, skew_rate=0.02).events(4000))
    marked = 0
    for (kind, record, broken), (skewed_kind, moved, moved_broken) in zip(
        plain, skewed, strict=True
    ):
        assert kind == skewed_kind
        if CLOCK_SKEW in moved_broken:
            marked += 1
            assert moved["event_time"] == record["event_time"] + SKEW
            record = record | {"event_time": moved["event_time"]}
        assert moved == record
        assert [rule for rule in moved_broken if rule != CLOCK_SKEW] == broken
    assert 40 < marked < 120


def test_a_paced_fleet_keeps_time_with_its_rate() -> None:
    """At 50 events/s, 5,000 events span about 100 s of event time (unpaced: about 14 s)."""
    paced = list(Fleet(10, 7, 0.05, START, events_per_second=50).events(5000))
    span = (paced[-1][1]["event_time"] - START).total_seconds()
    assert 95 < span < 105
    unpaced = list(Fleet(10, 7, 0.05, START).events(5000))
    assert [r["event_id"] for _, r, _ in paced] == [r["event_id"] for _, r, _ in unpaced]
    assert (unpaced[-1][1]["event_time"] - START) == pytest.approx(5000 * MEAN_STEP, rel=0.05)
    with pytest.raises(ValueError, match="events_per_second"):
        Fleet(10, 7, 0.05, START, events_per_second=0)


def test_registry_faults_forge_a_new_consent_and_undo_a_withdrawal() -> None:
    fleet = Fleet(10, 7, 0.05, START)
    consents = {r["consent_id"]: r for kind, r in fleet.registry_records() if kind == "consent"}
    (_, forged, first), (_, unwithdrawn, second) = fleet.registry_faults()
    assert (first, second) == (FORGED_CONSENT, CONSENT_REWRITE)
    assert forged["consent_id"] not in consents and forged["consent_id"].endswith("-forged")
    known = consents[unwithdrawn["consent_id"]]
    assert known["withdrawn_at"] is not None and unwithdrawn["withdrawn_at"] is None
    assert list(Fleet(10, 7, 0.05, START).events(50)) == list(fleet.events(50)), "no draw"


def test_simulate_refuses_faults_it_cannot_sign() -> None:
    with pytest.raises(ValueError, match="need signing keys"):
        simulate(KafkaConfig("127.0.0.1:9"), events=1, devices=1, tamper_rate=0.1, progress=False)


def test_region_codes_are_six_digits() -> None:
    assert all(re.fullmatch(r"\d{6}", record["region_code"]) for _, record, _ in _events())


def test_devices_keep_processor_deployment_region_and_site() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for _, record, _ in _events(rate=0.5):
        where = tuple(
            record[name]
            for name in ("processor_id", "deployment_id", "region_code", "location_type")
        )
        assert seen.setdefault(record["device_id"], where) == where


def test_events_carry_no_names_or_images() -> None:
    """Subjects are pseudonyms, but where the fleet breaks AUDIT-RAW-IDENTIFIER on purpose."""
    for _, record, broken in _events(rate=0.5):
        assert not [key for key in record if "name" in key]
        assert all(isinstance(value, SCALARS) for value in record.values())
        if record["subject_ref"] is not None and RAW_IDENTIFIER not in broken:
            assert re.fullmatch(r"[0-9a-f]{64}", record["subject_ref"])


def test_a_raw_identifier_is_a_resident_id_or_a_mobile_number() -> None:
    """Both kinds AUDIT-RAW-IDENTIFIER looks for: a subject's resident identity number, an
    operator's mobile number."""
    found = Counter()
    for _, record, broken in _events(rate=0.5):
        if RAW_IDENTIFIER in broken:
            subject, operator = record["subject_ref"] or "", record.get("operator_id") or ""
            if re.fullmatch(r"\d{17}[\dX]", subject):
                found["resident id"] += 1
            elif re.fullmatch(r"1[3-9]\d{9}", operator):
                found["mobile"] += 1
            else:
                raise AssertionError(record)
    assert found["resident id"] > 0 and found["mobile"] > 0, found


def test_event_time_increases_from_start() -> None:
    times = [record["event_time"] for _, record, _ in _events()]
    assert times[0] > START
    assert all(earlier < later for earlier, later in itertools.pairwise(times))


def test_matches_usually_follow_a_capture_of_the_same_device() -> None:
    captures: dict[str, str] = {}
    linked = matches = 0
    for kind, record, _ in _events():
        if kind == "capture":
            captures[record["event_id"]] = record["device_id"]
            continue
        matches += 1
        if record["capture_event_id"] is not None:
            assert captures[record["capture_event_id"]] == record["device_id"]
            linked += 1
    assert linked / matches > 0.9


def test_registry_comes_first_and_covers_compliant_events() -> None:
    fleet = Fleet(20, 1, 0.0, start=START)
    registry = fleet.registry_records()
    kinds = [kind for kind, _ in registry]
    assert kinds == sorted(kinds, key=["deployment", "consent", "deletion"].index)
    deployments = {r["deployment_id"] for kind, r in registry if kind == "deployment"}
    consents = {r["consent_id"] for kind, r in registry if kind == "consent"}
    dated = [r.get("granted_at") or r.get("pipia_date") or r["deleted_at"] for _, r in registry]
    assert max(dated) < START
    for _, record, _ in fleet.events(1_000):
        assert record["deployment_id"] in deployments
        assert record["consent_id"] is None or record["consent_id"] in consents


def test_withdrawals_are_later_records_of_an_earlier_grant() -> None:
    registry = Fleet(20, 1, 0.0, start=START).registry_records()
    grants: dict[str, int] = {}
    withdrawals = 0
    for position, (kind, record) in enumerate(registry):
        if kind != "consent":
            continue
        if record["withdrawn_at"] is None:
            grants[record["consent_id"]] = position
        else:
            assert grants[record["consent_id"]] < position
            assert record["granted_at"] < record["withdrawn_at"] < START
            withdrawals += 1
    assert withdrawals > 0


@pytest.mark.parametrize(
    ("devices", "violation_rate", "start"),
    [(0, 0.1, START), (5, 1.5, START), (5, -0.1, START), (5, 0.1, datetime(2026, 3, 1))],
)
def test_invalid_fleet_arguments_are_refused(
    devices: int, violation_rate: float, start: datetime
) -> None:
    with pytest.raises(ValueError):
        Fleet(devices, 1, violation_rate, start=start)


def test_simulate_refuses_a_non_positive_rate_before_connecting() -> None:
    with pytest.raises(ValueError, match="rate"):
        simulate(KafkaConfig("127.0.0.1:9"), events=1, devices=1, rate=0, progress=False)


def test_simulate_sends_registry_and_events(kafka_bootstrap: str) -> None:
    report = simulate(
        kafka_as("producer"),
        events=300,
        devices=20,
        seed=4,
        violation_rate=0.2,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    assert report.events_sent == 300 == sum(report.by_kind.values())
    assert set(report.by_kind) == {"capture", "match"}
    assert report.registry_records > 0
    assert 0 < sum(report.intended_violations.values()) < 300
    assert report.seconds > 0


def test_simulate_holds_the_requested_rate(kafka_bootstrap: str) -> None:
    report = simulate(
        kafka_as("producer"),
        events=100,
        devices=5,
        rate=200.0,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    assert report.seconds >= 99 / 200
