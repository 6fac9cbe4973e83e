"""The summary printed when a validator run ends: this run, then the store's totals."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from schemas.ddl import DATABASE


@dataclass(slots=True)
class RunSummary:
    """What one run of the validator stored."""

    events: Counter[str] = field(default_factory=Counter)
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    registry_records: int = 0
    seconds: float = 0.0  # from the first event read to the last stored

    @property
    def events_per_second(self) -> float:
        return sum(self.events.values()) / self.seconds if self.seconds else 0.0

    def add(self, other: RunSummary) -> None:
        """Add another run's counts (a worker's); the time is the longest of the two."""
        self.events.update(other.events)
        self.violations.update(other.violations)
        self.dead_letters.update(other.dead_letters)
        self.registry_records += other.registry_records
        self.seconds = max(self.seconds, other.seconds)


class RunTimer:
    """From the first event read to the last stored: start-up (registry catch-up,
    joining the group) and the --until-idle wait do not count."""

    def __init__(self) -> None:
        self._first_read: float | None = None
        self._last_stored: float | None = None

    def read(self) -> None:
        if self._first_read is None:
            self._first_read = time.monotonic()

    def stored(self) -> None:
        self._last_stored = time.monotonic()

    @property
    def seconds(self) -> float:
        if self._first_read is None or self._last_stored is None:
            return 0.0
        return max(self._last_stored - self._first_read, 0.0)


def store_totals(client: Client) -> dict[str, list[tuple]]:
    """Rows stored so far, by kind, by rule and severity, and dead letters by reason."""
    queries = {
        "events": f"SELECT kind, count() FROM {DATABASE}.events GROUP BY kind ORDER BY kind",
        "violations": f"SELECT rule_id, severity, count() FROM {DATABASE}.violations "
        "GROUP BY rule_id, severity ORDER BY count() DESC, rule_id",
        "dead_letters": f"SELECT reason, count() FROM {DATABASE}.dead_letters "
        "GROUP BY reason ORDER BY reason",
    }
    return {name: client.query(sql).result_rows for name, sql in queries.items()}


def format_summary(summary: RunSummary, totals: dict[str, list[tuple]]) -> str:
    events = sum(summary.events.values())
    lines = [
        f"This run: {events} events in {summary.seconds:.1f} s "
        f"({summary.events_per_second:,.0f} events/s), "
        f"{sum(summary.violations.values())} violations, "
        f"{sum(summary.dead_letters.values())} dead letters, "
        f"{summary.registry_records} registry records",
        "",
        "Stored in ClickHouse:",
        "  events by kind:",
        *(f"    {kind:<12} {n:>10}" for kind, n in totals["events"]),
        "  violations by rule and severity:",
        *(f"    {rule:<26} {sev:<9} {n:>10}" for rule, sev, n in totals["violations"]),
        "  dead letters by reason:",
        *(f"    {reason:<26} {n:>10}" for reason, n in totals["dead_letters"]),
    ]
    if not totals["dead_letters"]:
        lines.append("    none")
    return "\n".join(lines)


def print_summary(summary: RunSummary, client: Client) -> None:
    print(format_summary(summary, store_totals(client)))
