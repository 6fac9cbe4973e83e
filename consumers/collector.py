"""The cycle collector, set for a loop that keeps a batch of rows alive at a time.

With CPython's default thresholds (700, 10, 10) the rows of a batch outlive
the young collections, since a batch lives for a whole fill, and reach the
oldest generation, which is then traversed in full about once per batch:
11 to 14 s of a 1,000,000-event run (`docs/benchmarks.md`). Almost none of
it is garbage the collector is needed for: reference counting frees a batch
as soon as it is stored. So the validator collects in larger steps.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: A young collection per 50,000 net allocations (a few batches of rows), the
#: middle one per 20 of those, the full one per 10 of those at most.
BATCH_THRESHOLDS: Final = (50_000, 20, 10)


@contextmanager
def collecting_in_batches() -> Iterator[None]:
    """Run the block with `BATCH_THRESHOLDS`; the previous thresholds come back after."""
    previous = gc.get_threshold()
    gc.set_threshold(*BATCH_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
