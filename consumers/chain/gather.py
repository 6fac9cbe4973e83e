"""The gather step: what each poll brought, decoded and judged at once, stored together.

The read step hands on what one short poll returned, and the decode and
judge steps work on it while the window of the batch to store is still
open: at a live rate, the time spent waiting for records is spent judging
them. This step joins those batches into one insert, once it holds
`size` messages or its first part has waited `seconds` (`--batch-size`,
`--batch-seconds`), as arroyo's Reduce does.
"""

from __future__ import annotations

import time

from consumers.batch import Batch
from consumers.chain.step import Step


class GatherStep:
    """Joins batches until enough messages or enough time; then hands the whole on."""

    def __init__(self, next_step: Step, size: int, seconds: float) -> None:
        self.next_step = next_step
        self._size = size
        self._seconds = seconds
        self._gathered: Batch | None = None
        self._since = 0.0

    def submit(self, batch: Batch) -> None:
        if self._gathered is not None and self._gathered.size + batch.size > self._size:
            self._hand_on()  # an insert holds at most `size` messages (one turn alone aside)
        if self._gathered is None:
            # The window opens when its first messages were being read.
            self._gathered, self._since = batch, batch.started or time.monotonic()
        else:
            self._gathered.merge(batch)
        if self._gathered.size >= self._size:
            self._hand_on()

    def poll(self) -> None:
        if self._gathered is not None and time.monotonic() - self._since >= self._seconds:
            self._hand_on()
        self.next_step.poll()

    def join(self, end_of_input: bool) -> None:
        if self._gathered is not None:
            self._hand_on()
        self.next_step.join(end_of_input)

    def close(self) -> None:
        self._gathered = None
        self.next_step.close()

    def _hand_on(self) -> None:
        batch, self._gathered = self._gathered, None
        self.next_step.submit(batch)
