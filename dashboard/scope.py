"""What one token may see: region code prefixes and processors (empty means all)."""

from __future__ import annotations

from dataclasses import dataclass


class OutOfScope(Exception):
    """The request names a region, processor or violation the token may not see (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """A token's view of the data.

    ``regions`` are prefixes of the 6-digit GB/T 2260 region codes (``31`` is
    Shanghai, ``310104`` one district of it); ``processors`` are exact ids.
    A row is visible when its region starts with one of the prefixes and its
    processor is one of the processors; an empty tuple does not restrict.
    """

    regions: tuple[str, ...] = ()
    processors: tuple[str, ...] = ()

    def check_region_filter(self, prefix: str) -> None:
        """Raise OutOfScope unless every region under ``prefix`` is visible."""
        if self.regions and not any(prefix.startswith(p) for p in self.regions):
            raise OutOfScope(f"region {prefix} is outside this token's scope")

    def check_processor(self, processor_id: str) -> None:
        """Raise OutOfScope when the token is limited to other processors."""
        if self.processors and processor_id not in self.processors:
            raise OutOfScope(f"processor {processor_id} is outside this token's scope")

    def describe(self) -> str:
        """E.g. ``regions 31, 11; all processors``."""
        regions = f"regions {', '.join(self.regions)}" if self.regions else "all regions"
        processors = (
            f"processors {', '.join(self.processors)}" if self.processors else "all processors"
        )
        return f"{regions}; {processors}"
