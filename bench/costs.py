"""What digests cost the validator, in alternating pairs on one preloaded broker.

    python -m bench.costs [--events 300000] [--pairs 4]

Preloads the bench fleet once, then drains it with `faceaudit consume` with
digests on and `--digests off` in turn (on off, off on, ...), each in a fresh
group and store. For each pair it prints both drain rates and the CPU seconds
per event of each drain (the process and its children, as the kernel counts
them), and at the end the median of the pairs' costs: 1 - on / off for the
rate, on / off - 1 for the CPU. A single pair on a shared machine can differ
by more than the cost itself; the median of pairs side by side does not.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics

from bench.cluster import Cluster
from bench.load import preload
from bench.pipeline import run_pipeline

VARIANTS = (("on", {}), ("off", {"digests": "off"}))


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    rate_costs, cpu_costs = [], []
    with Cluster() as cluster:
        expected = preload(
            cluster.kafka_as("producer"), cluster.kafka_as("operator"), args.events
        ).events_sent
        for pair in range(args.pairs):
            measured = {}
            for name, flags in VARIANTS if pair % 2 == 0 else VARIANTS[::-1]:
                before = _children_cpu()
                drained = run_pipeline(cluster, f"digests-{name}-{pair}", expected, **flags)
                cpu = (_children_cpu() - before) / expected * 1e6
                measured[name] = (drained["events_per_s"], cpu)
            (on_rate, on_cpu), (off_rate, off_cpu) = measured["on"], measured["off"]
            rate_costs.append(1 - on_rate / off_rate)
            cpu_costs.append(on_cpu / off_cpu - 1)
            print(
                f"pair {pair + 1}: on {on_rate:,} events/s, {on_cpu:.1f} µs CPU/event; "
                f"off {off_rate:,} events/s, {off_cpu:.1f} µs CPU/event",
                flush=True,
            )
    print(
        f"digests cost {statistics.median(rate_costs):.1%} of the drain rate and "
        f"{statistics.median(cpu_costs):.1%} more CPU (medians of {args.pairs} pairs)"
    )


if __name__ == "__main__":
    main()
