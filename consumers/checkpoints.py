"""Checkpoints in the stream: each device's signed chain heads, verified, stored and used.

A checkpoint counts only if its signature verifies under a key of its device
or of its processor that counts at its ``signed_at`` (`consumers.keyring`);
one that does not is AUDIT-CHECKPOINT-BAD and is not used. Every checkpoint
is stored with its verdict, so the trail shows which chain heads were
vouched for. The valid ones go to the tracker
(`consumers.rules.checkpoint_columns`), which holds them against the events
they cover.
"""

from __future__ import annotations

from consumers.batch import Batch, ReadCheckpoint, now_utc
from consumers.judge import Anchored, Judge, Tables
from consumers.key_feed import KeyFeed
from consumers.keyring import Refusal
from consumers.rules.checkpoint_columns import CheckpointTracker
from schemas import signatures
from schemas.signatures import Signature


class CheckpointJudge:
    """Verifies the checkpoints of each batch, stages their rows, and judges the events."""

    def __init__(self, judge: Judge, keys: KeyFeed | None, tracker: CheckpointTracker) -> None:
        """`keys`: where signatures are checked (None: every checkpoint counts)."""
        self._judge = judge
        self._keys = keys
        self._tracker = tracker

    def submit(
        self, tables: Tables, checkpoints: list[ReadCheckpoint], batch: Batch
    ) -> list[Anchored]:
        """The batch's events and checkpoints, in that order; the findings to stage."""
        self._tracker.observe(tables.values())
        valid = self._verified(checkpoints, batch) if checkpoints else []
        found = self._tracker.judge([(c.record, c.position) for c in valid])
        return self._judge.violations(found) if found else []

    def _verified(self, checkpoints: list[ReadCheckpoint], batch: Batch) -> list[ReadCheckpoint]:
        """Stage each checkpoint's row and AUDIT-CHECKPOINT-BAD; the valid ones, in order."""
        valid = []
        for checkpoint, refused in zip(checkpoints, self._refusals(checkpoints), strict=True):
            row = {
                **checkpoint.record,
                "key_id": _key_id(checkpoint, refused),
                "valid": refused is None,
                "problem": "" if refused is None else refused.detail,
            }
            batch.add("checkpoints", row, *checkpoint.position)
            if refused is None:
                valid.append(checkpoint)
                continue
            for violation in self._judge.bad_checkpoint(checkpoint.record, refused):
                batch.add_violation(violation, *checkpoint.position, now_utc())
        return valid

    def _refusals(self, checkpoints: list[ReadCheckpoint]) -> list[Refusal | None]:
        if self._keys is None:
            return [None] * len(checkpoints)
        return self._keys.refusals(
            [("checkpoint", c.record, c.value, c.headers) for c in checkpoints]
        )


def _key_id(checkpoint: ReadCheckpoint, refused: Refusal | None) -> str | None:
    """The id of the key the checkpoint names, if it names one."""
    if refused is not None:
        return refused.key_id
    signature = signatures.from_headers(checkpoint.headers)
    return signature.key_id if isinstance(signature, Signature) else None
