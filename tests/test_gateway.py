"""`faceaudit gateway`: devices' records over HTTPS into Kafka.

The request handling is tested against a recording relay (no broker): who
may send, what is refused and why, limits. The relay itself, and the promise
that nothing acknowledged is lost or doubled, are tested against the real
broker: the gateway is killed with SIGKILL under load, and every record it
answered 202 for must be in the topic exactly once.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import fleet_seed, kafka_as, start_faceaudit
from kafka import TopicPartition
from samples import sample

from core.clients import kafka_consumer
from core.local_kafka import broker_home
from faceaudit.broker import free_ports
from producers.checkpointing import checkpoint_record
from producers.gateway.app import Limits, create_gateway_app
from producers.gateway.devices import Device, DeviceTokens, DeviceTokensError, add_device
from producers.gateway.limiter import RateLimiter
from producers.gateway.records import BINARY, JSON, Message
from producers.gateway.relay import Receipt
from schemas import codec
from schemas.topics import EVENTS_TOPIC

DEVICE = sample("capture")["device_id"]
PROCESSOR = sample("capture")["processor_id"]


class RecordingRelay:
    def __init__(self) -> None:
        self.sent: list[tuple[Device, list[Message]]] = []

    def send(self, device: Device, messages: list[Message]) -> list[Receipt]:
        self.sent.append((device, messages))
        return [Receipt(m.record_id, 0, n) for n, m in enumerate(messages)]


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def event(n: int, **changes: Any) -> bytes:
    record = {**sample("capture"), "event_id": f"00000000-0000-4000-8000-{n:012d}", **changes}
    return codec.encode("capture", record)


def checkpoint() -> dict[str, Any]:
    return checkpoint_record(PROCESSOR, DEVICE, 0, "0" * 64, sample("capture")["event_time"])


@pytest.fixture
def gateway(tmp_path: Path):
    path = tmp_path / "devices.jsonl"
    token = add_device(path, DEVICE, PROCESSOR)
    relay = RecordingRelay()
    app = create_gateway_app(relay, DeviceTokens(path), RateLimiter(1000, 1000), Limits(10))
    return app.test_client(), token, relay


def post(client, token: str | None, body: bytes, content_type: str = BINARY):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/v1/events", data=body, headers=headers)


def test_a_devices_records_are_relayed_in_order_with_receipts(gateway) -> None:
    client, token, relay = gateway
    response = post(client, token, framed(event(1), event(2)))
    assert response.status_code == 202
    assert [r["offset"] for r in response.get_json()["records"]] == [0, 1]
    [(device, messages)] = relay.sent
    assert device == Device(DEVICE, PROCESSOR)
    assert [m.value for m in messages] == [event(1), event(2)]


def test_json_events_and_signed_checkpoints_are_taken(gateway) -> None:
    client, token, relay = gateway
    signed = codec.to_json("checkpoint", checkpoint()) | {
        "key_id": "key-gw",
        "signature": base64.b64encode(b"\x01" * 64).decode(),
    }
    body = json.dumps({"events": [codec.to_json("capture", sample("capture")), signed]})
    response = post(client, token, body.encode(), JSON)
    assert response.status_code == 202, response.get_json()
    [(_, messages)] = relay.sent
    assert [m.kind for m in messages] == ["capture", "checkpoint"]
    assert dict(messages[1].headers)["faceaudit-key-id"] == b"key-gw"


def test_no_or_unknown_token_is_401(gateway) -> None:
    client, _, relay = gateway
    assert post(client, None, framed(event(1))).status_code == 401
    response = post(client, "fd_not-a-token", framed(event(1)))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert relay.sent == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (framed(event(1), event(2, device_id="cam-other")), "device_id 'cam-other' is not"),
        (framed(event(1), event(2, processor_id="p-other")), "processor_id 'p-other' is not"),
        (framed(event(1), b"not a record"), "bad_magic"),
        (framed(event(1), event(2)[:-3]), ""),
    ],
)
def test_a_bad_record_is_refused_by_index_and_nothing_is_sent(gateway, body, reason) -> None:
    client, token, relay = gateway
    response = post(client, token, body)
    assert response.status_code == 400
    payload = response.get_json()
    assert [r["index"] for r in payload["refused"]] == [1]
    assert reason in payload["refused"][0]["reason"]
    assert "none was sent" in payload["message"]
    assert relay.sent == []


def test_unreadable_bodies_and_limits_are_named(gateway) -> None:
    client, token, relay = gateway
    truncated = struct.pack(">I", 500) + b"short"
    assert "a record of 500 bytes, 5 left" in post(client, token, truncated).get_json()["message"]
    assert post(client, token, b"", BINARY).status_code == 400
    assert post(client, token, framed(event(1)), "text/plain").status_code == 415
    assert post(client, token, b"{", JSON).status_code == 400
    too_many = framed(*(event(n) for n in range(11)))
    response = post(client, token, too_many)
    assert response.status_code == 413 and "at most 10" in response.get_json()["message"]
    unsigned = codec.to_json(
        "checkpoint",
        checkpoint_record(PROCESSOR, DEVICE, 0, "0" * 64, sample("capture")["event_time"]),
    )
    refused = post(client, token, json.dumps({"events": [unsigned]}).encode(), JSON)
    assert "needs its key_id and signature" in refused.get_json()["refused"][0]["reason"]
    assert relay.sent == []


def test_a_flooding_device_is_limited(tmp_path: Path) -> None:
    path = tmp_path / "devices.jsonl"
    token = add_device(path, DEVICE, PROCESSOR)
    now = [0.0]
    limiter = RateLimiter(2, 3, clock=lambda: now[0])
    client = create_gateway_app(RecordingRelay(), DeviceTokens(path), limiter).test_client()
    statuses = [post(client, token, framed(event(n))).status_code for n in range(4)]
    assert statuses == [202, 202, 202, 429]
    limited = post(client, token, framed(event(9)))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    now[0] += 0.5  # one request's worth at 2 per second
    assert post(client, token, framed(event(10))).status_code == 202


def test_device_tokens_are_kept_hashed_and_private(tmp_path: Path) -> None:
    path = tmp_path / "devices.jsonl"
    token = add_device(path, DEVICE, PROCESSOR)
    assert token not in path.read_text() and path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(DeviceTokensError, match="has a token already"):
        add_device(path, DEVICE, PROCESSOR)
    again = add_device(path, DEVICE, PROCESSOR, replace=True)
    tokens = DeviceTokens(path)
    assert tokens.lookup(token) is None and tokens.lookup(again) == Device(DEVICE, PROCESSOR)
    path.write_text("not json\n")
    with pytest.raises(DeviceTokensError, match=r"devices.jsonl:1: not a device entry"):
        DeviceTokens(path)


# -- on the real broker ---------------------------------------------------------------


def _https(url: str, token: str, body: bytes, context: ssl.SSLContext) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": BINARY},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.integration
def test_sigkill_under_load_loses_and_doubles_no_acknowledged_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    devices_file = tmp_path / "devices.jsonl"
    seed = fleet_seed()
    devices = [f"cam-gw-{seed}-{n}" for n in range(4)]
    tokens = {d: add_device(devices_file, d, PROCESSOR) for d in devices}
    [port] = free_ports(1)
    gateway = start_faceaudit(
        "gateway", "--bootstrap", kafka_bootstrap, "--devices", str(devices_file),
        "--port", str(port), "--rate", "1000",
    )  # fmt: skip
    context = ssl.create_default_context(cafile=broker_home() / "kafka" / "tls" / "ca.pem")
    url = f"https://127.0.0.1:{port}/v1/events"
    deadline = time.monotonic() + 60
    while True:
        assert gateway.poll() is None, gateway.communicate()[1]
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context)
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.3)
    acknowledged: dict[str, tuple[int, int]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def device_loop(device: str) -> None:
        for batch in range(10_000):
            ids = [str(uuid.uuid4()) for _ in range(100)]
            body = framed(*(
                event(0, event_id=i, device_id=device, device_seq=batch * 100 + n)
                for n, i in enumerate(ids)
            ))  # fmt: skip
            try:
                status, answer = _https(url, tokens[device], body, context)
            except OSError:
                return  # the gateway is gone
            if status != 202:
                failures.append(f"{status} {answer}")
                return
            with lock:
                for receipt in answer["records"]:
                    acknowledged[receipt["id"]] = (receipt["partition"], receipt["offset"])

    threads = [threading.Thread(target=device_loop, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 3000 and gateway.poll() is None and not failures:
        time.sleep(0.05)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
    assert len(acknowledged) >= 3000
    found: dict[str, int] = {}
    consumer = kafka_consumer(
        kafka_as("validator"), group_id=None, enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )  # fmt: skip
    try:
        partitions = [
            TopicPartition(EVENTS_TOPIC, p) for p in consumer.partitions_for_topic(EVENTS_TOPIC)
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for message in consumer:
            if message.key is not None and message.key.decode() in devices:
                event_id = codec.decode(message.value).record["event_id"]
                found[event_id] = found.get(event_id, 0) + 1
    finally:
        consumer.close()
    missing = [i for i in acknowledged if i not in found]
    doubled = [i for i, n in found.items() if n > 1]
    assert missing == [] and doubled == [], (len(missing), len(doubled))
    print(f"acknowledged {len(acknowledged)}, all in the topic once; {len(found)} written")
