"""Record kinds, their default Kafka topics and message keys (event-contract.md, version 2)."""

from typing import Final

EVENT_KINDS: Final = ("capture", "match")
REGISTRY_KINDS: Final = ("consent", "deployment")
PRODUCER_KINDS: Final = ("capture", "match", "consent", "deployment", "deletion", "checkpoint")
"""What processors and their devices send."""
KINDS: Final = (*PRODUCER_KINDS, "key")
"""Every input record kind; ``key`` records are the operator's alone."""

# One ordered stream per device: a device's captures and matches share one
# topic and one key, so Kafka keeps the order its sequence and chain need.
EVENTS_TOPIC: Final = "faceaudit.events.v1"
TOPICS: Final[dict[str, str]] = {
    "capture": EVENTS_TOPIC,
    "match": EVENTS_TOPIC,
    # A device's signed chain head, in its stream after the event it covers.
    "checkpoint": EVENTS_TOPIC,
    "consent": "faceaudit.consent.v1",
    "deployment": "faceaudit.deployment.v1",
    "deletion": "faceaudit.deletion.v1",
    # Public keys the audit trusts (`key` records), written by the operator alone.
    "key": "faceaudit.keys.v1",
}
KEYS_TOPIC: Final = TOPICS["key"]
INPUT_TOPICS: Final = tuple(dict.fromkeys(TOPICS[kind] for kind in PRODUCER_KINDS))
"""Every topic the producers write, each once."""
DEAD_LETTER_TOPIC: Final = "faceaudit.dead-letters.v1"

# What the validator itself produces: its findings, for SIEMs and paging.
OUTPUT_KINDS: Final = ("violation",)
VIOLATION_TOPIC: Final = "faceaudit.violations.v1"
# Signed digests of what the validator stored, written by the validator alone.
DIGESTS_TOPIC: Final = "faceaudit.digests.v1"
COMPACTED_TOPICS: Final = frozenset({*(TOPICS[kind] for kind in REGISTRY_KINDS), KEYS_TOPIC})

KEY_FIELD: Final[dict[str, str]] = {
    "capture": "device_id",
    "match": "device_id",
    "checkpoint": "device_id",
    "consent": "consent_id",
    "deployment": "deployment_id",
    "deletion": "processor_id",
    "key": "key_id",
}
