"""The offline checker behind ``faceaudit check``: files of records, judged like the stream.

It feeds the same ``Judge`` as the streaming validator, in the order rules.md
prescribes for finite input: every registry record and deletion of every
input first (a later record with the same id wins; with signatures checked,
the inputs' key records before them, and a record that is not signed by its
processor is refused: REG-UNSIGNED-RECORD), then events, then the sequence
rules, then FR-DELETION-OVERDUE as of the latest ``event_time`` in the
input. So a file and the same records sent through Kafka, which keeps each
device's order, yield the same findings (the hash chain is checked only
where payload bytes exist, i.e. for Avro input).

Inputs are read natively into Arrow tables (``record_batches``, on a thread
of their own) and judged chunk by chunk over their columns, as the validator
judges a batch: the per-event rules, and FR-FILING, which counts a
processor's subjects in the order the events were read, across kinds.
Several inputs are interleaved by event time, as a consumer reading several
topics does: for inputs each sorted by event time, that is a stable order by
(event time, input, position); ``consumers.input_chunks`` has the rule for
an input that is not, the order ``heapq.merge`` gives. FR-FILING then counts
once every input is read, in that order, so it counts a processor's
subjects in time order whichever file holds them; the per-event findings
come as each input is read, input by input, and FR-FILING's after them.

AUDIT-SEQ-GAP and AUDIT-CHAIN-BREAK are judged once every input is read.
The whole input is then at hand: each device's events, from any number of
files of any kinds (an Avro container holds one kind, so a device's captures
and matches are always in different files), are judged in ``device_seq``
order, and only numbers missing from the whole input are gaps; no reorder
window is needed. Until then only each event's envelope and payload hash are
kept, in columns (``consumers.kept_events``). When several events carry one
``device_seq``, the first read is judged and the others are not: with the
same ``event_id`` they are redeliveries; with another ``event_id`` they are
not reported either, and which one counts follows the reading order above
(across files the earlier event time, then the earlier input). These
findings come after the per-event ones, device by device in sorted
(processor_id, device_id) order, each device's in ``device_seq`` order.

Violations are handed to a writer as they are found, so output starts at once
and memory does not grow with them (except for the table, which sorts).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import POSITION_COLUMNS
from consumers.input_chunks import READ_TIME, Chunk, ReadClock, chunks
from consumers.judge import Anchored, Judge, Tables
from consumers.kept_events import INPUT, KeptEvents
from consumers.keyring import KeyRing, Refusal
from consumers.prefetch import Ahead
from consumers.readers import OnBad, Source
from consumers.registry import Record, Registry
from consumers.rules.catalogue import SEVERITIES, Catalogue, check_profile
from consumers.rules.sequence_columns import observe_tables
from consumers.tables import MESSAGE_INDEX
from consumers.violation import Violation
from schemas import codec
from schemas.topics import EVENT_KINDS

OnViolation = Callable[[Violation], None]

_SEVERITY_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}


@dataclass(slots=True)
class CheckStats:
    """What one check read and found, for the closing line on stderr."""

    records: int = 0  # good records of every kind
    events: int = 0  # capture and match events judged
    violations: int = 0
    bad_records: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self, inputs: int) -> str:
        """One line: what was read, what was found, how fast."""
        return (
            f"checked {self.records:,} records ({self.events:,} events) from {inputs} "
            f"input{'s' if inputs != 1 else ''}: {self.violations:,} violations, "
            f"{self.bad_records:,} bad records, {self.seconds:.2f} s "
            f"({self.events_per_second:,.0f} events/s)"
        )


def check(
    sources: Sequence[Source],
    profile: str,
    on_violation: OnViolation,
    on_bad: OnBad,
    catalogue: Catalogue | None = None,
    trust: str = "signatures",
) -> CheckStats:
    """Judge every record of ``sources`` under ``profile``; report findings and bad records.

    ``trust``: ``signatures`` (registry records count only if signed) or ``none``.
    """
    started = time.perf_counter()
    stats = CheckStats()

    def emit(found: list[Anchored]) -> None:
        """Violations at the events of one step, in the order of those events."""
        found.sort(key=_offset)  # stable: each event's in the order they were found
        stats.violations += len(found)
        for violation, _ in found:
            on_violation(violation)

    def bad(line: str) -> None:
        stats.bad_records += 1
        on_bad(line)

    reading = Ahead(_read(sources, bad))  # starts at once, alongside the registry pass
    try:
        judge = Judge(check_profile(profile), Registry(), catalogue, in_order=True)
        keyring = KeyRing() if trust == "signatures" else None
        found, checkpoints = load_registry(sources, judge, keyring)
        emit([(violation, None) for violation in found])
        merged = len(sources) > 1  # FR-FILING waits for every input, to count in merged order
        kept = KeptEvents(subjects=merged)
        latest: datetime | None = None
        for chunk, events in reading:
            stats.records += sum(table.num_rows for table in chunk.values())
            if not events:
                continue
            stats.events += sum(table.num_rows for table in events.values())
            latest = _later(latest, events)
            emit(judge.judge_rule_tables(events) if merged else judge.judge_tables(events))
            for table in events.values():
                kept.add(table)
    finally:
        reading.close()
    if merged:
        for arrived in kept.in_read_order():
            emit(judge.judge_filings(arrived))
    by_device = list(kept.by_device())
    for part in by_device:
        emit(judge.violations(observe_tables(judge.sequences, [part])))
    if by_device:
        emit(judge.violations(judge.offline_checkpoints(by_device, checkpoints, latest)))
    if latest is not None:
        emit([(violation, None) for violation in judge.overdue(latest)])
    stats.seconds = time.perf_counter() - started
    return stats


def _read(sources: Sequence[Source], on_bad: OnBad) -> Iterator[tuple[Chunk, Tables]]:
    """Each chunk of every input, in turn, with its events placed in the read order."""
    for number, source in enumerate(sources):
        clock = ReadClock()
        for chunk in chunks(source.record_batches(on_bad)):
            read_times = clock.read_times(chunk)
            events = {
                kind: _placed(table, number, read_times[kind])
                for kind, table in chunk.items()
                if kind in EVENT_KINDS
            }
            yield chunk, events


def _placed(table: pa.Table, number: int, read_time: pa.Array) -> pa.Table:
    """Events of input ``number`` with their read order and a position to anchor findings at:
    the input as partition, the position in it as offset (the topic is left empty)."""
    rows = table.num_rows
    topic, partition, offset = POSITION_COLUMNS
    return (
        table.append_column(READ_TIME, read_time)
        .append_column(INPUT, pa.repeat(pa.scalar(number, pa.uint32()), rows))
        .append_column(topic, pa.repeat("", rows))
        .append_column(partition, pa.repeat(pa.scalar(number, pa.uint32()), rows))
        .append_column(offset, table.column(MESSAGE_INDEX).cast(pa.uint64()))
    )


def _offset(found: Anchored) -> int:
    """Where a violation's event stands in the step that found it (none: after all)."""
    anchor = found[1]
    return -1 if anchor is None else anchor.offset


def _later(latest: datetime | None, events: Tables) -> datetime:
    """The latest event time of ``latest`` and the events."""
    times = [pc.max(table.column("event_time")).as_py() for table in events.values()]
    return max(times if latest is None else [latest, *times])


def load_registry(
    sources: Iterable[Source], judge: Judge, keyring: KeyRing | None
) -> tuple[list[Violation], list[Record]]:
    """Apply every good consent, deployment and deletion record of the inputs, in input
    order (later wins); the violations of the records refused and the rewrites, and the
    checkpoints that count, in input order.

    With a key ring (signatures checked), the key records of every input are
    registered first, and a signed kind's record counts only if its signature
    verifies over the record encoded again (Avro binary is deterministic).
    """
    registered = [item for source in sources for item in source.registry()]
    if keyring is not None:
        for item in registered:
            if item.kind == "key":
                keyring.add(item.record)
    records = [item for item in registered if item.kind != "key"]
    refusals: list[Refusal | None] = [None] * len(records)
    if keyring is not None:
        refusals = keyring.refusals(
            [(kind, rec, codec.encode_parsed(kind, rec), sig) for kind, rec, sig in records]
        )
    found = []
    checkpoints = []
    read_at = datetime.now(UTC)
    for (kind, record, _), refused in zip(records, refusals, strict=True):
        if refused is not None and kind == "checkpoint":
            found += judge.bad_checkpoint(record, refused)
        elif refused is not None:
            found += judge.unsigned(kind, record, refused, read_at)
        elif kind == "checkpoint":
            checkpoints.append(record)
        elif kind == "deletion":
            judge.observe_deletion(record)
        else:
            found += judge.apply_registry(kind, record)
    return found, checkpoints


# -- output ---------------------------------------------------------------------


def violation_json(violation: Violation) -> dict[str, Any]:
    """A violation as one JSON object; times are ISO-8601 in UTC with ``Z``."""
    return {
        "violation_id": violation.violation_id,
        "rule_id": violation.rule_id,
        "severity": violation.severity,
        "profile": violation.profile,
        "catalogue_version": violation.catalogue_version,
        "articles": list(violation.articles),
        "message": violation.message,
        "event_id": violation.event_id,
        "event_time": iso_z(violation.event_time),
        "processor_id": violation.processor_id,
        "deployment_id": violation.deployment_id,
        "device_id": violation.device_id,
        "region_code": violation.region_code,
        "details": violation.details,
    }


def iso_z(moment: datetime) -> str:
    """``2026-03-01T08:00:00Z``: the contract's JSON form of a timestamp."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_default(value: object) -> str:
    """Details are meant to be JSON already; a stray datetime or date still prints readably."""
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class JsonLinesWriter:
    """Writes each violation as one JSON line as soon as it is found."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, violation: Violation) -> None:
        line = json.dumps(violation_json(violation), ensure_ascii=False, default=_json_default)
        self._out.write(line + "\n")

    def close(self) -> None:
        """Nothing is held back."""


class TableWriter:
    """Collects violations, then writes counts by severity and rule, then one line per violation."""

    def __init__(self, out: TextIO, profile: str, catalogue_version: str) -> None:
        self._out = out
        self._profile = profile
        self._version = catalogue_version
        self._violations: list[Violation] = []

    def write(self, violation: Violation) -> None:
        self._violations.append(violation)

    def close(self) -> None:
        self._out.write(format_table(self._violations, self._profile, self._version))


def writer_for(
    output_format: str, out: TextIO, profile: str, catalogue_version: str
) -> JsonLinesWriter | TableWriter:
    """The writer for ``jsonl`` (default) or ``table`` output."""
    if output_format == "table":
        return TableWriter(out, profile, catalogue_version)
    return JsonLinesWriter(out)


def format_table(violations: Sequence[Violation], profile: str, catalogue_version: str) -> str:
    """Counts by severity (critical first), then count (largest first) and rule; then the list."""
    heading = f"profile {profile}, catalogue {catalogue_version}"
    if not violations:
        return f"No violations ({heading}).\n"
    counts = Counter((v.severity, v.rule_id) for v in violations)
    order = sorted(counts, key=lambda key: (_SEVERITY_RANK[key[0]], -counts[key], key[1]))
    rule_width = max(len("rule"), *(len(rule) for _, rule in counts))
    lines = [
        f"{len(violations):,} violations ({heading})",
        "",
        f"{'severity':<9} {'rule':<{rule_width}} {'count':>9}",
        *(f"{sev:<9} {rule:<{rule_width}} {counts[sev, rule]:>9,}" for sev, rule in order),
        "",
        f"{'time':<27} {'rule':<{rule_width}} {'severity':<9} {'event_id':<36} message",
        *(
            f"{iso_z(v.event_time):<27} {v.rule_id:<{rule_width}} {v.severity:<9} "
            f"{v.event_id or '-':<36} {v.message}"
            for v in violations
        ),
    ]
    return "\n".join(lines) + "\n"
