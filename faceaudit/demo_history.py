"""`faceaudit simulate --history DAYS`: the demo's week of history, every rule broken.

The producers know nothing of the rule catalogue (it belongs to the audit
side); this glue hands them the catalogue's per-event examples and the
profile's filing threshold.
"""

from __future__ import annotations

from consumers.rules.catalogue import Example, load_catalogue
from core.clients import KafkaConfig
from producers.history import Examples, HistoryReport, send_history
from producers.simulate import SigningKeys


def catalogue_examples() -> Examples:
    """Each per-event rule's example: its event kind and its changes."""
    return {
        rule.id: (rule.example.kind, rule.example.changes)
        for rule in load_catalogue().rules
        if isinstance(rule.example, Example)
    }


def history(
    kafka: KafkaConfig,
    *,
    profile: str,
    days: int,
    events: int,
    devices: int,
    seed: int,
    signing_keys: SigningKeys,
    progress: bool,
) -> HistoryReport:
    threshold = load_catalogue().parameters(profile).filing_threshold
    return send_history(
        kafka,
        examples=catalogue_examples(),
        filing_threshold=threshold,
        signing_keys=signing_keys,
        days=days,
        events=events,
        devices=devices,
        seed=seed,
        progress=progress,
    )
