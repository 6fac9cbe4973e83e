"""Signing keys for a simulated fleet: one processor key each, registered by the operator.

The simulator is a producer, which may not write the keys topic; on the local
broker the operator's credentials are at hand, so `faceaudit simulate`
registers a fresh key for each processor of its fleet as the operator and
signs with it. The private keys live in memory only, for the one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.clients import KafkaConfig
from faceaudit.keys import new_key_record, publish
from schemas.signatures import Signer


def register_fleet_keys(
    operator: KafkaConfig, processor_ids: Sequence[str], valid_from: datetime
) -> dict[str, Signer]:
    """A registered processor key per processor, valid from ``valid_from``, by processor_id."""
    made = {pid: new_key_record("processor", pid, None, valid_from) for pid in processor_ids}
    publish(operator, *(record for record, _ in made.values()))
    return {pid: Signer(record["key_id"], private) for pid, (record, private) in made.items()}
