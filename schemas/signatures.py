"""Signed records (event-contract.md, section Signatures): what is signed, and how it travels.

A signature is Ed25519 over the exact message value (the single-object encoded
bytes). On Kafka it travels in two headers; in the JSON form as ``"key_id"``
and ``"signature"`` (standard base64) beside ``"type"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from core.errors import FaceauditError

KEY_ID_HEADER: Final = "faceaudit-key-id"
SIGNATURE_HEADER: Final = "faceaudit-signature"
JSON_FIELDS: Final = ("key_id", "signature")
PROCESSOR_SIGNED_KINDS: Final = ("consent", "deployment", "deletion")
"""The registry kinds, signed by a ``processor`` key of the record's ``processor_id``."""
SIGNED_KINDS: Final = (*PROCESSOR_SIGNED_KINDS, "checkpoint")
"""Every signed kind: a checkpoint by a key of its device or of its processor."""
SIGNATURE_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Signature:
    """Who signed (the key's id) and the 64 signature bytes."""

    key_id: str
    value: bytes

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers that carry this signature."""
        return [(KEY_ID_HEADER, self.key_id.encode()), (SIGNATURE_HEADER, self.value)]


def from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Signature | str | None:
    """The signature in a message's headers, None if it carries none, or what is wrong."""
    found = {name: value for name, value in headers or () if name in _HEADERS}
    if not found:
        return None
    key_id, value = found.get(KEY_ID_HEADER), found.get(SIGNATURE_HEADER)
    if not key_id or value is None:
        missing = SIGNATURE_HEADER if key_id else KEY_ID_HEADER
        return f"header {missing} is missing"
    try:
        return Signature(key_id.decode("utf-8"), value)
    except UnicodeDecodeError:
        return f"header {KEY_ID_HEADER} is not UTF-8"


def record_time(kind: str, record: Mapping[str, Any]) -> datetime | None:
    """The moment a signing key must be valid at; None for a deployment, which has none."""
    if kind == "consent":
        return record["withdrawn_at"] or record["granted_at"]
    if kind == "deletion":
        return record["deleted_at"]
    if kind == "checkpoint":
        return record["signed_at"]
    return None


_HEADERS: Final = frozenset({KEY_ID_HEADER, SIGNATURE_HEADER})


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs messages as the registered key ``key_id``; the private key is never shown."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, message: bytes) -> Signature:
        """Ed25519 over the exact message value, as the contract has it."""
        return Signature(self.key_id, self.private_key.sign(message))

    @classmethod
    def from_pem_file(cls, path: Path) -> Signer:
        """The key `faceaudit keys generate` wrote to ``KEY_ID.pem``; its id is the file's stem."""
        try:
            private = load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise FaceauditError(f"cannot read the signing key {path}: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise FaceauditError(f"{path} holds no Ed25519 private key")
        return cls(path.stem, private)
