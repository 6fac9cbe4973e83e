"""The regions each processor's events came from: where a violation with no event is shown.

A violation of an event lies in that event's region. FR-DELETION-OVERDUE,
the REG-* rules and AUDIT-CHECKPOINT-BAD judge no event, so their
`region_code` is empty; they are stored with the regions of their
processor's events instead, as far as this process has seen them (the store's
statistics at start, then every batch it stores), so a regulator scoped to
one of those regions sees them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import pyarrow as pa

from consumers.batch import Row


class ProcessorRegions:
    def __init__(self, known: Mapping[str, Iterable[str]] | None = None) -> None:
        self._regions: defaultdict[str, set[str]] = defaultdict(set)
        for processor, regions in (known or {}).items():
            self._regions[processor].update(regions)

    def observe(self, tables: Iterable[pa.Table]) -> None:
        """Learn the (processor, region) pairs of these event tables."""
        for table in tables:
            if not table.num_rows:
                continue
            pairs = table.group_by(["processor_id", "region_code"]).aggregate([])
            for processor, region in zip(
                pairs.column("processor_id").to_pylist(),
                pairs.column("region_code").to_pylist(),
                strict=True,
            ):
                self._regions[processor].add(region)

    def of(self, processor: str) -> list[str]:
        """The processor's regions, sorted (empty if none of its events was seen)."""
        return sorted(self._regions.get(processor, ()))

    def attribute(self, violations: Iterable[Row]) -> None:
        """Give each violation row with no region of its own its processor's regions."""
        for row in violations:
            if not row["region_code"]:
                row["regions"] = self.of(row["processor_id"])
