"""`faceaudit serve`: the validator, the dashboard and /metrics in one process on the
embedded store, while a fleet streams in through the real broker."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import faceaudit, fleet_seed, kafka_as, start_faceaudit, start_group_at_end
from signing import fleet_signing_keys

from dashboard.auth import add_token
from dashboard.scope import Scope
from faceaudit.broker import free_ports
from producers.simulate import simulate

pytestmark = pytest.mark.integration


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.status, r.read().decode()


def wait_for(url: str, process, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def overview_events(base: str, token: str) -> int:
    _, body = get(f"{base}api/overview", token)
    return json.loads(body)["events"]["total"]


def test_serve_validates_while_the_dashboard_and_metrics_answer_on_one_store(
    kafka_bootstrap: str, tmp_path: Path, trusted_keys_file: Path
) -> None:
    group, seed = f"faceaudit-test-serve-{fleet_seed()}", fleet_seed()
    start_group_at_end(kafka_bootstrap, group)
    tokens = tmp_path / "tokens.jsonl"
    token = add_token(tokens, "national", Scope())
    web_port, metrics_port = free_ports(2)
    store = tmp_path / "ch"
    served = start_faceaudit(
        "serve", "--bootstrap", kafka_bootstrap, "--clickhouse", f"chdb://{store}",
        "--group", group, "--tokens", str(tokens), "--port", str(web_port),
        "--metrics-port", str(metrics_port), "--digest-interval", "2",
        "--batch-seconds", "0.2",
    )  # fmt: skip
    base = f"http://127.0.0.1:{web_port}/"
    try:
        wait_for(f"{base}healthz", served)
        # A paced fleet streams while the dashboard is read.
        sender = threading.Thread(
            target=simulate,
            args=(kafka_as("producer"),),
            kwargs={
                "seed": seed, "events": 3000, "devices": 10, "rate": 300,
                "progress": False, "signing_keys": fleet_signing_keys,
            },
        )  # fmt: skip
        sender.start()
        counts = []
        deadline = time.monotonic() + 60
        while len(set(counts)) < 3 and time.monotonic() < deadline:
            counts.append(overview_events(base, token))
            time.sleep(1.5)
        sender.join()
        assert len(set(counts)) >= 3 and counts == sorted(counts), counts
        status, page = get(base, token)
        assert status == 200 and '<meta http-equiv="refresh"' in page
        _, metrics = get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert "faceaudit_events_total" in metrics
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"{base}api/overview")
        assert refused.value.code == 401
        deadline = time.monotonic() + 60
        while overview_events(base, token) < 3000 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert overview_events(base, token) == 3000
    finally:
        served.send_signal(signal.SIGTERM)
        _, stderr = served.communicate(timeout=120)
    assert served.returncode == 0, stderr
    assert f"dashboard http://127.0.0.1:{web_port}/" in stderr
    # The clean stop signed a last digest: the whole store verifies.
    verified = faceaudit(
        "verify", "--clickhouse", f"chdb://{store}", "--keys", str(trusted_keys_file),
        "--no-progress",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 rows stored since the last digest" in verified.stderr
