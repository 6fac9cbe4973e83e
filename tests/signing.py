"""Processor signing keys for tests: one fixed key per processor id, and its key record.

Each processor's key is derived from its id, so a test can sign records for
any processor without setup, and registering the key again (another test,
another run against the same broker) registers the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers import kafka_as

from faceaudit.keys import publish
from producers.checkpointing import CheckpointSchedule, checkpointed
from producers.signer import signed_json
from schemas import codec
from schemas.signatures import SIGNED_KINDS, Signer

VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)
_REGISTERED: set[str] = set()


def signer(processor_id: str) -> Signer:
    """The test key of ``processor_id``."""
    seed = hashlib.sha256(f"faceaudit test key {processor_id}".encode()).digest()
    return Signer(f"processor-test-{processor_id}", Ed25519PrivateKey.from_private_bytes(seed))


def key_record(processor_id: str, **changes: Any) -> dict[str, Any]:
    """The ``key`` record of ``processor_id``'s test key, valid from 2020."""
    return _record_of(signer(processor_id), "processor", processor_id) | changes


AUDITOR = Signer(
    "auditor-test",
    Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"faceaudit test auditor").digest()),
)
"""The auditor key every test's validator signs its digests with."""


def auditor_key_record() -> dict[str, Any]:
    """The ``key`` record of the test auditor key, valid from 2020."""
    return _record_of(AUDITOR, "auditor", None)


def _record_of(key: Signer, owner: str, processor_id: str | None) -> dict[str, Any]:
    public = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "key_id": key.key_id,
        "owner": owner,
        "processor_id": processor_id,
        "device_id": None,
        "algorithm": "ed25519",
        "public_key": public,
        "valid_from": VALID_FROM,
        "revoked_at": None,
    }


def signers(processor_ids: Iterable[str]) -> dict[str, Signer]:
    """The test keys of ``processor_ids``, registered on the test broker by its operator."""
    wanted = sorted(set(processor_ids))
    new = [pid for pid in wanted if pid not in _REGISTERED]
    if new:
        publish(kafka_as("operator"), *(key_record(pid) for pid in new))
        _REGISTERED.update(new)
    return {pid: signer(pid) for pid in wanted}


class RegisteringSigners(Mapping[str, Signer]):
    """Every processor's test key, registered on the test broker when first asked for:
    what a producer of any test's processors is given as ``signers``."""

    def __getitem__(self, processor_id: str) -> Signer:
        return signers([processor_id])[processor_id]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_REGISTERED))

    def __len__(self) -> int:
        return len(_REGISTERED)


TEST_SIGNERS = RegisteringSigners()


def fleet_signing_keys(processor_ids: list[str], valid_from: datetime) -> Mapping[str, Signer]:
    """`producers.simulate`'s signing_keys, from the test keys (valid from 2020)."""
    assert valid_from >= VALID_FROM, f"fleet records from {valid_from}, before the test keys"
    return signers(processor_ids)


def json_lines(records: Iterable[tuple[str, Mapping[str, Any]]], keys: bool = True) -> list[str]:
    """Records in the JSON form, one line each: the signed kinds signed by their processor's
    test key; with ``keys``, after them a checkpoint of each event and the key records of
    the processors (the checker loads every input's keys and checkpoints first, and the
    records' line numbers stay as they were)."""
    records = list(records)
    lines = [_line(kind, record) for kind, record in records]
    if not keys:
        return lines
    checkpoints = checkpoints_of(records)
    lines += [_line(kind, record) for kind, record in checkpoints]
    signing = sorted({r["processor_id"] for k, r in [*records, *checkpoints] if k in SIGNED_KINDS})
    return lines + [json.dumps(codec.to_json("key", key_record(pid))) for pid in signing]


def checkpoints_of(records: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Any]]:
    """A checkpoint of each event of `records`, as its device would vouch for it."""
    every_event = CheckpointSchedule(every=1)
    return [(k, r) for k, r in checkpointed(records, every_event) if k == "checkpoint"]


def _line(kind: str, record: Mapping[str, Any]) -> str:
    if kind in SIGNED_KINDS:
        return json.dumps(signed_json(kind, record, signer(record["processor_id"])))
    return json.dumps(codec.to_json(kind, record))
