"""The violation record: what the rule engine finds and the sink stores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule broken by one event (or, for stream rules, by a state of the stream)."""

    rule_id: str
    severity: str
    profile: str
    catalogue_version: str
    articles: tuple[str, ...]
    message: str
    event_id: str | None
    processor_id: str
    deployment_id: str
    device_id: str
    region_code: str
    event_time: datetime
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def violation_id(self) -> str:
        """Deterministic id, so a redelivered event yields the same violation id.

        Built from the rule, the profile, the processor and the event (or, for
        findings with no event, their details), never from the detection time.
        Event ids are the processors' own: two processors may send the same
        one, and each event's violation keeps an id of its own.
        """
        anchor = (
            self.event_id
            if self.event_id is not None
            else json.dumps(self.details, sort_keys=True, default=str)
        )
        text = json.dumps([self.rule_id, self.profile, self.processor_id, anchor])
        return hashlib.sha256(text.encode()).hexdigest()[:32]
