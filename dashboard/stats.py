"""Reading the per-minute statistics tables: counts by severity, by key, and over time.

The tables are kept by ClickHouse's materialized views (``event_stats_minute``,
``violation_stats_minute``) and share the columns a ``Where`` filters on;
its ``violations_sql`` also matches a violation with no event by its regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from dashboard.db import Database
from dashboard.filters import BUCKETS, REPORTED_SEVERITIES, iso_z
from dashboard.where import Where

MAX_BUCKETS: Final = 1500
AUTO_BUCKET_SPANS: Final = ((3 * 3600, "minute"), (7 * 86400, "hour"))
"""The finest bucket whose span limit the data's time span fits; longer spans use days."""

Row = dict[str, Any]


def severity_counts(db: Database, stats: Where) -> dict[str, int]:
    """Violations per severity, every reported severity present (zero if none)."""
    counts = dict.fromkeys(REPORTED_SEVERITIES, 0)
    for row in db.rows(
        "SELECT severity, sum(violations) AS violations FROM violation_stats_minute "
        f"{stats.violations_sql} GROUP BY severity",
        stats.params,
    ):
        counts[row["severity"]] = row["violations"]
    return counts


def counts_by(db: Database, keys: Sequence[str], stats: Where, *, events: bool = True) -> list[Row]:
    """Violations and critical ones per key (and events, unless not wanted), most first.

    ``keys`` are column names written by the caller's code, never request values.
    """
    columns = ", ".join(keys)
    merged: dict[tuple, Row] = {}
    if events:
        for row in db.rows(
            f"SELECT {columns}, sum(events) AS events FROM event_stats_minute "
            f"{stats.sql} GROUP BY {columns}",
            stats.params,
        ):
            merged[tuple(row[k] for k in keys)] = {**row, "violations": 0, "critical": 0}
    for row in db.rows(
        # Aliases differ from column names: ClickHouse would read `violations`
        # inside sumIf as the alias, an aggregate within an aggregate.
        f"SELECT {columns}, sum(violations) AS total, "
        "sumIf(violations, severity = 'critical') AS critical FROM violation_stats_minute "
        f"{stats.violations_sql} GROUP BY {columns}",
        stats.params,
    ):
        key = tuple(row[k] for k in keys)
        base = merged.get(key, {k: row[k] for k in keys} | ({"events": 0} if events else {}))
        merged[key] = {**base, "violations": row["total"], "critical": row["critical"]}
    rows = list(merged.values())
    if events:
        for row in rows:
            row["per_100_events"] = per_100(row["violations"], row["events"])
    return sorted(
        rows,
        key=lambda r: (-r["violations"], -r.get("events", 0), tuple(r[k] for k in keys)),
    )


def time_series(
    db: Database, stats: Where, requested: str | None, *, events: bool = True
) -> tuple[str, list[Row]]:
    """Counts per time bucket, gaps filled with zeros; the bucket actually used.

    Without ``requested`` the bucket follows the data's span; a bucket that
    would give more than MAX_BUCKETS points is widened.
    """
    sources = [("violation_stats_minute", "violations", stats.violations_sql)]
    if events:
        sources.insert(0, ("event_stats_minute", "events", stats.sql))
    spans = [
        db.rows(
            f"SELECT count() AS n, min(minute) AS first, max(minute) AS last FROM {table} {where}",
            stats.params,
        )[0]
        for table, _, where in sources
    ]
    spans = [span for span in spans if span["n"]]
    if not spans:
        return requested or "hour", []
    first = int(aware(min(s["first"] for s in spans)).timestamp())
    last = int(aware(max(s["last"] for s in spans)).timestamp())
    name = requested or next(
        (bucket for span, bucket in AUTO_BUCKET_SPANS if last - first <= span), "day"
    )
    names = list(BUCKETS)
    while (last - first) // BUCKETS[name] + 1 > MAX_BUCKETS and name != names[-1]:
        name = names[names.index(name) + 1]
    step = BUCKETS[name]
    counts = {
        column: {
            row["bucket"]: row["n"]
            for row in db.rows(
                "SELECT intDiv(toUInt32(minute), {step:UInt32}) * {step:UInt32} AS bucket, "
                f"sum({column}) AS n FROM {table} {where} GROUP BY bucket",
                {**stats.params, "step": step},
            )
        }
        for table, column, where in sources
    }
    series = []
    for start in range(first // step * step, last // step * step + 1, step):
        point: Row = {"bucket": iso_z(datetime.fromtimestamp(start, UTC))}
        for column, by_bucket in counts.items():
            point[column] = by_bucket.get(start, 0)
        if events:
            point["per_100_events"] = per_100(point["violations"], point["events"])
        series.append(point)
    return name, series


def per_100(violations: int, events: int) -> float | None:
    """Violations per 100 events; one event may break several rules, so it can exceed 100."""
    return round(100 * violations / events, 2) if events else None


def aware(moment: datetime) -> datetime:
    """ClickHouse returns UTC times without a zone; bound back, they must carry it."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
