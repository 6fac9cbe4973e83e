"""The publish step: a batch's due findings go to their topics before its commit.

A finding is due once the commit moves past its event (`Outbox`): while an
earlier event of its partition is held for a late registry record, the
commit stays behind, and so does the finding. The violations already
published by the partition's last owner past its commit leave the outbox
unpublished (`consumers.published`).
"""

from __future__ import annotations

from consumers.batch import Batch
from consumers.chain.step import Forwarding, Step
from consumers.publisher import FindingsPublisher, Outbox, outgoing


class PublishStep(Forwarding):
    """Publishes what is due, then records the violations topic's mark in the batch."""

    def __init__(self, next_step: Step, publisher: FindingsPublisher, outbox: Outbox) -> None:
        super().__init__(next_step)
        self._publisher = publisher
        self._outbox = outbox

    def submit(self, batch: Batch) -> None:
        self._outbox.add(outgoing(batch.outbox))
        batch.free_findings()
        due = self._outbox.take_due(batch.commit)
        if any(due.values()):
            self._publisher.publish(due)
        batch.mark = dict(self._publisher.mark)
        self.next_step.submit(batch)
