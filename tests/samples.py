"""One valid, rule-compliant sample record per kind, for tests.

All samples describe one story: processor ``p-1`` runs deployment ``d-1`` (a
payment terminal in a retail shop, region 310104); subject ``s-1`` gave
separate consent ``c-1``; on 2026-03-01 device ``dev-1`` captured the face and
verified it 1:1; ``p-1`` signs with key ``k-p-1``. Each event sample is the
first of its device (``device_seq`` 0, ``prev_hash`` None): a test that chains
events sets both itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.codec import schema

CAPTURE_EVENT_ID = "6f1c1a52-7d1e-4c57-9a51-0c5a3b1f2a01"
MATCH_EVENT_ID = "6f1c1a52-7d1e-4c57-9a51-0c5a3b1f2a02"
DELETION_EVENT_ID = "6f1c1a52-7d1e-4c57-9a51-0c5a3b1f2a03"


def _at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def streamed_at() -> datetime:
    """A time for events sent to the broker now. The events topic stamps each message with
    its arrival, and the samples' 2026-03-01 would be months off it (AUDIT-CLOCK-SKEW)."""
    return datetime.now(UTC).replace(microsecond=0)


def _envelope(event_id: str, event_time: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_time": event_time,
        "processor_id": "p-1",
        "deployment_id": "d-1",
        "device_id": "dev-1",
        "region_code": "310104",
        "device_seq": 0,
        "prev_hash": None,
    }


def _situation() -> dict[str, Any]:
    """The fields capture and match share beyond the envelope."""
    return {
        "location_type": "retail",
        "public_place": True,
        "remote_noncontact": False,
        "purpose": "payment",
        "legal_basis": "consent",
        "subject_ref": "s-1",
        "consent_id": "c-1",
        "subject_age": 30,
    }


def _capture() -> dict[str, Any]:
    return {
        **_envelope(CAPTURE_EVENT_ID, _at(2026, 3, 1, 8)),
        **_situation(),
        "signage_present": True,
        "capture_zone_approved": True,
        "attribute_analysis": [],
        "raw_image_retained": False,
        "anonymized": False,
        "retention_days": 30,
        "storage_location": "device",
        "transmitted_off_device": False,
        "transmission_channel": None,
        "encrypted_at_rest": True,
        "encrypted_in_transit": True,
    }


def _match() -> dict[str, Any]:
    return {
        **_envelope(MATCH_EVENT_ID, _at(2026, 3, 1, 8, 0, 1)),
        **_situation(),
        "capture_event_id": CAPTURE_EVENT_ID,
        "match_mode": "verify_1to1",
        "gallery_id": "g-1",
        "gallery_size": 1,
        "score": 0.875,  # exact in float32, so it survives a round trip unchanged
        "threshold": 0.75,
        "matched": True,
        "alternative_available": True,
        "alternative_offered": True,
        "subject_declined_fr": False,
        "service_denied": False,
        "operator_id": None,
        "manual_review_id": None,
    }


def _consent() -> dict[str, Any]:
    return {
        "consent_id": "c-1",
        "processor_id": "p-1",
        "subject_ref": "s-1",
        "grantor": "self",
        "consent_type": "separate",
        "purposes": ["payment", "access_control"],
        "covers_internet_transfer": False,
        "covers_image_retention": False,
        "notice_version": "n1",
        "granted_at": _at(2026, 1, 1),
        "expires_at": None,
        "withdrawn_at": None,
    }


def _deployment() -> dict[str, Any]:
    return {
        "deployment_id": "d-1",
        "processor_id": "p-1",
        "registered_purposes": ["payment", "access_control"],
        "declared_retention_days": 30,
        "pipia_date": _at(2025, 12, 1),
        "notice_version": "n1",
        "notice_complete": True,
        "law_requires_written_consent": False,
        "filing_id": "F-1",
        "filing_date": _at(2025, 12, 15),
    }


def _deletion() -> dict[str, Any]:
    return {
        "event_id": DELETION_EVENT_ID,
        "processor_id": "p-1",
        "subject_ref": "s-1",
        "deleted_at": _at(2026, 3, 1, 12),
        "reason": "purpose_fulfilled",
    }


def _checkpoint() -> dict[str, Any]:
    return {
        "checkpoint_id": "00000000-0000-4000-8000-00000000c001",
        "processor_id": "p-1",
        "device_id": "dev-1",
        "device_seq": 0,
        "head_hash": "0" * 64,
        "signed_at": _at(2026, 3, 1, 9),
    }


def _key() -> dict[str, Any]:
    return {
        "key_id": "k-p-1",
        "owner": "processor",
        "processor_id": "p-1",
        "device_id": None,
        "algorithm": "ed25519",
        "public_key": bytes(range(32)),
        "valid_from": _at(2026, 1, 1),
        "revoked_at": None,
    }


_BUILDERS = {
    "capture": _capture,
    "match": _match,
    "consent": _consent,
    "deployment": _deployment,
    "deletion": _deletion,
    "checkpoint": _checkpoint,
    "key": _key,
}


def sample(kind: str, **overrides: Any) -> dict[str, Any]:
    """A fresh, complete, valid record of ``kind`` with ``overrides`` applied.

    An override must name a field of the schema: a misspelt name raises
    TypeError instead of leaving the test silently testing the default.
    """
    record = _BUILDERS[kind]()
    fields = {field["name"] for field in schema(kind)["fields"]}
    unknown = sorted(overrides.keys() - fields)
    if unknown:
        raise TypeError(f"sample({kind!r}): no field {', '.join(unknown)}")
    return record | overrides
