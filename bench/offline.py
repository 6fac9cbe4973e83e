"""The offline checker: `faceaudit check` on a JSON-lines export, against plain `json.loads`.

The file holds a fleet's registry and `events` events in the contract's JSON
form, chained as the producer SDK chains them. The baseline reads the same
lines with `json.loads` and nothing else: the ratio says how much of the
checker's time is the rules rather than the parsing every reader pays for.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench import BenchError
from bench.cluster import Cluster
from bench.load import DEVICES, VIOLATION_RATE
from bench.memory import PeakMemory
from faceaudit.keys import new_key_record
from producers.checkpointing import Record, checkpointed
from producers.event_producer import DeviceChain
from producers.fleet import Fleet
from producers.signer import signed_json
from producers.simulate import earliest_time
from schemas import codec
from schemas.signatures import SIGNED_KINDS, Signer

_RATE = re.compile(r"\(([\d,]+) events/s\)")


def write_export(path: Path, events: int, seed: int = 3) -> None:
    """A JSON-lines file: a key per processor, the registry signed with it, then `events`
    events with device_seq and prev_hash, and the checkpoints the SDK would send."""
    fleet = Fleet(DEVICES, seed, VIOLATION_RATE)
    registry = fleet.registry_records()
    valid_from = earliest_time(registry)
    signers = {}
    with path.open("w", encoding="utf-8") as out:
        for processor in fleet.processors:
            pid = processor.processor_id
            key, private = new_key_record("processor", pid, None, valid_from)
            signers[pid] = Signer(key["key_id"], private)
            out.write(json.dumps(codec.to_json("key", key)) + "\n")
        stamped = chained((kind, record) for kind, record, _ in fleet.events(events))
        for kind, record in [*registry, *checkpointed(stamped)]:
            line = (
                signed_json(kind, record, signers[record["processor_id"]])
                if kind in SIGNED_KINDS
                else codec.to_json(kind, record)
            )
            out.write(json.dumps(line) + "\n")


def chained(events: Iterable[tuple[str, Record]]) -> Iterator[tuple[str, Record]]:
    """The events numbered and hash-chained per device, as the producer SDK sends them."""
    chains: dict[str, DeviceChain] = {}
    for kind, record in events:
        chain = chains.setdefault(record["device_id"], DeviceChain())
        stamped = chain.stamp(record)
        chain.advance(codec.encode_payload(kind, stamped))
        yield kind, stamped


def json_loads_seconds(path: Path) -> float:
    """Time to parse every line of `path` with json.loads."""
    started = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            json.loads(line)
    return time.perf_counter() - started


def run_check(cluster: Cluster, events: int) -> dict:
    path = cluster.root / "export.jsonl"
    write_export(path, events)
    baseline = events / json_loads_seconds(path)
    started = time.monotonic()
    child = cluster.faceaudit("check", str(path), "--output", "/dev/null", log_name="check")
    memory = PeakMemory(child.pid)
    child.wait()
    wall = time.monotonic() - started
    peaks = memory.stop()
    err = cluster.output("check")[1]
    rate = _RATE.search(err)
    if child.returncode not in (0, 1) or rate is None:  # 1: violations found, as expected
        raise BenchError(f"faceaudit check exited with {child.returncode}:\n{err[-2000:]}")
    events_per_s = int(rate[1].replace(",", ""))
    return {
        "events": events,
        "events_per_s": events_per_s,
        "wall_seconds": round(wall, 2),
        "json_loads_events_per_s": round(baseline),
        "ratio_to_json_loads": round(events_per_s / baseline, 3),
        "peak_rss_mib": peaks,
    }
