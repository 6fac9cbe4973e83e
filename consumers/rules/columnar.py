"""The rule engine: every active per-event rule of a profile, a batch at a time.

All matching rules are reported (Falco's ``rule_matching: all``): a regulator
needs every breach, not the first. Each active rule's condition
(``conditions.py``) runs once over the whole batch's Arrow columns; the
registry facts they share (each row's deployment and consent, and why that
consent is not valid) are worked out once per batch. Findings come row by
row: every rule that fires, ordered by row and then by catalogue order. The
stream rules live in the same catalogue but are judged by their trackers;
``violation`` builds every rule's record the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from consumers.registry import Registry
from consumers.rules.catalogue import Catalogue, Rule, check_profile, load_catalogue
from consumers.rules.columns import BatchContext
from consumers.rules.conditions import CONDITIONS, Condition
from consumers.violation import Violation
from schemas.topics import EVENT_KINDS

Finding = tuple[int, str, dict[str, Any]]
"""(row index in the batch, rule id, details)."""


class ColumnarRules:
    """Judges batches of capture or match events against one profile of the catalogue."""

    __slots__ = ("_plans", "catalogue", "profile", "registry")

    def __init__(
        self, profile: str, registry: Registry, catalogue: Catalogue | None = None
    ) -> None:
        """Bind a profile and a registry; ValueError if the profile or catalogue does not fit."""
        self.profile = check_profile(profile)
        self.registry = registry
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        per_event = {rule.id for rule in self.catalogue.rules if not rule.is_stream}
        if per_event != CONDITIONS.keys():
            raise ValueError(
                "catalogue and conditions disagree: no condition for "
                f"{sorted(per_event - CONDITIONS.keys())}, no rule for "
                f"{sorted(CONDITIONS.keys() - per_event)}"
            )
        self._plans: dict[str, tuple[tuple[Rule, Condition], ...]] = {
            kind: tuple(
                (rule, CONDITIONS[rule.id]) for rule in self.catalogue.active_rules(profile, kind)
            )
            for kind in EVENT_KINDS
        }

    def evaluate(self, kind: str, events: pa.Table | pa.RecordBatch) -> list[Finding]:
        """Every rule that fires on each row of a batch of ``kind`` events.

        ``events`` has the native decoder's columns (enums may also come as
        plain strings); columns the rules do not read are ignored.
        """
        return self._evaluate(kind, events, hold=False)[0]

    def evaluate_arrived(
        self, kind: str, events: pa.Table | pa.RecordBatch
    ) -> tuple[list[Finding], pa.Array]:
        """`evaluate`, leaving out the rows that await the registry, and which rows those are.

        A row awaits the registry when its deployment, or the consent it
        names, is not in it (yet): the streaming validator holds such events
        and judges them later. The registry join is the one the rules use.
        """
        return self._evaluate(kind, events, hold=True)

    def awaiting(self, events: pa.Table | pa.RecordBatch) -> pa.Array:
        """Per row, whether it names a deployment, or a consent, the registry lacks (yet)."""
        batch = _one_batch(events)
        if batch.num_rows == 0:
            return pa.array([], pa.bool_())
        return _awaiting(BatchContext(batch, self.registry))

    def is_active(self, rule_id: str) -> bool:
        """Whether the rule can fire under this engine's profile (severity is not ``off``)."""
        return self.catalogue.severity(rule_id, self.profile) != "off"

    def violation(
        self, rule_id: str, event: Mapping[str, Any], details: Mapping[str, Any]
    ) -> Violation:
        """The violation record of any rule, stream rules' as per-event ones'.

        ``event`` supplies the envelope; a finding with no event (FR-DELETION-
        OVERDUE) passes a mapping with at least ``processor_id`` and
        ``event_time``, and the other envelope fields default to None or "".
        """
        rule = self.catalogue.rule(rule_id)
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

    def _evaluate(
        self, kind: str, events: pa.Table | pa.RecordBatch, hold: bool
    ) -> tuple[list[Finding], pa.Array]:
        try:
            plan = self._plans[kind]
        except KeyError:
            raise ValueError(f"rules judge {', '.join(EVENT_KINDS)} events, not {kind!r}") from None
        batch = _one_batch(events)
        if batch.num_rows == 0:
            return [], pa.array([], pa.bool_())
        ctx = BatchContext(batch, self.registry)
        awaiting = _awaiting(ctx)
        judged = pc.invert(awaiting) if hold else None
        findings: list[Finding] = []
        for rule, condition in plan:
            fires = condition(ctx)
            rows = fires.rows if judged is None else pc.and_(fires.rows, judged)
            indices = pc.indices_nonzero(rows)
            if len(indices):
                details = fires.details
                findings.extend((row.index, rule.id, details(row)) for row in ctx.rows(indices))
        findings.sort(key=itemgetter(0))  # stable: catalogue order within a row
        return findings, awaiting


def _awaiting(ctx: BatchContext) -> pa.Array:
    return pc.or_(
        pc.invert(ctx.has_deployment),
        pc.and_(pc.invert(ctx.is_null("consent_id")), pc.invert(ctx.has_consent)),
    )


def _one_batch(events: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    """The events as one record batch (a table's chunks are joined)."""
    if isinstance(events, pa.RecordBatch):
        return events
    batches = events.combine_chunks().to_batches()
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=events.schema)
    return batches[0]
