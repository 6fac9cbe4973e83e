"""Checkpoints in the stream: each device's signed chain heads, verified and stored.

A checkpoint counts only if its signature verifies under a key of its device
or of its processor that counts at its ``signed_at`` (`consumers.keyring`);
one that does not is AUDIT-CHECKPOINT-BAD and is not used. Every checkpoint
is stored with its verdict, so the trail shows which chain heads were
vouched for.
"""

from __future__ import annotations

from consumers.batch import Batch, ReadCheckpoint, now_utc
from consumers.judge import Judge
from consumers.key_feed import KeyFeed
from consumers.keyring import Refusal
from schemas import signatures
from schemas.signatures import Signature


class CheckpointJudge:
    """Verifies the checkpoints of each batch and stages their rows and findings."""

    def __init__(self, judge: Judge, keys: KeyFeed | None) -> None:
        """`keys`: where signatures are checked (None: every checkpoint counts)."""
        self._judge = judge
        self._keys = keys

    def judge(self, checkpoints: list[ReadCheckpoint], batch: Batch) -> list[ReadCheckpoint]:
        """Stage each checkpoint's row and AUDIT-CHECKPOINT-BAD; the valid ones, in order."""
        valid = []
        for checkpoint in checkpoints:
            refused = self._refusal(checkpoint)
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

    def _refusal(self, checkpoint: ReadCheckpoint) -> Refusal | None:
        if self._keys is None:
            return None
        record, value, headers = checkpoint.record, checkpoint.value, checkpoint.headers
        return self._keys.refusal("checkpoint", record, value, headers)


def _key_id(checkpoint: ReadCheckpoint, refused: Refusal | None) -> str | None:
    """The id of the key the checkpoint names, if it names one."""
    if refused is not None:
        return refused.key_id
    signature = signatures.from_headers(checkpoint.headers)
    return signature.key_id if isinstance(signature, Signature) else None
