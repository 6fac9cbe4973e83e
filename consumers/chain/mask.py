"""The mask step: real identifiers in the judged events are masked before they are stored.

The judge step has already judged the events as sent (AUDIT-RAW-IDENTIFIER
among the rules); from here on, only the masked values travel.
"""

from __future__ import annotations

from consumers.batch import Batch
from consumers.chain.step import Forwarding, Step
from consumers.masking import IdentifierMask


class MaskStep(Forwarding):
    """Masks the identifier-like values of the batch's events, then hands the batch on."""

    def __init__(self, next_step: Step, mask: IdentifierMask) -> None:
        super().__init__(next_step)
        self._mask = mask

    def submit(self, batch: Batch) -> None:
        batch.event_tables = [self._mask.table(table) for table in batch.event_tables]
        self.next_step.submit(batch)
