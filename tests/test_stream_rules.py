"""Stream rules through the shared Judge: sequence gaps, hash chains, filing, deletion."""

from __future__ import annotations

import hashlib
import inspect
from datetime import timedelta

import pytest
from arrow_events import batch_tables, event_batch, judge_events
from samples import sample

from consumers.judge import Judge
from consumers.registry import Registry
from consumers.rules.sequence_columns import observe_tables
from consumers.rules.stream import SequenceTracker, add_working_days
from schemas import codec
from schemas.topics import EVENTS_TOPIC

PROFILES = ("cac-2025", "cac-2023-draft")


def judge(profile: str = "cac-2025") -> Judge:
    registry = Registry()
    registry.apply("deployment", sample("deployment"))
    registry.apply("consent", sample("consent"))
    return Judge(profile, registry)


def chain(count: int, device: str = "dev-1", processor: str = "p-1") -> list[tuple[dict, str]]:
    """`count` compliant captures of one device, chained as the producer SDK chains them."""
    events, previous = [], None
    start = sample("capture")["event_time"]
    prefix = device if processor == "p-1" else f"{processor}-{device}"
    for seq in range(count):
        record = sample(
            "capture",
            event_id=f"{prefix}-e{seq}",
            processor_id=processor,
            device_id=device,
            device_seq=seq,
            prev_hash=previous,
            event_time=start + timedelta(seconds=seq),
        )
        digest = hashlib.sha256(codec.encode_payload("capture", record)).hexdigest()
        events.append((record, digest))
        previous = digest
    return events


def judged(j: Judge, record: dict, digest: str | None) -> list:
    """One capture judged as a batch of its own, as the validator judges a batch."""
    return judge_events(j, "capture", [record], [digest])


def rules_found(j: Judge, events: list[tuple[dict, str | None]]) -> list[tuple[str, str]]:
    found = []
    for record, digest in events:
        found += [(v.rule_id, v.event_id) for v in judged(j, record, digest)]
    return found + [(v.rule_id, v.event_id) for v in j.finish()]


def test_an_intact_chain_in_order_raises_nothing() -> None:
    assert rules_found(judge(), chain(20)) == []


def test_out_of_order_arrival_inside_the_window_is_not_a_gap() -> None:
    events = chain(10)
    shuffled = [events[0], events[2], events[1], events[5], events[3], events[4], *events[6:]]
    assert rules_found(judge(), shuffled) == []


def test_a_real_gap_fires_once_at_the_first_event_after_it() -> None:
    events = chain(12)
    kept = events[:4] + events[7:]  # seq 4, 5, 6 never arrive
    j = judge()
    found = []
    for record, digest in kept:
        found += judged(j, record, digest)
    found += j.finish()
    gaps = [v for v in found if v.rule_id == "AUDIT-SEQ-GAP"]
    assert len(gaps) == 1
    assert gaps[0].event_id == "dev-1-e7"
    assert (gaps[0].details["first_missing"], gaps[0].details["last_missing"]) == (4, 6)
    assert "4" in gaps[0].message and "6" in gaps[0].message
    assert [v.rule_id for v in found] == ["AUDIT-SEQ-GAP"], "no chain break across a gap"


def test_a_gap_is_declared_once_the_reorder_window_fills() -> None:
    # 1,000 events buffered ahead of a missing number: the gap is declared
    # while streaming, without waiting for the end of the input.
    events = chain(1003)
    j = judge()
    found = []
    for record, digest in events[:1] + events[2:]:
        found += judged(j, record, digest)
    assert [(v.rule_id, v.details["first_missing"]) for v in found] == [("AUDIT-SEQ-GAP", 1)]


def test_violations_at_buffered_events_carry_their_whole_envelope() -> None:
    # The reorder buffer keeps only an event's envelope: a gap and a chain
    # break found at buffered events must still name everything about them.
    events = chain(8)
    record, digest = events[6]
    events[6] = (dict(record, prev_hash="0" * 64, region_code="440305"), digest)
    j = judge()
    found = []
    for record, digest in [events[0], *events[3:], events[1]]:  # seq 2 never arrives
        found += judged(j, record, digest)
    found += j.finish()
    assert [(v.rule_id, v.event_id) for v in found] == [
        ("AUDIT-SEQ-GAP", "dev-1-e3"),
        ("AUDIT-CHAIN-BREAK", "dev-1-e6"),
    ]
    for violation in found:
        source = next(r for r, _ in events if r["event_id"] == violation.event_id)
        assert (
            violation.processor_id,
            violation.deployment_id,
            violation.device_id,
            violation.region_code,
            violation.event_time,
        ) == (
            source["processor_id"],
            source["deployment_id"],
            source["device_id"],
            source["region_code"],
            source["event_time"],
        )


def test_the_reorder_window_is_measured_in_event_time() -> None:
    # Events one second apart, seq 1 missing: the gap waits until the device's
    # event time is 30 s past the first event that came ahead of it (seq 2).
    events = chain(40)
    window = judge().catalogue.parameters("cac-2025").reorder_window_seconds
    j = judge()
    found_at = []
    for record, digest in events[:1] + events[2:]:
        if judged(j, record, digest):
            found_at.append(record["device_seq"])
    assert found_at == [2 + window]


def test_a_late_event_inside_the_event_time_window_is_not_a_gap() -> None:
    events = chain(30)
    late = [events[0], *events[2:25], events[1], *events[25:]]
    assert rules_found(judge(), late) == []


def test_the_sequence_rule_takes_no_arrival_time() -> None:
    """Nothing outside the events moves the window: a backlog and a file are judged alike."""
    assert "arrival" not in inspect.signature(observe_tables).parameters
    assert "arrival" not in inspect.signature(SequenceTracker.observe).parameters


def interleave(*streams: list) -> list:
    return [event for group in zip(*streams, strict=True) for event in group]


def sequence_found(j: Judge, events: list[tuple[dict, str | None]]) -> list[tuple[str, str]]:
    """Only the sequence rules (another processor's events break its consent rules)."""
    found = [
        v
        for record, digest in events
        for table in event_batch("capture", [record], [digest]).values()
        for v, _ in j.violations(observe_tables(j.sequences, [table]))
    ]
    return [(v.rule_id, v.event_id) for v in [*found, *j.finish()]]


def test_two_processors_with_the_same_device_id_do_not_interfere() -> None:
    # Same device_id, different processors: each is its own device, so p-2's
    # device (joined part way, at seq 10) neither continues nor breaks p-1's.
    ours, theirs = chain(10), chain(20, processor="p-2")[10:]
    assert sequence_found(judge(), interleave(ours, theirs)) == []


def test_a_gap_and_a_chain_break_stay_with_their_processors_device() -> None:
    ours = chain(10)
    theirs = chain(10, processor="p-2")
    record, digest = theirs[5]
    theirs[5] = (dict(record, prev_hash="0" * 64), digest)
    del ours[3]
    found = sequence_found(judge(), interleave(ours, theirs[:9]))
    assert sorted(found) == [("AUDIT-CHAIN-BREAK", "p-2-dev-1-e5"), ("AUDIT-SEQ-GAP", "dev-1-e4")]


def test_resume_takes_the_processor_and_the_device() -> None:
    ours, theirs = chain(8), chain(8, processor="p-2")
    j = judge()
    j.sequences.resume(("p-1", "dev-1"), 3, ours[2][1])  # the store holds p-1's 0 to 2
    # p-1 continues from the store (seq 3 never came); p-2, never resumed,
    # starts afresh from what comes first.
    assert sequence_found(j, [*ours[4:], *theirs[6:]]) == [("AUDIT-SEQ-GAP", "dev-1-e4")]
    j.sequences.resume(("p-1", "dev-1"), 100, None)  # already followed: keeps its state
    assert sequence_found(j, chain(9)[8:]) == []


def test_in_order_a_missing_number_is_a_gap_at_once() -> None:
    tracker = SequenceTracker.in_order()
    events = chain(6)
    found = []
    for record, digest in [*events[:2], *events[4:]]:
        found.append([rule for rule, *_ in tracker.observe(record, digest, None)])
    assert found == [[], [], ["AUDIT-SEQ-GAP"], []]
    assert tracker.finish() == []


def test_a_redelivered_event_is_not_a_violation() -> None:
    events = chain(5)
    assert rules_found(judge(), [*events[:3], events[2], events[1], *events[3:]]) == []


def test_joining_a_stream_part_way_is_not_a_gap() -> None:
    assert rules_found(judge(), chain(30)[10:]) == []


def test_a_tampered_payload_breaks_the_chain_at_the_next_event() -> None:
    events = chain(6)
    record, _ = events[2]
    tampered = dict(record, purpose="access_control")
    events[2] = (tampered, hashlib.sha256(codec.encode_payload("capture", tampered)).hexdigest())
    assert rules_found(judge(), events) == [("AUDIT-CHAIN-BREAK", "dev-1-e3")]


def test_a_forged_prev_hash_breaks_the_chain_at_that_event() -> None:
    events = chain(4)
    record, digest = events[2]
    events[2] = (dict(record, prev_hash="0" * 64), digest)
    assert rules_found(judge(), events) == [("AUDIT-CHAIN-BREAK", "dev-1-e2")]


def test_without_payload_bytes_the_chain_is_not_judged() -> None:
    events = [(dict(record, prev_hash="0" * 64), None) for record, _ in chain(4)]
    assert rules_found(judge(), events) == []


FILING_FIELDS = (
    "event_id",
    "subject_ref",
    "consent_id",
    "legal_basis",
    "purpose",
    "device_seq",
    "event_time",
)


def filing_events(count: int, days: int = 1) -> list[dict]:
    start = sample("match")["event_time"]
    return [
        sample(
            "match",
            event_id=f"m{i}",
            subject_ref=f"s-{i}",
            consent_id=None,
            legal_basis="statutory",
            purpose="public_security",
            device_seq=i,
            event_time=start + timedelta(days=days * i / count),
        )
        for i in range(count)
    ]


def in_batches(j: Judge, matches: list[dict], size: int = 20_000) -> list:
    """`matches` judged in batches of `size`, in order."""
    return [
        v
        for first in range(0, len(matches), size)
        for v in judge_events(j, "match", matches[first : first + size])
    ]


@pytest.mark.parametrize("profile", PROFILES)
def test_filing_fires_at_the_event_that_reaches_the_threshold(profile: str) -> None:
    j = judge(profile)
    threshold = j.catalogue.parameters(profile).filing_threshold
    j.registry.apply("deployment", sample("deployment", filing_id=None, filing_date=None))
    found = [v for v in in_batches(j, filing_events(threshold + 50)) if v.rule_id == "FR-FILING"]
    assert [v.event_id for v in found] == [f"m{threshold - 1}"]
    details = found[0].details
    assert details["subject_count"] == threshold and details["threshold"] == threshold
    crossed = filing_events(threshold)[-1]["event_time"].date()
    assert details["deadline"] == add_working_days(crossed, 30).isoformat()


@pytest.mark.parametrize("batch_size", [1_000, 7_777])
def test_filing_over_tables_fires_where_the_tracker_does_event_by_event(batch_size: int) -> None:
    judges = judge("cac-2023-draft"), judge("cac-2023-draft")
    for j in judges:
        j.registry.apply("deployment", sample("deployment", filing_id=None, filing_date=None))
    events = [  # captures and matches interleaved: the count follows the reading order
        ("capture" if i % 3 == 0 else "match", record)
        for i, record in enumerate(filing_events(20_000, days=3))
    ]
    events = [
        (kind, sample(kind, **{f: record[f] for f in FILING_FIELDS})) for kind, record in events
    ]
    by_event, by_table = judges
    expected = [
        (v.event_id, v.details)
        for _, record in events
        for v, _ in by_event.violations(by_event.filings.observe(record, by_event.registry, None))
    ]
    found = [
        (v.event_id, v.details)
        for first in range(0, len(events), batch_size)
        for v, _ in by_table.judge_tables(
            batch_tables(events[first : first + batch_size], EVENTS_TOPIC, 0, first)
        )
        if v.rule_id == "FR-FILING"
    ]
    assert len(expected) >= 2
    assert found == expected


def test_filing_is_reported_again_each_day_the_breach_lasts() -> None:
    j = judge("cac-2023-draft")
    j.registry.apply("deployment", sample("deployment", filing_id=None, filing_date=None))
    found = [v for v in in_batches(j, filing_events(20_000, days=3)) if v.rule_id == "FR-FILING"]
    days = [v.event_time.date() for v in found]
    assert len(found) == len(set(days)) >= 2


def test_a_filed_processor_never_breaches() -> None:
    j = judge("cac-2023-draft")  # the sample deployment has a filing_id
    found = in_batches(j, filing_events(10_050))
    assert "FR-FILING" not in {v.rule_id for v in found}


def withdrawn_judge() -> tuple[Judge, dict]:
    j = judge()
    withdrawn = sample("consent", withdrawn_at=sample("capture")["event_time"])
    j.registry.apply("consent", withdrawn)
    return j, withdrawn


def test_deletion_overdue_fires_when_the_window_ends_without_a_deletion() -> None:
    j, consent = withdrawn_judge()
    deadline = consent["withdrawn_at"] + timedelta(days=15)
    assert j.overdue(deadline - timedelta(seconds=1)) == []
    found = j.overdue(deadline)
    assert [(v.rule_id, v.event_id) for v in found] == [("FR-DELETION-OVERDUE", None)]
    assert found[0].details["consent_id"] == consent["consent_id"]
    assert found[0].details["subject_ref"] == consent["subject_ref"]
    assert j.overdue(deadline + timedelta(days=1)) == [], "reported once"


def test_a_deletion_inside_the_window_satisfies_the_withdrawal() -> None:
    j, consent = withdrawn_judge()
    j.observe_deletion(sample("deletion", deleted_at=consent["withdrawn_at"] + timedelta(days=3)))
    assert j.overdue(consent["withdrawn_at"] + timedelta(days=30)) == []


def test_a_deletion_after_the_window_does_not() -> None:
    j, consent = withdrawn_judge()
    j.observe_deletion(sample("deletion", deleted_at=consent["withdrawn_at"] + timedelta(days=16)))
    assert len(j.overdue(consent["withdrawn_at"] + timedelta(days=30))) == 1


def test_working_days_skip_weekends() -> None:
    friday = sample("capture")["event_time"].date()
    while friday.weekday() != 4:
        friday += timedelta(days=1)
    assert add_working_days(friday, 1) == friday + timedelta(days=3)
    assert add_working_days(friday, 5) == friday + timedelta(days=7)
