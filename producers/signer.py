"""A processor's or device's signing key, as the SDK holds it to sign records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from core.errors import FaceauditError
from schemas import codec
from schemas.signatures import Signature


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


def signed_json(kind: str, record: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """The record's JSON form with its signature over its wire message, for offline input."""
    signature = signer.sign(codec.encode(kind, record))
    return codec.to_json(kind, record) | codec.signature_json(signature)
