"""Bad input gives one clear error line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import clickhouse_connect
import pytest

from faceaudit.broker import free_port


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceaudit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_unknown_profile(tmp_path: Path) -> None:
    result = run_cli("consume", "--profile", "gdpr", "--clickhouse", f"chdb://{tmp_path}/ch")
    assert_one_clear_error(result, "unknown profile", "gdpr", "cac-2025")


def test_unknown_profile_from_the_environment(tmp_path: Path) -> None:
    result = run_cli(
        "consume", "--clickhouse", f"chdb://{tmp_path}/ch", FACEAUDIT_PROFILE="cac-2019"
    )
    assert_one_clear_error(result, "unknown profile", "cac-2019")


def test_batch_window_must_be_positive(tmp_path: Path) -> None:
    result = run_cli("consume", "--batch-seconds", "0", "--clickhouse", f"chdb://{tmp_path}/ch")
    assert_one_clear_error(result, "--batch-seconds", "positive")


def test_unreachable_broker(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli(
        "consume",
        "--bootstrap",
        f"127.0.0.1:{port}",
        "--clickhouse",
        f"chdb://{tmp_path}/ch",
        FACEAUDIT_KAFKA_TIMEOUT="3",
        FACEAUDIT_KAFKA_USER="validator",
        FACEAUDIT_KAFKA_PASSWORD="not-shown",
    )
    assert_one_clear_error(result, "cannot reach Kafka", f"127.0.0.1:{port}")
    assert "not-shown" not in result.stderr


def test_a_broker_but_no_credentials(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(
        "simulate", "--bootstrap", address, "--events", "1", FACEAUDIT_BROKER_HOME=str(tmp_path)
    )
    assert_one_clear_error(result, f"no Kafka credentials for {address}", "--kafka-user")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("consume", "--clickhouse", f"chdb://{blocker}/store")
    assert_one_clear_error(result, "data directory", str(blocker))


@pytest.mark.integration
def test_store_open_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    holder = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        result = run_cli("consume", "--clickhouse", f"chdb://{path}")
        assert_one_clear_error(result, "already open in another process")
    finally:
        holder.close()


def test_bad_violation_rate() -> None:
    result = run_cli("simulate", "--violation-rate", "1.5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "between 0 and 1" in result.stderr
