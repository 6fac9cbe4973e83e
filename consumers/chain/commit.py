"""The commit step, the last: offsets move only after what they cover is stored and published.

Each commit carries the violations topic's mark, taken after the batch's
findings were published, so a partition's next owner knows from where to
look for what was published past the commit. Every owned partition is
committed again with the fresh mark, also one whose offset did not move: a
partition that stays quiet for a week would otherwise make its next owner
read a week of the violations topic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.batch import Batch
from consumers.published import encode_mark

Commit = Callable[[dict[TopicPartition, OffsetAndMetadata]], bool]
"""Commits offsets; False when the group took the partitions away meanwhile."""


class CommitStep:
    """Commits `batch.commit` whenever a partition moved past its last commit."""

    def __init__(self, commit: Commit, committed: Mapping[TopicPartition, int]) -> None:
        self._commit = commit
        self._committed = dict(committed)

    def submit(self, batch: Batch) -> None:
        moved = any(offset > self._committed.get(tp, -1) for tp, offset in batch.commit.items())
        if not moved:
            return
        mark = encode_mark(batch.mark)
        offsets = {tp: OffsetAndMetadata(offset, mark, -1) for tp, offset in batch.commit.items()}
        if self._commit(offsets):
            self._committed.update(batch.commit)

    def poll(self) -> None:
        """Nothing is kept here: every batch was committed as it came."""

    def join(self, end_of_input: bool) -> None:
        """Nothing is kept here."""

    def close(self) -> None:
        """Nothing is kept here."""
