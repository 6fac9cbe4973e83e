"""`faceaudit keys`: key pairs made, registered on the keys topic, listed and revoked."""

from __future__ import annotations

import base64
import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from helpers import faceaudit, kafka_as

from core.errors import FaceauditError
from faceaudit.keys import new_key_record, revoked, write_private_key
from producers.event_producer import EventProducer
from schemas import codec
from schemas.topics import KEYS_TOPIC

T = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_new_key_pair_signs_what_its_record_verifies(tmp_path: Path) -> None:
    record, private = new_key_record("device", "p-1", "dev-1", T)
    assert (record["owner"], record["processor_id"], record["device_id"]) == (
        "device",
        "p-1",
        "dev-1",
    )
    assert (record["algorithm"], record["valid_from"], record["revoked_at"]) == ("ed25519", T, None)
    path = write_private_key(private, tmp_path / "keys", record["key_id"])
    loaded = load_pem_private_key(path.read_bytes(), password=None)
    signature = loaded.sign(b"a consent record")
    Ed25519PublicKey.from_public_bytes(record["public_key"]).verify(signature, b"a consent record")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert codec.decode(codec.encode("key", record)).record == record


@pytest.mark.parametrize(
    ("owner", "processor_id", "device_id", "error"),
    [
        ("auditor", "p-1", None, "speaks for no processor"),
        ("processor", None, None, "needs the processor"),
        ("device", "p-1", None, "needs its device"),
        ("processor", "p-1", "dev-1", "give no --device-id"),
        ("camera", "p-1", None, "one of processor, device, auditor"),
    ],
)
def test_a_key_must_name_exactly_whom_it_speaks_for(
    owner: str, processor_id: str | None, device_id: str | None, error: str
) -> None:
    with pytest.raises(FaceauditError, match=error):
        new_key_record(owner, processor_id, device_id, T)


def test_a_key_is_revoked_once_and_not_before_it_counts() -> None:
    record, _ = new_key_record("auditor", None, None, T)
    later = revoked(record, T + timedelta(days=1))
    assert later["revoked_at"] == T + timedelta(days=1) and record["revoked_at"] is None
    with pytest.raises(FaceauditError, match=r"revoked at .* already"):
        revoked(later, T + timedelta(days=2))
    with pytest.raises(FaceauditError, match="before that"):
        revoked(record, T - timedelta(seconds=1))


@pytest.mark.integration
def test_generate_list_and_revoke_on_the_secured_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    made = faceaudit(
        "keys", "generate", "--owner", "processor", "--processor-id", "p-keys",
        "--dir", str(keys), "--bootstrap", kafka_bootstrap,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key_id = re.search(r"key (\S+) registered", made.stdout).group(1)
    [path] = keys.iterdir()
    assert path.name == f"{key_id}.pem" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in made.stdout + made.stderr

    with EventProducer(kafka_as("operator")) as operator:  # the topic's one writer errs
        operator.send_raw(KEYS_TOPIC, b"not a key record", key=b"garbage")
    listed = faceaudit("keys", "list", "--format", "jsonl", "--bootstrap", kafka_bootstrap)
    assert listed.returncode == 0, listed.stderr
    assert "skipped faceaudit.keys.v1[" in listed.stderr and "bad_magic" in listed.stderr
    mine = [json.loads(line) for line in listed.stdout.splitlines() if key_id in line]
    assert len(mine) == 1 and mine[0]["processor_id"] == "p-keys"
    private = load_pem_private_key(path.read_bytes(), password=None)
    Ed25519PublicKey.from_public_bytes(base64.b64decode(mine[0]["public_key"])).verify(
        private.sign(b"x"), b"x"
    )
    assert mine[0]["revoked_at"] is None

    gone = faceaudit("keys", "revoke", key_id, "--bootstrap", kafka_bootstrap)
    assert gone.returncode == 0, gone.stderr
    table = faceaudit("keys", "list", "--bootstrap", kafka_bootstrap).stdout
    [row] = [line for line in table.splitlines() if line.startswith(key_id)]
    assert row.split()[-1] != "-", "revoked_at is shown"
    again = faceaudit("keys", "revoke", key_id, "--bootstrap", kafka_bootstrap)
    assert again.returncode == 1 and "already" in again.stderr
    unknown = faceaudit("keys", "revoke", "no-such-key", "--bootstrap", kafka_bootstrap)
    assert unknown.returncode == 1 and "no key 'no-such-key'" in unknown.stderr


@pytest.mark.integration
def test_a_producer_cannot_register_a_key_and_leaves_no_key_file(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    producer = kafka_as("producer")
    password = tmp_path / "producer.password"
    password.write_text(producer.password)
    password.chmod(0o600)
    keys = tmp_path / "keys"
    refused = faceaudit(
        "keys", "generate", "--owner", "processor", "--processor-id", "p-forger",
        "--dir", str(keys), "--bootstrap", kafka_bootstrap,
        "--kafka-user", producer.user, "--kafka-password-file", str(password),
        "--kafka-ca-file", producer.ca_file,
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"refused user '{producer.user}' to write faceaudit.keys.v1" in refused.stderr
    assert producer.password not in refused.stderr
    assert list(keys.iterdir()) == [], "a key nobody trusts is not kept"
