"""The public keys the audit trusts, and the verdict on a signed record.

Key records come from the keys topic (only the operator writes it) or,
offline, with the inputs. A later record for a ``key_id`` replaces the
earlier one, except that a revocation is never undone or moved later: the
earliest ``revoked_at`` stays in force, as the earliest withdrawal of a
consent does. A key whose public half changes under the same id is refused
(the first one stays), so a record once verified stays verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas.signatures import Signature, record_time

Record = dict[str, Any]
Reason = Literal["unsigned", "bad_signature"]
TRUST_MODES: Final = ("signatures", "none")
"""``signatures``: a registry record counts only if it verifies; ``none``: all count."""


def trust_line(trust: str) -> str:
    """How far records are trusted, for a start-up line."""
    if trust == "none":
        return "trust none: registry signatures NOT checked"
    return "registry records must be signed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a signed kind's record does not count: the dead-letter reason and what was wrong."""

    reason: Reason
    detail: str
    key_id: str | None


class KeyRing:
    """Registered keys by id, and whether a record's signature counts under them."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._public: dict[str, Ed25519PublicKey] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._records

    def add(self, record: Mapping[str, Any]) -> None:
        """Register a key record, or apply a later one for a known key_id."""
        key_id = record["key_id"]
        known = self._records.get(key_id)
        if known is not None and known["public_key"] != record["public_key"]:
            return
        if known is not None and known["revoked_at"] is not None:
            revoked = record["revoked_at"]
            record = {
                **record,
                "revoked_at": min(known["revoked_at"], revoked or known["revoked_at"]),
            }
        self._records[key_id] = dict(record)
        if key_id not in self._public:
            self._public[key_id] = Ed25519PublicKey.from_public_bytes(record["public_key"])

    def refusal(
        self,
        kind: str,
        record: Mapping[str, Any],
        message: bytes,
        signature: Signature | None,
    ) -> Refusal | None:
        """None if ``message`` (the record's exact bytes) carries a signature that counts for
        ``record``: by a ``processor`` key of its processor (for a checkpoint, or a ``device``
        key of its device) valid at its time; else why not."""
        if signature is None:
            return Refusal(
                "unsigned", f"a {kind} record must be signed; it carries no signature", None
            )
        key_id = signature.key_id
        problem = self._key_problem(key_id, kind, record)
        if problem is None:
            try:
                self._public[key_id].verify(signature.value, message)
            except InvalidSignature:
                problem = f"the signature does not verify under key {key_id}"
        return None if problem is None else Refusal("bad_signature", problem, key_id)

    def digest_problem(
        self, key_id: str, signed_at: datetime, body: bytes, signature: bytes
    ) -> str | None:
        """None if `signature` over a digest's `body` verifies under `key_id`, an ``auditor``
        key that counts at `signed_at`; else what is wrong."""
        key = self._records.get(key_id)
        if key is None:
            return f"key {key_id} is not registered"
        if key["owner"] != "auditor":
            return f"key {key_id} is a {key['owner']} key, not the auditor's"
        revoked = key["revoked_at"]
        if signed_at < key["valid_from"]:
            return f"key {key_id} counts from {_iso(key['valid_from'])}, after {_iso(signed_at)}"
        if revoked is not None and signed_at >= revoked:
            return f"key {key_id} was revoked at {_iso(revoked)}, by {_iso(signed_at)}"
        try:
            self._public[key_id].verify(signature, body)
        except InvalidSignature:
            return f"the signature does not verify under key {key_id}"
        return None

    def _key_problem(self, key_id: str, kind: str, record: Mapping[str, Any]) -> str | None:
        key = self._records.get(key_id)
        processor_id = record["processor_id"]
        if key is None:
            return f"key {key_id} is not registered"
        if key["processor_id"] != processor_id or not _speaks_for(key, kind, record):
            device = f" or a device key of {record['device_id']}" if kind == "checkpoint" else ""
            return f"key {key_id} is not a processor key of {processor_id}{device}"
        at = record_time(kind, record)
        revoked = key["revoked_at"]
        if at is None:  # a deployment has no time of its own: a key not revoked
            return None if revoked is None else f"key {key_id} was revoked at {_iso(revoked)}"
        if at < key["valid_from"]:
            return f"key {key_id} counts from {_iso(key['valid_from'])}, after {_iso(at)}"
        if revoked is not None and at >= revoked:
            return f"key {key_id} was revoked at {_iso(revoked)}, by {_iso(at)}"
        return None


def _speaks_for(key: Mapping[str, Any], kind: str, record: Mapping[str, Any]) -> bool:
    """A processor key signs all its records; a device key only its device's checkpoints."""
    if key["owner"] == "processor":
        return True
    return (
        kind == "checkpoint"
        and key["owner"] == "device"
        and key["device_id"] == record["device_id"]
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
