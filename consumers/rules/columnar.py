"""The rule engine for a batch at a time: ``RuleEngine.evaluate`` over Arrow columns.

Each active rule's condition (``conditions.py``) runs once over the whole
batch; the registry facts they share (each row's deployment and consent, and
why that consent is not valid) are worked out once per batch, as
``EventContext`` does once per event. Findings come back as the per-event
engine would give them row by row: every rule that fires, ordered by row and
then by catalogue order, with the same details.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from consumers.registry import Registry
from consumers.rules.catalogue import Catalogue, Rule, check_profile, load_catalogue
from consumers.rules.columns import BatchContext
from consumers.rules.conditions import CONDITIONS, Condition
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
