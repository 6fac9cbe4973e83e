"""The one engine both paths share: per-event rules plus stream rules.

The streaming validator feeds it registry records into its `registry`, each
batch's events as a table per kind to `judge_arrivals` (the per-event rules
over the columns and FR-FILING; events whose registry records are missing
come back to be held, and go to `judge_tables` later), the sequence rules
over the same tables (`consumers.rules.sequence_columns`), deletions to
`observe_deletion`, then `overdue` as event time moves on. The offline
checker (`faceaudit check`) does the same with `judge_rule_tables` and
`judge_filings`, except that the sequence rule sees each device's events
only once the whole input is read, in `device_seq` order (`in_order`).
Kafka keeps a device's order, so both paths report the same violations for
the same records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import detached, envelopes, positions
from consumers.keyring import Refusal
from consumers.registry import Record, Registry
from consumers.rules.catalogue import Catalogue, load_catalogue
from consumers.rules.checkpoint_columns import CheckpointTracker
from consumers.rules.checkpoint_offline import offline_findings
from consumers.rules.columnar import ColumnarRules
from consumers.rules.columnar import Finding as RowFinding
from consumers.rules.filing_columns import observe_filings
from consumers.rules.stream import DeletionTracker, FilingTracker, Finding, SequenceTracker
from consumers.violation import Violation
from schemas.signatures import record_time
from schemas.topics import KEY_FIELD

REWRITTEN = "REG-CONSENT-REWRITTEN"
UNSIGNED = "REG-UNSIGNED-RECORD"
CHECKPOINT_BAD = "AUDIT-CHECKPOINT-BAD"
Tables = dict[str, pa.Table]
"""Events of one batch: a table per kind, as the decode step makes them."""
Anchored = tuple[Violation, Any]
"""A violation and the anchor of the event it was found at (None for no event)."""


class Judge:
    """Judges one stream of events under one profile."""

    def __init__(
        self,
        profile: str,
        registry: Registry,
        catalogue: Catalogue | None = None,
        *,
        in_order: bool = False,
    ) -> None:
        """Judge under `profile`; the catalogue's parameters set the windows.

        `in_order`: each device's events reach `observe_sequence` in
        `device_seq` order (the offline checker sorts them), so the sequence
        rule needs no reorder window.
        """
        self.registry = registry
        self.catalogue = catalogue or load_catalogue()
        self.rules = ColumnarRules(profile, registry, self.catalogue)
        self.profile = profile
        params = self.catalogue.parameters(profile)
        self.sequences = SequenceTracker.in_order() if in_order else self.sequence_tracker()
        self.filings = FilingTracker(params.filing_threshold, params.filing_deadline_working_days)
        self.deletions = DeletionTracker(params.deletion_window_days)
        self._active = {rule.id for rule in self.catalogue.rules if self.rules.is_active(rule.id)}

    def judge_tables(self, tables: Tables) -> list[Anchored]:
        """The per-event rules and FR-FILING for the events of one batch, a table per kind.

        Anchored at each event's position. FR-FILING counts the subjects in
        the order the events were read (`message_index`), across kinds.
        """
        return self._judge_tables(tables, hold=False)[0]

    def judge_arrivals(self, tables: Tables) -> tuple[list[Anchored], Tables]:
        """`judge_tables` for the events the registry can judge; the others, to hold.

        Those name a deployment, or a consent, the registry lacks (yet).
        """
        return self._judge_tables(tables, hold=True)

    def _judge_tables(self, tables: Tables, hold: bool) -> tuple[list[Anchored], Tables]:
        found: list[Anchored] = []
        ready: Tables = {}
        waiting: Tables = {}
        for kind, table in tables.items():
            if hold:
                findings, awaiting = self.rules.evaluate_arrived(kind, table)
            else:
                findings, awaiting = self.rules.evaluate(kind, table), None
            found += self._anchored(table, findings)
            if awaiting is not None and pc.any(awaiting).as_py():
                waiting[kind] = detached(table.filter(awaiting))  # held for up to the grace
                table = table.filter(pc.invert(awaiting))
            if table.num_rows:
                ready[kind] = table
        found += self._violations(observe_filings(self.filings, ready, self.registry))
        return found, waiting

    def _anchored(self, table: pa.Table, findings: list[RowFinding]) -> list[Anchored]:
        """The violations of the rules that fired at rows of `table`, at those rows' positions."""
        if not findings:
            return []
        rows = [row for row, _, _ in findings]
        events, anchors = envelopes(table, rows), positions(table, rows)
        return [
            (self.rules.violation(rule_id, event, details), anchor)
            for (_, rule_id, details), event, anchor in zip(findings, events, anchors, strict=True)
        ]

    def judge_rule_tables(self, tables: Tables) -> list[Anchored]:
        """The per-event rules alone for a table per kind, anchored at each event's position."""
        found: list[Anchored] = []
        for kind, table in tables.items():
            found += self._anchored(table, self.rules.evaluate(kind, table))
        return found

    def judge_filings(self, arrived: pa.Table) -> list[Anchored]:
        """FR-FILING for events of any kinds, `message_index` the order they arrived in."""
        return self._violations(observe_filings(self.filings, {"": arrived}, self.registry))

    def sequence_tracker(self) -> SequenceTracker:
        """A new tracker of device sequences with this profile's reorder window.

        The streaming validator keeps one per assignment of partitions.
        """
        params = self.catalogue.parameters(self.profile)
        return SequenceTracker(params.reorder_window_events, params.reorder_window_seconds)

    def checkpoint_tracker(self) -> CheckpointTracker:
        """A new tracker of device checkpoints with this profile's window (one per assignment)."""
        params = self.catalogue.parameters(self.profile)
        return CheckpointTracker(params.checkpoint_window_events, params.checkpoint_window_seconds)

    def offline_checkpoints(
        self, by_device: list[pa.Table], checkpoints: list[Record], latest: datetime | None
    ) -> list[Finding]:
        """The checkpoint rules over a whole input (`checkpoint_columns.offline_findings`)."""
        params = self.catalogue.parameters(self.profile)
        events = pa.concat_tables(by_device)
        return offline_findings(
            events,
            checkpoints,
            latest,
            params.checkpoint_window_events,
            params.checkpoint_window_seconds,
        )

    def violations(self, findings: list[Finding]) -> list[Anchored]:
        """The violations of stream-rule findings, with their anchors (inactive rules dropped)."""
        return self._violations(findings)

    def apply_registry(self, kind: str, record: Record) -> list[Violation]:
        """Apply a consent or deployment record to the registry.

        REG-CONSENT-REWRITTEN if it would have rewritten a consent's history
        (the rewrite is not applied): it names the consent and what changed,
        and, having no event, the time kept as its event time.
        """
        refused = self.registry.apply(kind, record)
        if not refused or REWRITTEN not in self._active:
            return []
        details = {
            "consent_id": record["consent_id"],
            "processor_id": record["processor_id"],
            "changes": [rewrite.describe() for rewrite in refused],
        }
        anchor = {"processor_id": record["processor_id"], "event_time": refused[0].known}
        return [self.rules.violation(REWRITTEN, anchor, details)]

    def unsigned(
        self, kind: str, record: Record, refused: Refusal, seen_at: datetime
    ) -> list[Violation]:
        """REG-UNSIGNED-RECORD for a registry record whose signature does not count.

        Having no event, it carries the record's own time, or ``seen_at``
        (when the audit read it) for a deployment, which has none.
        """
        if UNSIGNED not in self._active:
            return []
        id_field = "event_id" if kind == "deletion" else KEY_FIELD[kind]
        details = {
            "kind": kind,
            "record_id": record[id_field],
            "processor_id": record["processor_id"],
            "reason": refused.reason,
            "problem": refused.detail,
            "key_id": refused.key_id,
        }
        anchor = {
            "processor_id": record["processor_id"],
            "event_time": record_time(kind, record) or seen_at,
        }
        return [self.rules.violation(UNSIGNED, anchor, details)]

    def bad_checkpoint(self, record: Record, refused: Refusal) -> list[Violation]:
        """AUDIT-CHECKPOINT-BAD for a checkpoint whose signature does not count (no event)."""
        if CHECKPOINT_BAD not in self._active:
            return []
        details = {
            "checkpoint_id": record["checkpoint_id"],
            "device_id": record["device_id"],
            "device_seq": record["device_seq"],
            "reason": refused.reason,
            "problem": refused.detail,
            "key_id": refused.key_id,
        }
        anchor = {
            "processor_id": record["processor_id"],
            "device_id": record["device_id"],
            "event_time": record["signed_at"],
        }
        return [self.rules.violation(CHECKPOINT_BAD, anchor, details)]

    def observe_deletion(self, record: Record) -> None:
        self.deletions.observe_deletion(record)

    def overdue(self, now: datetime) -> list[Violation]:
        """FR-DELETION-OVERDUE for withdrawals whose deletion window ended by `now`."""
        return [v for v, _ in self._violations(self.deletions.overdue(self.registry, now))]

    def finish(self) -> list[Violation]:
        """End of a finite input: sequence gaps still open are reported."""
        return [v for v, _ in self.finish_anchored()]

    def finish_anchored(self) -> list[Anchored]:
        return self._violations(self.sequences.finish())

    def _violations(self, findings: list[Finding] | Any) -> list[Anchored]:
        return [
            (self.rules.violation(rule_id, event, details), anchor)
            for rule_id, details, event, anchor in findings
            if rule_id in self._active
        ]
