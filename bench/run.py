"""`make bench`: measure the pipeline on its own broker and stores, in one run.

    python -m bench.run [--events N] [--quick] [--profile] [--output FILE]

N (default 1,000,000, or BENCH_EVENTS) events are preloaded, then read by the
plain client, by the validator (1 process, 1 process with batches of 2,000,
whose sequence gaps are counted against those the fleet injected, then 2
workers), costed per stage,
streamed live for the latency, and exported for the offline checker. The
results go to bench/results/latest.json and the table in docs/benchmarks.md
(`--quick`: smaller samples, bench/results/quick.json, docs untouched).
Benchmarks, not tests: nothing here fails on a slow result.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from bench import REPO_ROOT, BenchError, report
from bench.cluster import Cluster
from bench.findings import violations_by_rule
from bench.gateway import run_gateway
from bench.latency import run_latency
from bench.load import end_offsets, preload
from bench.offline import run_check
from bench.pipeline import run_pipeline
from bench.raw import raw_consume
from bench.stages import stage_costs
from producers.fleet import SEQUENCE_GAP

T = TypeVar("T")
DEFAULT_EVENTS = 1_000_000
LATENCY_RATE = 10_000
LOW_RATE = 2_000  # well under capacity: the latency of batching alone
SMALL_BATCH = 2_000  # small batches: where two-topic streams once raised false gaps
SAMPLE = 100_000  # events in the stage-cost sample and the checker's export
QUICK_SAMPLE = 20_000
GATEWAY_EVENTS = 50_000
QUICK_GATEWAY_EVENTS = 4_000


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    events = args.events or int(os.environ.get("BENCH_EVENTS", DEFAULT_EVENTS))
    output = args.output or report.RESULTS.with_name("quick.json" if args.quick else "latest.json")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _interrupt)  # unwind like Ctrl-C: everything is cleaned up
    results = {"events": events, "machine": report.machine(), "date": report.now()}
    started = time.monotonic()
    _say("starting a broker of its own (temp dir, free ports)")
    with Cluster() as cluster:
        _say(f"broker {cluster.bootstrap}, work dir {cluster.root}")
        profile = output.with_name("profile-pipeline.txt") if args.profile else None
        results |= measure(cluster, events, args.quick, profile)
    results["details"]["bench_seconds"] = round(time.monotonic() - started)
    report.write_json(results, output)
    _say(f"results written to {output}")
    if not args.quick:
        report.update_docs(results)
        _say(f"table updated in {report.DOCS.relative_to(REPO_ROOT)}")
    print(report.table(results))
    return 0


def measure(cluster: Cluster, events: int, quick: bool, profile: Path | None = None) -> dict:
    """Every measurement, one after the other, on `cluster`; the results' figures.

    `profile`: also drain the preload under pyinstrument, writing its report there.
    """
    sample = min(events, QUICK_SAMPLE if quick else SAMPLE)
    seconds = 5.0 if quick else min(30.0, max(5.0, events / LATENCY_RATE))
    rate = "{:,.0f} events/s".format

    sent = _step(
        f"preload {events:,} events",
        lambda: preload(cluster.kafka_as("producer"), cluster.kafka_as("operator"), events),
        lambda r: rate(r.events_per_second),
    )
    messages = sum(end_offsets(cluster.kafka).values())  # the events and their checkpoints
    expected = sent.events_sent
    raw = _step(
        "raw consumer",
        lambda: raw_consume(cluster.kafka_as("validator"), cluster.group("raw"), messages),
        lambda r: rate(r.events_per_second),
    )
    raw_plain = _step(
        "raw consumer, SASL without TLS",
        lambda: raw_consume(
            cluster.kafka_without_tls("validator"), cluster.group("raw-plain"), messages
        ),
        lambda r: rate(r.events_per_second),
    )
    one, trusting, undigested = _paired_runs(cluster, expected)
    small = _step(
        f"pipeline, 1 process, batches of {SMALL_BATCH:,}",
        lambda: run_pipeline(cluster, "pipeline-small", expected, batch_size=SMALL_BATCH),
        lambda r: rate(r["events_per_s"]),
    )
    gaps = _step(
        "sequence gaps found against those the fleet was made to leave",
        lambda: _gaps(cluster, sent.intended_violations[SEQUENCE_GAP]),
        lambda r: ", ".join(f"{k} {v:,}" for k, v in r.items()),
    )
    two = _step(
        "pipeline, 2 workers",
        lambda: run_pipeline(cluster, "pipeline-2w", expected, workers=2),
        lambda r: rate(r["events_per_s"]),
    )
    if profile:
        _step(
            "pipeline, 1 process, under pyinstrument",
            lambda: run_pipeline(cluster, "profiled", expected, profile_to=profile),
            lambda r: f"{rate(r['events_per_s'])}, profile in {profile}",
        )
    stages = _step(
        f"stage costs on {sample:,} events",
        lambda: stage_costs(cluster.bootstrap, cluster.store("stages"), sample),
        lambda r: ", ".join(f"{k} {v} µs" for k, v in r.items() if k != "sample"),
    )
    latency = _step(
        f"latency at {LATENCY_RATE:,} events/s",
        lambda: run_latency(cluster, LATENCY_RATE, seconds),
        lambda r: f"p50 {r['p50_s']} s, p99 {r['p99_s']} s at {rate(r['rate_sent'])}",
    )
    latency_low = _step(
        f"latency at {LOW_RATE:,} events/s",
        lambda: run_latency(cluster, LOW_RATE, min(seconds, 10.0), seed=4),
        lambda r: f"p50 {r['p50_s']} s, p99 {r['p99_s']} s at {rate(r['rate_sent'])}",
    )
    check = _step(
        f"faceaudit check on {sample:,} events",
        lambda: run_check(cluster, sample),
        lambda r: f"{rate(r['events_per_s'])}, json.loads {rate(r['json_loads_events_per_s'])}",
    )
    # Last: its events would add to what the pipeline runs above drain.
    relayed = QUICK_GATEWAY_EVENTS if quick else GATEWAY_EVENTS
    gateway = _step(
        f"device gateway, {relayed:,} events in batches of 100, against the producer SDK",
        lambda: run_gateway(cluster, relayed),
        lambda r: (
            f"{rate(r['events_per_s'])} ({r['ratio_to_sdk']:.2f} of the SDK's "
            f"{rate(r['sdk_events_per_s'])}), p99 {r['p99_s']} s"
        ),
    )
    return {
        "preload_events_per_s": round(sent.events_per_second),
        "raw_events_per_s": round(raw.events_per_second),
        "raw_without_tls_events_per_s": round(raw_plain.events_per_second),
        "tls_cost": round(1 - raw.events_per_second / raw_plain.events_per_second, 3),
        "pipeline_events_per_s": one["events_per_s"],
        "pipeline_2w_events_per_s": two["events_per_s"],
        "ratio_pipeline_to_raw": round(one["events_per_s"] / raw.events_per_second, 3),
        "ratio_2w_to_1w": round(two["events_per_s"] / one["events_per_s"], 3),
        "pipeline_trust_none_events_per_s": trusting["events_per_s"],
        "signature_cost": round(1 - one["events_per_s"] / trusting["events_per_s"], 3),
        "pipeline_digests_off_events_per_s": undigested["events_per_s"],
        "digest_cost": round(1 - one["events_per_s"] / undigested["events_per_s"], 3),
        "digest_cpu_cost": _cpu_cost(one, undigested),
        "signature_cpu_cost": _cpu_cost(one, trusting),
        "pipeline_small_batch_events_per_s": small["events_per_s"],
        "sequence_gaps": gaps,
        "latency_p50_s": latency["p50_s"],
        "latency_p99_s": latency["p99_s"],
        "latency_max_s": latency["max_s"],
        "peak_rss_mib": {
            "pipeline_1w": one.pop("peak_rss_mib"),
            "pipeline_2w": two.pop("peak_rss_mib"),
            "pipeline_trust_none": trusting.pop("peak_rss_mib"),
            "pipeline_digests_off": undigested.pop("peak_rss_mib"),
            "pipeline_small_batch": small.pop("peak_rss_mib"),
            "latency_1w": latency.pop("peak_rss_mib"),
            "check": check.pop("peak_rss_mib"),
        },
        "stage_us_per_event": stages,
        "check_events_per_s": check["events_per_s"],
        "gateway_events_per_s": gateway["events_per_s"],
        "gateway_ratio_to_sdk": gateway["ratio_to_sdk"],
        "gateway_p99_s": gateway["p99_s"],
        "check_ratio_to_json_loads": check["ratio_to_json_loads"],
        "latency": latency,
        "details": {
            "raw": {
                "drain_seconds": round(raw.seconds, 2),
                "wall_seconds": round(raw.wall_seconds, 2),
            },
            "raw_without_tls": {
                "drain_seconds": round(raw_plain.seconds, 2),
                "wall_seconds": round(raw_plain.wall_seconds, 2),
            },
            "pipeline_1w": one,
            "pipeline_2w": two,
            "pipeline_trust_none": trusting,
            "pipeline_digests_off": undigested,
            "pipeline_small_batch": small,
            "small_batch": SMALL_BATCH,
            "latency_low_rate": latency_low,
            "check": check,
            "gateway": gateway,
        },
    }


ONE_PROCESS_RUNS: Final = (
    ("pipeline-1w", "pipeline, 1 process", {}),
    ("pipeline-trust-none", "pipeline, 1 process, --trust none (no signature checked)",
     {"trust": "none"}),
    ("pipeline-digests-off", "pipeline, 1 process, --digests off (no ledger, no digests)",
     {"digests": "off"}),
)  # fmt: skip
"""The one-process runs the costs of signatures and digests are ratios of."""


def _paired_runs(cluster: Cluster, expected: int) -> list[dict]:
    """Each of `ONE_PROCESS_RUNS` twice, in the order A B C C B A, and each one's mean:
    a machine whose speed drifts over the runs weighs on all of them alike."""
    done: dict[str, list[dict]] = {name: [] for name, _, _ in ONE_PROCESS_RUNS}
    for round_, order in enumerate((ONE_PROCESS_RUNS, ONE_PROCESS_RUNS[::-1]), start=1):
        for name, title, flags in order:
            store = name if round_ == 1 else f"{name}-again"
            done[name].append(
                _step(
                    f"{title}, run {round_} of 2",
                    lambda store=store, flags=flags: run_pipeline(
                        cluster, store, expected, **flags
                    ),
                    lambda r: "{:,.0f} events/s".format(r["events_per_s"]),
                )
            )
    return [_mean_of(done[name]) for name, _, _ in ONE_PROCESS_RUNS]


def _cpu_cost(run: dict, without: dict) -> float:
    """How much more CPU per event `run` spends than the same drain `without` a feature."""
    return round(run["cpu_us_per_event"] / without["cpu_us_per_event"] - 1, 3)


def _mean_of(runs: list[dict]) -> dict:
    """One figure for runs of the same command: the mean rate, the largest peak RSS of
    each process, and every run's own figures."""
    peaks = [run.pop("peak_rss_mib") for run in runs]
    return {
        "events_per_s": round(sum(run["events_per_s"] for run in runs) / len(runs)),
        "cpu_us_per_event": round(sum(run["cpu_us_per_event"] for run in runs) / len(runs), 2),
        "peak_rss_mib": {
            role: max(peak.get(role, 0) for peak in peaks)
            for role in dict.fromkeys(role for peak in peaks for role in peak)
        },
        "runs": runs,
    }


def _gaps(cluster: Cluster, injected: int) -> dict[str, int]:
    """AUDIT-SEQ-GAP violations each drain stored, beside the number the fleet injected."""
    found = {
        name: violations_by_rule(cluster.store(name))[SEQUENCE_GAP]
        for name in ("pipeline-1w", "pipeline-small")
    }
    return {
        "injected": injected,
        "found_default_batch": found["pipeline-1w"],
        "found_small_batch": found["pipeline-small"],
    }


def _step(title: str, work: Callable[[], T], show: Callable[[T], str]) -> T:
    _say(f"{title} ...")
    started = time.monotonic()
    result = work()
    _say(f"{title}: {show(result)} ({time.monotonic() - started:.0f} s)")
    return result


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--events", type=int, help=f"events to preload (default BENCH_EVENTS or {DEFAULT_EVENTS:,})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small samples, 5 s of latency; writes quick.json, not the docs",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the validator under pyinstrument (needs it installed)",
    )
    parser.add_argument(
        "--output", type=Path, help="results file (default bench/results/latest.json)"
    )
    return parser


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _say("interrupted: broker stopped, temp dir removed")
        sys.exit(130)
    except BenchError as exc:
        _say(f"failed: {exc}")
        sys.exit(1)
