"""The per-event rule engine: every active rule of a profile, on every event.

All matching rules are reported (Falco's ``rule_matching: all``): a regulator
needs every breach, not the first. Which predicates can fire for a kind under
a profile is decided once, at construction, so the per-event loop is one
registry lookup per event plus one call per active predicate. The stream
rules live in the same catalogue but are judged by the pipeline, which can
use ``violation`` to build their records the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.registry import Record, Registry
from consumers.rules.catalogue import Catalogue, Rule, check_profile, load_catalogue
from consumers.rules.predicates import PREDICATES, EventContext, Predicate
from consumers.violation import Violation
from schemas.topics import EVENT_KINDS


class RuleEngine:
    """Judges capture and match events against one profile of the catalogue."""

    __slots__ = ("_plans", "catalogue", "profile", "registry")

    def __init__(
        self, profile: str, registry: Registry, catalogue: Catalogue | None = None
    ) -> None:
        """Bind a profile and a registry; ValueError if the profile or catalogue does not fit."""
        self.profile = check_profile(profile)
        self.registry = registry
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        per_event = {rule.id for rule in self.catalogue.rules if not rule.is_stream}
        if per_event != PREDICATES.keys():
            raise ValueError(
                "catalogue and predicates disagree: no predicate for "
                f"{sorted(per_event - PREDICATES.keys())}, no rule for "
                f"{sorted(PREDICATES.keys() - per_event)}"
            )
        self._plans: dict[str, tuple[tuple[Rule, Predicate], ...]] = {
            kind: tuple(
                (rule, PREDICATES[rule.id]) for rule in self.catalogue.active_rules(profile, kind)
            )
            for kind in EVENT_KINDS
        }

    def evaluate(self, kind: str, event: Record) -> list[Violation]:
        """All violations of one capture or match event, in catalogue order."""
        try:
            plan = self._plans[kind]
        except KeyError:
            raise ValueError(f"rules judge {', '.join(EVENT_KINDS)} events, not {kind!r}") from None
        ctx = EventContext(event, self.registry)
        violations = []
        for rule, predicate in plan:
            details = predicate(event, kind, ctx)
            if details is not None:
                violations.append(self._violation(rule, event, details))
        return violations

    def is_active(self, rule_id: str) -> bool:
        """Whether the rule can fire under this engine's profile (severity is not ``off``)."""
        return self.catalogue.severity(rule_id, self.profile) != "off"

    def violation(self, rule_id: str, event: Record, details: Mapping[str, Any]) -> Violation:
        """Build the violation record of any rule, for stream rules as for per-event ones.

        ``event`` supplies the envelope; a finding with no event (FR-DELETION-
        OVERDUE) passes a mapping with at least ``processor_id`` and
        ``event_time``, and the other envelope fields default to None or "".
        """
        return self._violation(self.catalogue.rule(rule_id), event, details)

    def _violation(self, rule: Rule, event: Record, details: Mapping[str, Any]) -> Violation:
        return Violation(
            rule_id=rule.id,
            severity=rule.severity[self.profile],
            profile=self.profile,
            catalogue_version=self.catalogue.version,
            articles=rule.articles,
            message=rule.format_message(details),
            event_id=event.get("event_id"),
            processor_id=event["processor_id"],
            deployment_id=event.get("deployment_id", ""),
            device_id=event.get("device_id", ""),
            region_code=event.get("region_code", ""),
            event_time=event["event_time"],
            details=dict(details),
        )
