"""Checkpoint rule cost per event: the tracker over a signing fleet's stream, in one process.

    python -m bench.checkpoint_tracker [--events 100000] [--batch-size 20000] [--every 500]

Builds the bench fleet's events chained as the SDK chains them, with the
checkpoints the SDK sends among them (every 500 events of a device by
default, and at the end; `--every 20` prices a fleet that checkpoints
often), decodes them in batches outside the clock, then times
``CheckpointTracker.observe`` and ``judge`` over every batch, best of three.
A fleet that checkpoints as scheduled must give no finding.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import pyarrow as pa

from bench.load import DEVICES, VIOLATION_RATE
from bench.offline import chained
from consumers.batch import Position
from consumers.rules.catalogue import load_catalogue
from consumers.rules.checkpoint_columns import CheckpointTracker
from consumers.tables import decoder
from producers.checkpointing import EVERY, CheckpointSchedule, checkpointed
from producers.fleet import Fleet
from schemas import codec
from schemas.topics import EVENTS_TOPIC

ROUNDS = 3
Batch = tuple[list[pa.Table], list[tuple[dict, Position]]]


def batches(events: int, size: int, every: int = EVERY) -> list[Batch]:
    """The fleet's stream cut into batches: each batch's event tables and checkpoints
    (one per `every` events of a device)."""
    fleet = Fleet(DEVICES, 7, VIOLATION_RATE, start=datetime(2026, 3, 1, tzinfo=UTC))
    chain = chained((k, r) for k, r, _ in fleet.events(events))
    stream = list(checkpointed(chain, CheckpointSchedule(every)))
    cut: list[Batch] = []
    for start in range(0, len(stream), size):
        part = stream[start : start + size]
        read = [(k, r) for k, r in part if k != "checkpoint"]
        tables, _ = decoder().decode_batch([codec.encode(k, r) for k, r in read], 1 << 20)
        placed = [_placed(pa.Table.from_batches([b]), start) for b in tables.values()]
        checkpoints = [
            (r, Position(EVENTS_TOPIC, 0, start + i))
            for i, (k, r) in enumerate(part)
            if k == "checkpoint"
        ]
        cut.append((placed, checkpoints))
    return cut


def _placed(table: pa.Table, first: int) -> pa.Table:
    rows = table.num_rows
    offsets = pa.compute.add(table["message_index"].cast(pa.uint64()), first)
    return (
        table.append_column("topic", pa.repeat(EVENTS_TOPIC, rows))
        .append_column("partition", pa.repeat(pa.scalar(0, pa.uint32()), rows))
        .append_column("offset", offsets)
    )


def run(cut: list[Batch]) -> tuple[float, int]:
    """Seconds for the tracker to take every batch, and the findings it made."""
    params = load_catalogue().parameters("cac-2025")
    tracker = CheckpointTracker(params.checkpoint_window_events, params.checkpoint_window_seconds)
    found = 0
    started = time.perf_counter()
    for tables, checkpoints in cut:
        tracker.observe(tables)
        found += len(tracker.judge(checkpoints))
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=EVERY, help="events per checkpoint")
    args = parser.parse_args()
    cut = batches(args.events, args.batch_size, args.every)
    seconds, found = min(run(cut) for _ in range(ROUNDS))
    if found:
        raise SystemExit(f"a fleet that checkpoints as scheduled gave {found} findings")
    checkpoints = sum(len(part) for _, part in cut)
    print(
        f"{seconds * 1e6 / args.events:.2f} µs/event over {args.events:,} events, "
        f"{seconds * 1e6 / checkpoints:.0f} µs per checkpoint ({checkpoints:,})"
    )


if __name__ == "__main__":
    main()
