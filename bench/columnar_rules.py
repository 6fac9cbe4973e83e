"""Rule cost per event: the columnar rules over batches of several sizes, in one process.

    python -m bench.columnar_rules [--events 100000] [--batch-sizes 1000,5000,20000]

Builds capture and match messages from the bench fleet (bench/load.py's
devices and violation rate) and its registry, decodes them with the native
decoder outside the clock, then times ``ColumnarRules.evaluate`` once per
kind per batch, for each batch size. Every size must find the same rules on
the same events. Prints microseconds per event for each size.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from bench.load import DEVICES, VIOLATION_RATE
from consumers.registry import Registry
from consumers.rules.columnar import ColumnarRules
from producers.fleet import Fleet
from schemas import codec
from schemas.native import contract_decoder

MAX_BYTES = 1 << 20
ROUNDS = 3  # the best of three, so a stray pause on a shared machine does not count
PROFILE = "cac-2025"


def world(events: int, seed: int = 7) -> tuple[Registry, list[bytes]]:
    """The bench fleet's registry, and ``events`` messages chained as the producer chains them."""
    fleet = Fleet(DEVICES, seed, VIOLATION_RATE, start=datetime(2026, 3, 1, tzinfo=UTC))
    registry = Registry()
    for kind, record in fleet.registry_records():
        if kind != "deletion":
            registry.apply(kind, record)
    seq: Counter[str] = Counter()
    last_hash: dict[str, str] = {}
    out = []
    for kind, record, _ in fleet.events(events):
        device = record["device_id"]
        record["device_seq"] = seq[device]
        record["prev_hash"] = last_hash.get(device)
        payload = codec.encode_payload(kind, record)
        seq[device] += 1
        last_hash[device] = hashlib.sha256(payload).hexdigest()
        out.append(codec.frame(kind, payload))
    return registry, out


def pad(registry: Registry, count: int) -> None:
    """Add ``count`` consents of a processor no event comes from."""
    template = next(registry.consents())
    for n in range(count):
        consent = {**template, "consent_id": f"pad-{n}", "processor_id": "p-pad"}
        registry.apply("consent", {**consent, "subject_ref": f"pad-{n}"})


def best_seconds(run: Callable[[], Counter[str]]) -> tuple[float, Counter[str]]:
    """The fastest of ROUNDS runs, and what the last one found (rule id -> count)."""
    best, found = float("inf"), Counter[str]()
    for _ in range(ROUNDS):
        started = time.perf_counter()
        found = run()
        best = min(best, time.perf_counter() - started)
    return best, found


def sizes(text: str) -> list[int]:
    """``1000,5000`` -> [1000, 5000]; argparse's error for anything else."""
    try:
        found = [int(part) for part in text.split(",")]
    except ValueError:
        found = []
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes are positive integers: {text!r}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--batch-sizes", type=sizes, default=[1_000, 5_000, 20_000], help="messages per batch"
    )
    parser.add_argument(
        "--extra-consents",
        type=int,
        default=0,
        help="consents no event names, added to the registry to show the join does not grow",
    )
    args = parser.parse_args()
    registry, messages = world(args.events)
    pad(registry, args.extra_consents)
    decoder, rules = contract_decoder(), ColumnarRules(PROFILE, registry)
    expected: Counter[str] | None = None
    print(f"{len(messages):,} events, {DEVICES} devices, profile {PROFILE}")
    print(f"registry: {sum(1 for _ in registry.consents()):,} consents")
    for size in args.batch_sizes:
        batches: list[tuple[str, pa.RecordBatch]] = []
        for first in range(0, len(messages), size):
            out, failures = decoder.decode_batch(messages[first : first + size], MAX_BYTES)
            if failures:
                raise SystemExit(f"{len(failures)} messages refused: {failures[:3]}")
            batches.extend(out.items())

        def per_batch(batches: list[tuple[str, pa.RecordBatch]] = batches) -> Counter[str]:
            found: Counter[str] = Counter()
            for kind, batch in batches:
                found.update(rule_id for _, rule_id, _ in rules.evaluate(kind, batch))
            return found

        seconds, found = best_seconds(per_batch)
        if expected is None:
            expected = found
            print(f"findings: {sum(found.values()):,} ({dict(found.most_common())})")
        elif found != expected:
            raise SystemExit(f"batch size {size:,} finds {found}, not {expected}")
        micros = seconds / len(messages) * 1e6
        print(f"ColumnarRules.evaluate: {micros:8.3f} µs/event  ({size:,} messages per batch)")


if __name__ == "__main__":
    main()
