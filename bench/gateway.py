"""The device gateway on loopback: batches of 100 records over HTTPS, against the SDK alone.

Both send the same fleet's events to the same secured broker, idempotently
with acks=all: the producer SDK from this process (`EventProducer`, its
encoding included), and the gateway as devices would use it, one client
thread per device posting `BATCH` pre-encoded records per request and waiting
for each 202. The ratio is what the HTTPS hop, the per-request checks and the
wait for every acknowledgement cost; the p99 is of the whole request.
"""

from __future__ import annotations

import json
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

from bench import BenchError
from bench.cluster import Cluster, stop
from faceaudit.broker import free_ports
from producers.event_producer import EventProducer
from producers.fleet import Fleet
from producers.gateway.devices import add_device
from producers.gateway.records import BINARY
from schemas import codec

BATCH = 100
DEVICES = 8
SEED = 7


def run_gateway(cluster: Cluster, events: int) -> dict:
    fleet = Fleet(DEVICES, SEED, violation_rate=0.0, start=datetime.now(UTC))
    by_device: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for kind, record, _ in fleet.events(events):
        by_device[record["device_id"]].append((kind, record))
    sdk_seconds = _sdk(cluster, by_device)
    devices_file = cluster.root / "gateway-devices.jsonl"
    processors = {d.device_id: d.processor.processor_id for d in fleet.devices}
    tokens = {d: add_device(devices_file, d, processors[d]) for d in by_device}
    [port] = free_ports(1)
    gateway = cluster.faceaudit(
        "gateway", "--bootstrap", cluster.bootstrap, "--devices", str(devices_file),
        "--port", str(port), "--rate", "100000", log_name="gateway",
    )  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=cluster.broker.security.ca_file)
        _wait_until_up(f"https://127.0.0.1:{port}/healthz", context, gateway)
        latencies, seconds = _post_all(
            f"https://127.0.0.1:{port}/v1/events", by_device, tokens, context
        )
    finally:
        stop(gateway)
    latencies.sort()
    sent = sum(len(records) for records in by_device.values())
    return {
        "events": sent,
        "events_per_s": round(sent / seconds),
        "sdk_events_per_s": round(sent / sdk_seconds),
        "ratio_to_sdk": round(sdk_seconds / seconds, 3),
        "requests": len(latencies),
        "p50_s": round(latencies[len(latencies) // 2], 4),
        "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4),
    }


def _sdk(cluster: Cluster, by_device: dict[str, list[tuple[str, dict]]]) -> float:
    started = time.monotonic()
    with EventProducer(cluster.kafka_as("producer"), checkpoint_every=None) as producer:
        for records in by_device.values():
            for kind, record in records:
                producer.send_event(kind, record)
    return time.monotonic() - started


def _bodies(records: list[tuple[str, dict]]) -> list[tuple[bytes, int]]:
    """The device's records as request bodies of `BATCH`, and how many each holds."""
    frames = [
        codec.encode(kind, {**record, "device_seq": seq, "prev_hash": None})
        for seq, (kind, record) in enumerate(records)
    ]
    return [
        (b"".join(struct.pack(">I", len(f)) + f for f in frames[i : i + BATCH]),
         len(frames[i : i + BATCH]))
        for i in range(0, len(frames), BATCH)
    ]  # fmt: skip


def _post_all(
    url: str,
    by_device: dict[str, list[tuple[str, dict]]],
    tokens: dict[str, str],
    context: ssl.SSLContext,
) -> tuple[list[float], float]:
    bodies = {device: _bodies(records) for device, records in by_device.items()}
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def device_loop(device: str) -> None:
        headers = {"Authorization": f"Bearer {tokens[device]}", "Content-Type": BINARY}
        for body, count in bodies[device]:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            began = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=60, context=context) as response:
                    answer = json.loads(response.read())
            except OSError as exc:
                failures.append(str(exc))
                return
            took = time.monotonic() - began
            if answer["accepted"] != count:
                failures.append(str(answer)[:200])
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=device_loop, args=(d,)) for d in bodies]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if failures or not latencies:
        raise BenchError(f"the gateway refused requests: {failures[:2]}")
    return latencies, seconds


def _wait_until_up(url: str, context: ssl.SSLContext, gateway: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            raise BenchError("the gateway exited at start (see its log)")
        try:
            urllib.request.urlopen(url, context=context, timeout=5)
            return
        except OSError:
            time.sleep(0.3)
    raise BenchError("the gateway did not answer within 60 s")
