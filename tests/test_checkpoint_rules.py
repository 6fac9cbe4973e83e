"""AUDIT-CHECKPOINT-MISMATCH and AUDIT-UNCHECKPOINTED over batches of event columns."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from arrow_events import batch_tables, chained
from samples import sample

from consumers.batch import Position
from consumers.rules.checkpoint_columns import (
    MISMATCH,
    UNCHECKPOINTED,
    CheckpointTracker,
)
from consumers.rules.checkpoint_offline import offline_findings
from schemas import codec
from schemas.topics import EVENTS_TOPIC

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
WINDOW_EVENTS, WINDOW_SECONDS = 10, 600


def events(count: int, device: str = "dev-1", start: int = 0, step: float = 1.0) -> list:
    """`count` chained captures of `device`, `step` seconds apart."""
    made = [
        (
            "capture",
            sample(
                "capture",
                event_id=str(uuid.UUID(int=n + 1000 * hash(device) % 10**9)),
                device_id=device,
                event_time=T0 + timedelta(seconds=n * step),
            ),
        )
        for n in range(start + count)
    ]
    return chained(made)[start:]


def tables(read: list, first_offset: int) -> dict[str, pa.Table]:
    return batch_tables(read, EVENTS_TOPIC, 0, first_offset)


def digest(kind: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(codec.encode_payload(kind, record)).hexdigest()


def checkpoint(record: dict[str, Any], head_hash: str | None = None, offset: int = 999) -> tuple:
    covered = {
        "checkpoint_id": str(uuid.uuid4()),
        "processor_id": record["processor_id"],
        "device_id": record["device_id"],
        "device_seq": record["device_seq"],
        "head_hash": head_hash or digest("capture", record),
        "signed_at": record["event_time"],
    }
    return covered, Position(EVENTS_TOPIC, 0, offset)


def tracker() -> CheckpointTracker:
    return CheckpointTracker(WINDOW_EVENTS, WINDOW_SECONDS, compact_rows=4 * WINDOW_EVENTS)


def rules(found: list) -> list[str]:
    return [rule for rule, *_ in found]


def test_a_checkpoint_matching_its_event_is_quiet_and_covers_the_run() -> None:
    read = events(8)
    watch = tracker()
    watch.observe(tables(read, 0).values())
    assert watch.judge([checkpoint(read[-1][1])]) == []
    assert watch.covered == {("p-1", "dev-1"): 7}
    later = events(WINDOW_EVENTS, start=8)
    watch.observe(tables(later, 8).values())
    assert watch.judge([]) == [], "the run after the checkpoint has not ended"


def test_a_checkpoint_whose_head_differs_names_the_event_at_its_seq() -> None:
    read = events(5)
    watch = tracker()
    watch.observe(tables(read, 0).values())
    cp, at = checkpoint(read[2][1], head_hash="f" * 64)
    [(rule, details, event, anchor)] = watch.judge([(cp, at)])
    assert rule == MISMATCH and anchor == at
    assert event["event_id"] == read[2][1]["event_id"]
    assert details["payload_sha256"] == digest(*read[2]) and details["head_hash"] == "f" * 64


def test_a_checkpoint_naming_an_event_that_never_came_has_no_event() -> None:
    read = events(3)
    watch = tracker()
    watch.observe(tables(read, 0).values())
    ahead = read[-1][1] | {"device_seq": 7}
    [(rule, details, event, anchor)] = watch.judge([checkpoint(ahead)])
    assert (rule, event["event_id"], anchor) == (MISMATCH, None, None)
    assert details["payload_sha256"] is None


def test_an_event_altered_after_its_checkpoint_was_signed_is_found() -> None:
    """The device signed the head it sent; the stored event is not that one."""
    read = events(4)
    kind, last = read[-1]
    signed = checkpoint(last)
    altered = [*read[:-1], (kind, last | {"retention_days": 7})]
    watch = tracker()
    watch.observe(tables(altered, 0).values())
    assert rules(watch.judge([signed])) == [MISMATCH]


def test_more_events_than_the_window_without_a_checkpoint_is_reported_once_per_run() -> None:
    read = events(WINDOW_EVENTS + 1)
    watch = tracker()
    watch.observe(tables(read[:WINDOW_EVENTS], 0).values())
    assert watch.judge([]) == [], "the window holds its first event and ten more"
    watch.observe(tables(read[WINDOW_EVENTS:], WINDOW_EVENTS).values())
    [(rule, details, event, anchor)] = watch.judge([])
    assert rule == UNCHECKPOINTED and event["event_id"] == read[0][1]["event_id"]
    assert details["first_device_seq"] == 0 and details["uncovered_events"] == WINDOW_EVENTS + 1
    assert anchor == Position(EVENTS_TOPIC, 0, WINDOW_EVENTS), "found at the latest event"
    more = events(5, start=WINDOW_EVENTS + 1)
    watch.observe(tables(more, WINDOW_EVENTS + 1).values())
    assert watch.judge([]) == [], "the same run is reported once"
    watch.judge([checkpoint(more[-1][1])])
    again = events(WINDOW_EVENTS + 1, start=WINDOW_EVENTS + 6)
    watch.observe(tables(again, 100).values())
    [(rule, details, *_)] = watch.judge([])
    assert details["first_device_seq"] == WINDOW_EVENTS + 6, "a new run after the checkpoint"


def test_a_silent_device_is_reported_once_its_partition_moves_past_its_window() -> None:
    """The time that counts is the partition's: another partition read ahead (lag) does not
    make a device late."""
    read = events(3)
    watch = tracker()
    watch.observe(tables(read, 0).values())
    ahead = events(1, device="dev-elsewhere", step=1, start=0)
    ahead = [(kind, r | {"event_time": T0 + timedelta(hours=1)}) for kind, r in ahead]
    watch.observe(batch_tables(ahead, EVENTS_TOPIC, 1, 0).values())
    assert watch.judge([]) == [], "partition 1's time is not partition 0's"
    neighbour = events(2, device="dev-2", step=1)
    at_window = [
        (k, r | {"event_time": T0 + timedelta(seconds=WINDOW_SECONDS + 2)}) for k, r in neighbour
    ]
    watch.observe(tables(at_window[:1], 3).values())
    found = watch.judge([])
    assert [(rule, d["device_id"]) for rule, d, *_ in found] == [(UNCHECKPOINTED, "dev-1")]


def test_devices_are_judged_apart_and_a_restart_resumes_from_the_store() -> None:
    first, second = events(6, "dev-a"), events(6, "dev-b")
    watch = tracker()
    watch.observe(tables([*first, *second], 0).values())
    assert watch.judge([checkpoint(first[-1][1])]) == []
    assert set(watch._runs) == {("p-1", "dev-b")}
    kept = tables(second, 6)["capture"]  # what the store holds past dev-b's last checkpoint
    resumed = tracker()
    resumed.resume(dict(watch.covered), kept, {})
    more = events(WINDOW_EVENTS, "dev-b", start=6)
    resumed.observe(tables(more, 12).values())
    [(rule, details, *_)] = resumed.judge([])
    assert (rule, details["device_id"], details["first_device_seq"]) == (UNCHECKPOINTED, "dev-b", 0)
    reported = tracker()
    reported.resume(dict(watch.covered), kept, {("p-1", "dev-b"): 0})
    reported.observe(tables(more, 12).values())
    assert reported.judge([]) == [], "already reported before the restart"


def test_a_device_that_never_checkpoints_is_held_to_twice_the_window() -> None:
    watch = tracker()
    offset = 0
    for start in range(0, 5 * WINDOW_EVENTS, WINDOW_EVENTS):
        read = events(WINDOW_EVENTS, start=start)
        watch.observe(tables(read, offset).values())
        offset += len(read)
        watch.judge([])
    assert watch._kept_table().num_rows <= 4 * WINDOW_EVENTS
    old = events(1, start=3)[0][1]
    assert watch.judge([checkpoint(old, head_hash="0" * 64)]) == [], "dropped: not judged"


def test_a_run_covered_only_after_its_window_ended_is_reported_at_its_checkpoint() -> None:
    """One event, ten minutes and more of silence, then an event and its checkpoint."""
    read = events(2, step=WINDOW_SECONDS + 1)
    watch = tracker()
    watch.observe(tables(read, 0).values())
    covering, at = checkpoint(read[-1][1])
    found = watch.judge([(covering, at)])
    [(rule, details, event, anchor)] = found
    assert (rule, anchor, event["event_id"]) == (UNCHECKPOINTED, at, read[0][1]["event_id"])
    assert details["uncovered_events"] == 2
    in_time = events(2, device="dev-2", step=WINDOW_SECONDS - 1)
    watch.observe(tables(in_time, 2).values())
    assert watch.judge([checkpoint(in_time[-1][1])]) == []


def test_offline_runs_are_cut_at_checkpoints_and_the_last_one_judged_at_the_latest_time() -> None:
    read = events(3 * WINDOW_EVENTS)
    table = tables(read, 0)["capture"]
    kept = table.append_column("input", pa.repeat(pa.scalar(0, pa.uint32()), table.num_rows))
    every_half = [checkpoint(r)[0] for _, r in read[WINDOW_EVENTS // 2 - 1 :: WINDOW_EVENTS // 2]]
    quiet = offline_findings(kept, every_half, read[-1][1]["event_time"], WINDOW_EVENTS, 600)
    assert quiet == []
    sparse = [checkpoint(read[2 * WINDOW_EVENTS][1])[0]]  # 21 events, then 9 uncovered
    found = offline_findings(kept, sparse, read[-1][1]["event_time"], WINDOW_EVENTS, 600)
    assert [(rule, d["first_device_seq"], d["uncovered_events"]) for rule, d, *_ in found] == [
        (UNCHECKPOINTED, 0, 2 * WINDOW_EVENTS + 1)
    ]
    much_later = read[-1][1]["event_time"] + timedelta(seconds=601)
    found = offline_findings(kept, sparse, much_later, WINDOW_EVENTS, 600)
    assert [d["first_device_seq"] for _, d, *_ in found] == [0, 2 * WINDOW_EVENTS + 1]
    forged = [checkpoint(read[4][1], head_hash="a" * 64)[0]]
    found = offline_findings(kept, forged, read[4][1]["event_time"], WINDOW_EVENTS, 600)
    assert [rule for rule, *_ in found] == [MISMATCH, UNCHECKPOINTED], "25 left uncovered"


def stamped(read: list, first_offset: int, partition: int = 0, skewed: int | None = None) -> dict:
    """`read` as the broker stamps it: received at its event time, but for the event at
    index `skewed`, dated a year after it arrived."""
    times = [record["event_time"] for _, record in read]
    if skewed is not None:
        kind, record = read[skewed]
        read = [*read]
        read[skewed] = (kind, record | {"event_time": times[skewed] + timedelta(days=365)})
    return batch_tables(read, EVENTS_TOPIC, partition, first_offset, times)


def test_an_event_dated_far_ahead_does_not_make_its_partition_late() -> None:
    """AUDIT-CLOCK-SKEW: a skewed event moves no watermark, the partition's included."""
    read = events(3)
    watch = tracker()
    watch.observe(stamped(read, 0).values())
    other = events(1, device="dev-2")
    watch.observe(stamped(other, 3, skewed=0).values())
    assert watch.judge([]) == [], "the year-ahead event does not end dev-1's window"


def test_a_skewed_event_inside_a_run_does_not_stretch_it_past_the_window() -> None:
    read = events(4)
    watch = tracker()
    watch.observe(stamped(read, 0, skewed=2).values())
    assert watch.judge([checkpoint(read[-1][1])]) == [], "four events within seconds"
    unstamped = tracker()  # from a file: no broker time, so no skew is known
    kind, record = read[2]
    jumped = [*read[:2], (kind, record | {"event_time": T0 + timedelta(days=365)}), read[3]]
    unstamped.observe(tables(jumped, 0).values())
    found = unstamped.judge([checkpoint(read[-1][1])])
    assert UNCHECKPOINTED in rules(found)
