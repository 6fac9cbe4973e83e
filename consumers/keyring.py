"""The public keys the audit trusts, and the verdict on a signed record.

Key records come from the keys topic (only the operator writes it) or,
offline, with the inputs. A later record for a ``key_id`` replaces the
earlier one, except that a revocation is never undone or moved later: the
earliest ``revoked_at`` stays in force, as the earliest withdrawal of a
consent does. A key whose public half changes under the same id is refused
(the first one stays), so a record once verified stays verified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from faceaudit_native import verify_ed25519

from schemas.signatures import Signature, record_time

Record = dict[str, Any]
Signed = tuple[str, Mapping[str, Any], bytes, Signature | None]
"""A signed kind's record: its kind, its fields, its exact bytes and the signature it carries."""
Reason = Literal["unsigned", "bad_signature"]
PUBLIC_KEY_BYTES: Final = 32  # Ed25519
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
        return self.refusals([(kind, record, message, signature)])[0]

    def refusals(self, signed: Sequence[Signed]) -> list[Refusal | None]:
        """`refusal` of each record, in order; the signatures are verified together, on the
        cores there are (``faceaudit_native.verify_ed25519``)."""
        verdicts: list[Refusal | None] = []
        checks: list[tuple[int, str, tuple[bytes, bytes, bytes]]] = []
        for index, (kind, record, message, signature) in enumerate(signed):
            if signature is None:
                detail = f"a {kind} record must be signed; it carries no signature"
                verdicts.append(Refusal("unsigned", detail, None))
                continue
            key_id = signature.key_id
            problem = self._key_problem(key_id, kind, record)
            if problem is None:
                public = self._records[key_id]["public_key"]
                checks.append((index, key_id, (public, message, signature.value)))
            verdicts.append(None if problem is None else Refusal("bad_signature", problem, key_id))
        verified = verify_ed25519([check for _, _, check in checks])
        for (index, key_id, _), good in zip(checks, verified, strict=True):
            if not good:
                detail = f"the signature does not verify under key {key_id}"
                verdicts[index] = Refusal("bad_signature", detail, key_id)
        return verdicts

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
        if len(key["public_key"]) != PUBLIC_KEY_BYTES:
            return _not_ed25519(key_id, key["public_key"])
        revoked = key["revoked_at"]
        if signed_at < key["valid_from"]:
            return f"key {key_id} counts from {_iso(key['valid_from'])}, after {_iso(signed_at)}"
        if revoked is not None and signed_at >= revoked:
            return f"key {key_id} was revoked at {_iso(revoked)}, by {_iso(signed_at)}"
        if not verify_ed25519([(key["public_key"], body, signature)])[0]:
            return f"the signature does not verify under key {key_id}"
        return None

    def _key_problem(self, key_id: str, kind: str, record: Mapping[str, Any]) -> str | None:
        key = self._records.get(key_id)
        processor_id = record["processor_id"]
        if key is None:
            return f"key {key_id} is not registered"
        if len(key["public_key"]) != PUBLIC_KEY_BYTES:
            return _not_ed25519(key_id, key["public_key"])
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


def _not_ed25519(key_id: str, public_key: bytes) -> str:
    return (
        f"key {key_id} is not an Ed25519 public key "
        f"({len(public_key)} bytes, not {PUBLIC_KEY_BYTES})"
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
