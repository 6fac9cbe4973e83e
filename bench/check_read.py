"""Read speed of `faceaudit check`'s inputs: the per-record reader against the bulk one.

    python -m bench.check_read [--events 100000]

Writes the export the offline bench checks (`bench.offline.write_export`: a
fleet's registry, then its events, chained), as JSON lines and as Avro
containers of the events (one per kind, in null and in deflate), then reads
each input with `records()` (dicts, what the checker judges today) and with
`record_batches()` (Arrow tables), best of 3, and prints events per second
for both and the ratio. Only reading: no rule is judged. For JSON lines it
also reads with only the event kinds parsed natively (the others going the
per-line way), against the default of every kind native.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fastavro

from bench.offline import write_export
from consumers.bulk_json import json_tables
from consumers.readers import Source, open_source
from schemas import codec
from schemas.topics import EVENT_KINDS

ROUNDS = 3  # the best of three, so a stray pause on a shared machine does not count


def refuse(line: str) -> None:
    raise SystemExit(f"the export has a bad record: {line}")


def per_record(sources: list[Source]) -> int:
    """Events read by `records()`, the reader `faceaudit check` uses today."""
    return sum(item.kind in EVENT_KINDS for source in sources for item in source.records(refuse))


def bulk(sources: list[Source]) -> int:
    """Events read by `record_batches()`."""
    return sum(
        table.num_rows
        for source in sources
        for kind, table in source.record_batches(refuse)
        if kind in EVENT_KINDS
    )


def bulk_events_only_native(path: Path) -> int:
    """Events of a JSON-lines file read in bulk with only the event kinds parsed natively."""
    tables = json_tables(str(path), str(path), refuse, native_kinds=EVENT_KINDS)
    return sum(table.num_rows for kind, table in tables if kind in EVENT_KINDS)


def best_rate(read: Callable[[], int], events: int) -> float:
    """Events per second of the fastest of ROUNDS reads (each must read every event)."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        got = read()
        best = min(best, time.perf_counter() - started)
        if got != events:
            raise SystemExit(f"read {got:,} of {events:,} events")
    return events / best


def write_containers(export: Path, directory: Path, codec_name: str) -> list[Path]:
    """The export's events as one Avro container per kind."""
    source = open_source(str(export), io.BytesIO())  # a path: standard input is not read
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in EVENT_KINDS}
    for item in source.records(refuse):
        if item.kind in by_kind:
            by_kind[item.kind].append(item.record)
    paths = []
    for kind, records in by_kind.items():
        path = directory / f"{kind}.{codec_name}.avro"
        with path.open("wb") as out:
            fastavro.writer(out, codec.schema(kind), records, codec=codec_name)
        paths.append(path)
    return paths


def opened(paths: Iterable[Path]) -> list[Source]:
    return [open_source(str(path), io.BytesIO()) for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    events = args.events
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        export = directory / "export.jsonl"
        write_export(export, events)
        inputs = {"JSON lines": [export]}
        for codec_name in ("null", "deflate"):
            inputs[f"Avro, {codec_name}"] = write_containers(export, directory, codec_name)
        print(f"{events:,} events; JSON lines {export.stat().st_size / 1e6:.1f} MB")
        print(f"{'input':<28} {'records()':>14} {'record_batches()':>18} {'ratio':>7}")
        for name, paths in inputs.items():
            sources = opened(paths)
            today = best_rate(lambda sources=sources: per_record(sources), events)
            fast = best_rate(lambda sources=sources: bulk(sources), events)
            print(f"{name:<28} {today:>10,.0f} e/s {fast:>14,.0f} e/s {fast / today:>6.1f}x")
            if name == "JSON lines":
                native = best_rate(lambda: bulk_events_only_native(export), events)
                label = "JSON lines, events native"
                print(f"{label:<28} {'':>14} {native:>14,.0f} e/s {native / today:>6.1f}x")


if __name__ == "__main__":
    main()
