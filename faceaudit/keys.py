"""The keys the audit trusts: Ed25519 key pairs made, registered, listed and revoked.

A key's public half is registered as a ``key`` record on the keys topic,
which only the operator may write (Kafka ACLs); its private half stays in a
file readable by its owner only, for the processor, device or auditor that
signs with it. A later record for a key replaces the earlier one, which is
how a key is revoked. Nothing here prints or logs a private key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from kafka import TopicPartition
from kafka.errors import KafkaError

from core.clients import KafkaConfig, kafka_consumer, kafka_producer, refusal
from core.errors import FaceauditError
from core.private_files import private_dir, write_private
from schemas import codec
from schemas.topics import KEYS_TOPIC

OWNERS: Final = ("processor", "device", "auditor")
Record = dict[str, Any]


def new_key_record(
    owner: str, processor_id: str | None, device_id: str | None, valid_from: datetime
) -> tuple[Record, Ed25519PrivateKey]:
    """A fresh key pair and its ``key`` record; FaceauditError if the owner's ids do not fit."""
    _check_owner(owner, processor_id, device_id)
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    record = {
        "key_id": f"{owner}-{uuid.uuid4().hex[:16]}",
        "owner": owner,
        "processor_id": processor_id,
        "device_id": device_id,
        "algorithm": "ed25519",
        "public_key": public,
        "valid_from": valid_from,
        "revoked_at": None,
    }
    codec.encode("key", record)  # a record the contract refuses is refused here, not on send
    return record, private


def write_private_key(private: Ed25519PrivateKey, directory: Path, key_id: str) -> Path:
    """The private key as PKCS#8 PEM in ``directory/KEY_ID.pem``: mode 0600, directory 0700."""
    private_dir(directory)
    path = directory / f"{key_id}.pem"
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_private(path, pem, exclusive=True)
    return path


def publish(kafka: KafkaConfig, *records: Mapping[str, Any], timeout: float = 30.0) -> None:
    """Produce ``key`` records to the keys topic and wait for the broker to take each."""
    messages = [(codec.encode("key", record), record["key_id"]) for record in records]
    producer = kafka_producer(kafka, acks="all", enable_idempotence=True)
    try:
        futures = [
            (producer.send(KEYS_TOPIC, message, key=key_id.encode()), key_id)
            for message, key_id in messages
        ]
        for future, key_id in futures:
            try:
                future.get(timeout=timeout)
            except KafkaError as exc:
                refused = refusal(kafka, exc, f"write {KEYS_TOPIC}")
                raise FaceauditError(refused or f"cannot register key {key_id}: {exc}") from None
    finally:
        producer.close()


def registered_keys(
    kafka: KafkaConfig, timeout: float = 30.0
) -> tuple[dict[str, Record], list[str]]:
    """The latest record of every key on the keys topic, by key_id, in the order first seen,
    and what is wrong with each message of the topic that is not a key record."""
    consumer = kafka_consumer(kafka, group_id=None, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(KEYS_TOPIC, p)
            for p in sorted(consumer.partitions_for_topic(KEYS_TOPIC) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        keys: dict[str, Record] = {}
        bad: list[str] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise FaceauditError(f"{KEYS_TOPIC} was not read to its end within {timeout:g} s")
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    record = _key_record(message.value)
                    if isinstance(record, str):
                        where = f"{KEYS_TOPIC}[{message.partition}]@{message.offset}"
                        bad.append(f"{where} is not a key record: {record}")
                    else:
                        keys[record["key_id"]] = record
        return keys, bad
    except KafkaError as exc:
        refused = refusal(kafka, exc, f"read {KEYS_TOPIC}")
        raise FaceauditError(refused or f"cannot read {KEYS_TOPIC}: {exc}") from None
    finally:
        consumer.close()


def revoked(record: Mapping[str, Any], at: datetime) -> Record:
    """The key's record with ``revoked_at``; FaceauditError if it was revoked already."""
    if record["revoked_at"] is not None:
        raise FaceauditError(
            f"key {record['key_id']} was revoked at {record['revoked_at'].isoformat()} already"
        )
    if at < record["valid_from"]:
        raise FaceauditError(
            f"key {record['key_id']} counts from {record['valid_from'].isoformat()}; "
            f"it cannot be revoked at {at.isoformat()}, before that"
        )
    return {**record, "revoked_at": at}


def _check_owner(owner: str, processor_id: str | None, device_id: str | None) -> None:
    if owner not in OWNERS:
        raise FaceauditError(f"a key's owner is one of {', '.join(OWNERS)}, not {owner!r}")
    if owner == "auditor" and (processor_id or device_id):
        raise FaceauditError("an auditor key speaks for no processor or device")
    if owner != "auditor" and not processor_id:
        raise FaceauditError(f"a {owner} key needs the processor it speaks for (--processor-id)")
    if owner == "device" and not device_id:
        raise FaceauditError("a device key needs its device (--device-id)")
    if owner == "processor" and device_id:
        raise FaceauditError("a processor key speaks for all its devices: give no --device-id")


def _key_record(value: bytes | None) -> Record | str:
    """The key record in ``value``, or what is wrong with it."""
    try:
        decoded = codec.decode(value)
    except codec.DecodeError as exc:
        return str(exc)
    if decoded.kind != "key":
        return f"a {decoded.kind} record"
    return decoded.record
