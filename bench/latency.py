"""Event to stored row: the validator running while events arrive at a steady rate.

Each event's `event_time` is set when it is sent; the `stored_at` column is
filled by ClickHouse when the row's batch is inserted (DEFAULT now64), so
`stored_at - event_time` is the time from the camera to a queryable row:
producer linger, broker, the validator's batching, judging and the insert.
Events of the warm-up (the validator taking its partitions) are not counted.
"""

from __future__ import annotations

import subprocess
import sys
import time

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from bench import BenchError
from bench.cluster import Cluster, stop
from bench.load import live, start_group_at_end
from bench.memory import PeakMemory
from bench.pipeline import StoredWatch
from core.clients import KafkaConfig, clickhouse_client, kafka_admin

WARMUP_SECONDS = 3.0
JOIN_TIMEOUT = 120
_QUERY = """
SELECT count(), quantileExact(0.5)(d), quantileExact(0.99)(d), max(d)
FROM (
    SELECT (toUnixTimestamp64Micro(stored_at) - toUnixTimestamp64Micro(event_time)) / 1e6 AS d
    FROM faceaudit.events
    WHERE toUnixTimestamp64Micro(event_time) >= {since:Int64}
)
"""


def run_latency(cluster: Cluster, rate: float, seconds: float, seed: int = 2) -> dict:
    """Stream `rate` events/s for `seconds` (after a warm-up) through a running validator."""
    name = "latency"
    group = cluster.group(name)
    start_group_at_end(cluster.kafka_as("validator"), group)
    store = cluster.store(name)
    watch = StoredWatch(1)
    args = ["consume", "--bootstrap", cluster.bootstrap, "--clickhouse", store, "--group", group]
    child = cluster.faceaudit(*args, "--metrics-port", str(watch.port), log_name=name)
    memory = PeakMemory(child.pid)
    try:
        _wait_until_joined(cluster.kafka, group, child)
        print(f"  {rate:,.0f} events/s for {WARMUP_SECONDS:g} + {seconds:g} s", file=sys.stderr)
        producer, operator = cluster.kafka_as("producer"), cluster.kafka_as("operator")
        sent = live(producer, operator, rate, seconds, WARMUP_SECONDS, seed)
        for _ in watch.wait_for(sent.total, lambda: child.poll() is None, lambda _: None):
            pass
        stop(child)  # SIGTERM: judge what is held, store, commit, exit
        if child.returncode != 0:
            raise BenchError(f"consume exited with {child.returncode}")
    except Exception as exc:
        raise BenchError(f"{name}: {exc}; its log:\n{cluster.output(name)[1][-2000:]}") from exc
    finally:
        peaks = memory.stop()
    count, p50, p99, worst = _visibility(store, sent.first_event_time.timestamp())
    return {
        "rate_target": rate,
        "rate_sent": round(sent.events_per_second),
        "events": count,
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "max_s": round(worst, 3),
        "peak_rss_mib": peaks,
    }


def _wait_until_joined(kafka: KafkaConfig, group: str, child: subprocess.Popen) -> None:
    """Until the validator's group is stable with a member (its partitions assigned)."""
    admin = kafka_admin(kafka, client_id="faceaudit-bench")
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not _stable(admin, group):
            if child.poll() is not None:
                raise BenchError(f"the validator exited with {child.returncode} before joining")
            if time.monotonic() > deadline:
                raise BenchError(f"the validator did not join its group in {JOIN_TIMEOUT} s")
            time.sleep(0.2)
    finally:
        admin.close()


def _stable(admin: KafkaAdminClient, group: str) -> bool:
    try:
        state = admin.describe_groups([group]).get(group, {})
    except KafkaError:  # no coordinator for the group yet
        return False
    return state.get("group_state") == "Stable" and bool(state.get("members"))


def _visibility(dsn: str, since: float) -> tuple[int, float, float, float]:
    """Count, p50, p99 and max of stored_at - event_time for events from `since` on."""
    client = clickhouse_client(dsn)
    try:
        return client.query(_QUERY, parameters={"since": int(since * 1e6)}).result_rows[0]
    finally:
        client.close()
