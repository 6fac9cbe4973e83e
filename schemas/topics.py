"""Record kinds, their default Kafka topics and message keys (event-contract.md)."""

from typing import Final

EVENT_KINDS: Final = ("capture", "match")
REGISTRY_KINDS: Final = ("consent", "deployment")
KINDS: Final = ("capture", "match", "consent", "deployment", "deletion")

TOPICS: Final[dict[str, str]] = {kind: f"faceaudit.{kind}.v1" for kind in KINDS}
DEAD_LETTER_TOPIC: Final = "faceaudit.dead-letters.v1"

# What the validator itself produces: its findings, for SIEMs and paging.
OUTPUT_KINDS: Final = ("violation",)
VIOLATION_TOPIC: Final = "faceaudit.violations.v1"
COMPACTED_TOPICS: Final = frozenset(TOPICS[kind] for kind in REGISTRY_KINDS)

KEY_FIELD: Final[dict[str, str]] = {
    "capture": "device_id",
    "match": "device_id",
    "consent": "consent_id",
    "deployment": "deployment_id",
    "deletion": "processor_id",
}
