"""Signed records in the contract's JSON form, for offline input (`faceaudit check`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import codec
from schemas.signatures import Signer


def signed_json(kind: str, record: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """The record's JSON form with its signature over its wire message, for offline input."""
    signature = signer.sign(codec.encode(kind, record))
    return codec.to_json(kind, record) | codec.signature_json(signature)
