"""Decode cost per event: the native batch decoder against the codec, in one process.

    python -m bench.native_decode [--events 100000] [--batch-size 20000]

Builds capture and match messages from a simulated fleet (chained as the
producer SDK chains them), then times decoding them all both ways: the
reference, ``codec.decode`` plus the payload's SHA-256 message by message (the
validator's decode step, less the topic and key checks), and the native
decoder, one ``decode_batch`` call per batch into Arrow columns with the
hashes. Prints microseconds per event for each and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from producers.fleet import Fleet
from schemas import codec
from schemas.native import contract_decoder

MAX_BYTES = 1 << 20
ROUNDS = 3  # the best of three, so a stray pause on a shared machine does not count


def messages(events: int, seed: int = 7) -> list[bytes]:
    """``events`` capture and match messages with device sequences and hash chains."""
    fleet = Fleet(40, seed, violation_rate=0.05, start=datetime(2026, 3, 1, tzinfo=UTC))
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
    return out


def reference(batch: list[bytes]) -> int:
    """Decoded events, the way the validator decodes them one by one."""
    decoded = 0
    for message in batch:
        if len(message) > MAX_BYTES:
            continue
        try:
            hashlib.sha256(codec.decode(message).payload).hexdigest()
        except codec.DecodeError:
            continue
        decoded += 1
    return decoded


def best_seconds(run: Callable[[], int], expected: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        decoded = run()
        best = min(best, time.perf_counter() - started)
        if decoded != expected:
            raise SystemExit(f"decoded {decoded:,} of {expected:,} events")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=20_000, help="messages per call")
    args = parser.parse_args()
    batch = messages(args.events)
    decoder = contract_decoder()
    size = args.batch_size

    def native() -> int:
        decoded = 0
        for first in range(0, len(batch), size):
            batches, _ = decoder.decode_batch(batch[first : first + size], MAX_BYTES)
            decoded += sum(columns.num_rows for columns in batches.values())
        return decoded

    kinds = Counter(codec.kind_for_fingerprint(m[2 : codec.HEADER_SIZE]) for m in batch)
    print(f"{len(batch):,} messages ({dict(kinds)}), {sum(map(len, batch)) / len(batch):.0f} B avg")
    slow = best_seconds(lambda: reference(batch), len(batch)) / len(batch) * 1e6
    fast = best_seconds(native, len(batch)) / len(batch) * 1e6
    print(f"codec.decode + sha256: {slow:8.2f} µs/event")
    print(f"native decode_batch:   {fast:8.3f} µs/event  ({size:,} messages per call)")
    print(f"ratio:                 {slow / fast:8.1f}x")


if __name__ == "__main__":
    main()
