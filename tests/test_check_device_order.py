"""`faceaudit check` judges each device's sequence over the whole input, in device_seq order.

A scenario is generated here: devices whose captures and matches share one
sequence, with real gaps, tampered payloads and forged hashes, events that
arrive far out of order, two processors that use the same device id, a
device that joins part way and one with thousands of events. It is written
as one JSON-lines file and as Avro containers per kind (split and ordered in
several ways); every form must report exactly the gaps that were made, and
the Avro forms exactly the chain breaks (JSON lines carry no payload bytes).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from arrow_events import event_table
from samples import sample
from signing import checkpoints_of
from test_check import Result, run, write_avro, write_jsonl

from consumers.input_chunks import READ_TIME
from consumers.kept_events import INPUT, KeptEvents
from schemas import codec

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
FORGED = "0" * 64
SIGNAGE = "FR-PUBLIC-SIGNAGE"

Event = tuple[str, dict[str, Any]]


@dataclass
class Device:
    """How one device's events are made: which numbers go missing, which are tampered."""

    processor: str
    device: str
    count: int
    step: timedelta  # between consecutive events
    first_seq: int = 0
    missing: frozenset[int] = frozenset()
    tampered: frozenset[int] = frozenset()  # payload altered after the next event chained it
    forged: frozenset[int] = frozenset()  # prev_hash replaced
    unsigned: frozenset[int] = frozenset()  # captures without signage: a per-event finding


PROCESSORS = {"p-1": ("d-1", "c-1"), "p-2": ("d-2", "c-2")}
DEVICES = [
    Device(
        "p-1",
        "dev-a",
        60,
        timedelta(seconds=45),  # more than the stream's 30-second window between events
        missing=frozenset({10, 11, 12, 40}),
        tampered=frozenset({25}),
        forged=frozenset({50}),
        unsigned=frozenset({4}),
    ),
    Device(  # the same device id under another processor: a device of its own
        "p-2", "dev-a", 30, timedelta(seconds=7), missing=frozenset({7, 8}), forged=frozenset({20})
    ),
    Device(
        "p-1",
        "dev-big",
        5_000,
        timedelta(seconds=1),
        missing=frozenset({1_234, *range(3_000, 3_500)}),
        tampered=frozenset({2_222}),
        forged=frozenset({4_000}),
        unsigned=frozenset({100, 2_500, 4_997}),
    ),
    Device("p-1", "dev-late", 31, timedelta(seconds=3), first_seq=100),  # joined part way
]


def build(device: Device) -> list[Event]:
    """The device's events as it sent them, chained, without the missing ones."""
    deployment, consent = PROCESSORS[device.processor]
    sent: list[Event] = []
    previous = None
    for n in range(device.count):
        seq = device.first_seq + n
        kind = "capture" if seq % 3 else "match"  # captures and matches share the sequence
        overrides = {
            "event_id": f"{device.processor}-{device.device}-{seq}",
            "event_time": T0 + n * device.step,
            "processor_id": device.processor,
            "deployment_id": deployment,
            "consent_id": consent,
            "device_id": device.device,
            "device_seq": seq,
            "prev_hash": FORGED if seq in device.forged else previous,
        }
        if kind == "capture" and seq in device.unsigned:
            overrides["signage_present"] = False
        record = sample(kind, **overrides)
        previous = hashlib.sha256(codec.encode_payload(kind, record)).hexdigest()
        if seq in device.tampered:
            record = record | {"retention_days": 7}  # still compliant, but not what was chained
        if seq not in device.missing:
            sent.append((kind, record))
    return sent


def registry() -> list[Event]:
    records: list[Event] = []
    for processor, (deployment, consent) in PROCESSORS.items():
        records.append(
            ("deployment", sample("deployment", deployment_id=deployment, processor_id=processor))
        )
        records.append(("consent", sample("consent", consent_id=consent, processor_id=processor)))
    return records


def arrival_order(seed: int = 11) -> list[Event]:
    """All devices' events interleaved at random, each device's mostly in order.

    Adjacent events swap places now and then, and a few hundred of the big
    device's events arrive only at the very end: thousands of events late.
    """
    rng = random.Random(seed)
    queues = [build(device) for device in DEVICES]
    late = [queues[2].pop(rng.randrange(len(queues[2]))) for _ in range(300)]
    arrived: list[Event] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        arrived.append(queue.pop(0))
        if len(arrived) > 1 and rng.random() < 0.1:
            arrived[-1], arrived[-2] = arrived[-2], arrived[-1]
    return arrived + late


# What the devices above were made to show, written out rather than derived.
EXPECTED_GAPS = {  # (processor, device, first missing, last missing, the event after the gap)
    ("p-1", "dev-a", 10, 12, "p-1-dev-a-13"),
    ("p-1", "dev-a", 40, 40, "p-1-dev-a-41"),
    ("p-2", "dev-a", 7, 8, "p-2-dev-a-9"),
    ("p-1", "dev-big", 1_234, 1_234, "p-1-dev-big-1235"),
    ("p-1", "dev-big", 3_000, 3_499, "p-1-dev-big-3500"),
}
EXPECTED_CHAIN_BREAKS = {  # (processor, device, device_seq, event): after a tampered, at a forged
    ("p-1", "dev-a", 26, "p-1-dev-a-26"),
    ("p-1", "dev-a", 50, "p-1-dev-a-50"),
    ("p-2", "dev-a", 20, "p-2-dev-a-20"),
    ("p-1", "dev-big", 2_223, "p-1-dev-big-2223"),
    ("p-1", "dev-big", 4_000, "p-1-dev-big-4000"),
}
EXPECTED_PER_EVENT = {
    (event, SIGNAGE)
    for event in ("p-1-dev-a-4", "p-1-dev-big-100", "p-1-dev-big-2500", "p-1-dev-big-4997")
}


def gaps_found(result: Result) -> set[tuple[str, str, int, int, str]]:
    return {
        (
            v["processor_id"],
            v["device_id"],
            v["details"]["first_missing"],
            v["details"]["last_missing"],
            v["event_id"],
        )
        for v in result.violations
        if v["rule_id"] == "AUDIT-SEQ-GAP"
    }


def chain_breaks_found(result: Result) -> set[tuple[str, str, int, str]]:
    return {
        (v["processor_id"], v["device_id"], v["details"]["device_seq"], v["event_id"])
        for v in result.violations
        if v["rule_id"] == "AUDIT-CHAIN-BREAK"
    }


def per_event_found(result: Result) -> set[tuple[str, str]]:
    stream = {"AUDIT-SEQ-GAP", "AUDIT-CHAIN-BREAK"}
    return {(v["event_id"], v["rule_id"]) for v in result.violations if v["rule_id"] not in stream}


def split(records: list[dict[str, Any]], parts: int) -> list[list[dict[str, Any]]]:
    size = -(-len(records) // parts)
    return [records[i : i + size] for i in range(0, len(records), size)]


def avro_inputs(directory: Path, events: list[Event], layout: str) -> list[str | Path]:
    """The events as Avro containers per kind, with the registry, laid out as `layout` says.

    An Avro container cannot carry signatures: where the registry is one, the
    check runs under --trust none."""
    captures = [record for kind, record in events if kind == "capture"]
    matches = [record for kind, record in events if kind == "match"]
    vouched = write_jsonl(directory / "checkpoints.jsonl", checkpoints_of(events))
    if layout == "by-kind":
        return [
            vouched,
            write_jsonl(directory / "registry.jsonl", registry()),
            write_avro(directory / "captures.avro", "capture", captures),
            write_avro(directory / "matches.avro", "match", matches),
        ]
    avro_registry = [
        write_avro(directory / f"{kind}.avro", kind, [r for k, r in registry() if k == kind])
        for kind in ("deployment", "consent")
    ]
    if layout == "matches-first":
        return [
            "--trust=none",
            vouched,
            write_avro(directory / "matches.avro", "match", matches),
            write_avro(directory / "captures.avro", "capture", captures),
            *avro_registry,
        ]
    pieces = [
        write_avro(directory / f"{kind}-{n}.avro", kind, part)
        for kind, records, parts in (("capture", captures, 3), ("match", matches, 2))
        for n, part in enumerate(split(records, parts))
    ]
    random.Random(5).shuffle(pieces)
    return ["--trust=none", *pieces[:2], vouched, *avro_registry, *pieces[2:]]


def stream_findings_removed(result: Result, rule_ids: set[str]) -> list[dict[str, Any]]:
    kept = [v for v in result.violations if v["rule_id"] not in rule_ids]
    return sorted(kept, key=lambda v: (v["event_id"], v["rule_id"]))


def check_json(directory: Path, capsys: pytest.CaptureFixture[str]) -> Result:
    path = write_jsonl(directory / "all.jsonl", [*registry(), *arrival_order()])
    return run(capsys, path)


def test_json_lines_report_exactly_the_gaps_that_were_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = check_json(tmp_path, capsys)
    assert result.code == 1
    assert gaps_found(result) == EXPECTED_GAPS
    assert chain_breaks_found(result) == set(), "JSON lines carry no payload bytes"
    assert per_event_found(result) == EXPECTED_PER_EVENT
    assert len(result.violations) == len(EXPECTED_GAPS) + len(EXPECTED_PER_EVENT)
    summary = result.err.splitlines()[-1]
    events = len(arrival_order())
    keys = len(PROCESSORS)  # a key record per processor, and a checkpoint per event
    assert f"checked {2 * events + len(registry()) + keys:,} records ({events:,} events)" in summary
    assert f"{len(result.violations):,} violations, 0 bad records" in summary


@pytest.mark.parametrize("layout", ["by-kind", "matches-first", "split"])
def test_avro_per_kind_reports_exactly_the_gaps_and_chain_breaks_that_were_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    paths = avro_inputs(tmp_path, arrival_order(), layout)
    result = run(capsys, *paths)
    assert result.code == 1
    assert result.error_lines == []
    assert gaps_found(result) == EXPECTED_GAPS
    assert chain_breaks_found(result) == EXPECTED_CHAIN_BREAKS
    assert per_event_found(result) == EXPECTED_PER_EVENT
    expected = len(EXPECTED_GAPS) + len(EXPECTED_CHAIN_BREAKS) + len(EXPECTED_PER_EVENT)
    assert len(result.violations) == expected

    as_json = check_json(tmp_path, capsys)
    chain = {"AUDIT-CHAIN-BREAK"}
    assert stream_findings_removed(result, chain) == stream_findings_removed(as_json, chain)
    assert run(capsys, *paths).out == result.out, "the same inputs give the same output"


def test_stream_findings_follow_the_per_event_ones_device_by_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, *avro_inputs(tmp_path, arrival_order(), "by-kind"))
    rules = [v["rule_id"] for v in result.violations]
    first_stream = rules.index("AUDIT-SEQ-GAP")
    assert set(rules[:first_stream]) == {SIGNAGE}
    stream = [
        (v["processor_id"], v["device_id"], seq_at(v)) for v in result.violations[first_stream:]
    ]
    assert stream == sorted(stream)


def seq_at(violation: dict[str, Any]) -> int:
    """The device_seq of the event a sequence finding names."""
    details = violation["details"]
    return details["device_seq"] if "device_seq" in details else details["last_missing"] + 1


def numbered(kind: str, event_id: str, seq: int, second: int, prev: Event | None) -> Event:
    """An event of device dev-dup, `second` seconds after T0, chained to `prev`."""
    prev_hash = None if prev is None else hashlib.sha256(codec.encode_payload(*prev)).hexdigest()
    record = sample(
        kind,
        event_id=event_id,
        event_time=T0 + timedelta(seconds=second),
        device_id="dev-dup",
        device_seq=seq,
        prev_hash=prev_hash,
    )
    return kind, record


@pytest.mark.parametrize("matches_first", [False, True], ids=["captures-first", "matches-first"])
def test_a_repeated_number_is_judged_once_at_the_first_event_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], matches_first: bool
) -> None:
    """Two events numbered 2: the first read (the earlier, e2) is judged, e2-b is not.

    So e3, chained to e2-b, breaks the chain; e1 given twice is a redelivery.
    """
    e0 = numbered("capture", "e0", 0, 0, None)
    e1 = numbered("match", "e1", 1, 1, e0)
    e2 = numbered("capture", "e2", 2, 2, e1)
    e2b = numbered("match", "e2-b", 2, 3, e1)
    e3 = numbered("capture", "e3", 3, 4, e2b)
    captures = write_avro(tmp_path / "captures.avro", "capture", [e0[1], e2[1], e3[1]])
    matches = write_avro(tmp_path / "matches.avro", "match", [e1[1], e2b[1]])
    again = write_avro(tmp_path / "again.avro", "match", [e1[1]])
    files = [matches, again, captures] if matches_first else [captures, matches, again]
    result = run(capsys, write_jsonl(tmp_path / "registry.jsonl", registry()), *files)
    assert result.fired == [("e3", "AUDIT-CHAIN-BREAK")]
    as_json = run(
        capsys, write_jsonl(tmp_path / "all.jsonl", [*registry(), e3, e2b, e2, e1, e0, e1])
    )
    assert (as_json.code, as_json.out) == (0, "")


def test_each_event_is_given_back_with_its_whole_envelope() -> None:
    record = sample("match", device_seq=7, prev_hash="ab" * 32)
    table = event_table("match", [record], "t", 0, [0])
    read_order = {READ_TIME: pa.array([0], pa.int64()), INPUT: pa.array([0], pa.uint32())}
    kept = KeptEvents(subjects=False)
    names = [*table.column_names, *read_order]
    kept.add(pa.table([*table.columns, *read_order.values()], names))
    [events] = kept.by_device()
    sha256 = hashlib.sha256(codec.encode_payload("match", record)).hexdigest()
    expected = {name: record[name] for name in codec.ENVELOPE} | {"payload_sha256": sha256}
    assert events.select(list(expected)).to_pylist() == [expected]
