"""The interface every step of the chain offers, after getsentry/arroyo's ProcessingStrategy.

The chain is synchronous: the validator submits one batch per turn of its
loop, empty when nothing was read, and then polls the chain, so that a
step holding work can hand it on once it is due (`GatherStep`).
"""

from __future__ import annotations

from typing import Protocol

from consumers.batch import Batch


class Step(Protocol):
    def submit(self, batch: Batch) -> None:
        """Do this step's work on the batch and hand it to the next step."""

    def poll(self) -> None:
        """Hand on what has become due with time (a gathered batch whose window closed)."""

    def join(self, end_of_input: bool) -> None:
        """Finish the work in hand and pass it on (a clean stop).

        `end_of_input`: nothing more will come, so what only the end can
        decide (sequence gaps still open) is decided too.
        """

    def close(self) -> None:
        """Drop the work in hand: its partitions were revoked and are read again elsewhere."""


class Forwarding:
    """A step that keeps nothing between batches: `join` and `close` pass straight on."""

    def __init__(self, next_step: Step) -> None:
        self.next_step = next_step

    def poll(self) -> None:
        self.next_step.poll()

    def join(self, end_of_input: bool) -> None:
        self.next_step.join(end_of_input)

    def close(self) -> None:
        self.next_step.close()


class Collect:
    """The end of a shortened chain: keeps every batch that reaches it.

    For running some of the steps alone: the benchmark's stage costs, and
    the tests of a step with fakes of its neighbours.
    """

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.joined: list[bool] = []
        self.closed = False

    def submit(self, batch: Batch) -> None:
        self.batches.append(batch)

    def poll(self) -> None:
        """Nothing is due here."""

    def join(self, end_of_input: bool) -> None:
        self.joined.append(end_of_input)

    def close(self) -> None:
        self.closed = True
