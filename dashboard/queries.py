"""The dashboard's numbers: one method per view, each returning the dict the JSON API serves.

A view's HTML page renders that same dict, so a page and its API cannot
disagree. Counts and trends come from the per-minute statistics tables (kept
by ClickHouse's materialized views); lists, drill-downs, and a processor's
subject and consent counts come from the events and violations tables.
Every query is restricted to the token's scope (``dashboard.where``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from consumers.rules.catalogue import Catalogue
from dashboard.db import Database
from dashboard.filters import Filters, Page, iso_z
from dashboard.scope import OutOfScope, Scope
from dashboard.stats import aware, counts_by, severity_counts, time_series
from dashboard.where import Where
from schemas.regions import province

TOP: Final = 10
LATEST: Final = 20
CSV_CHUNK: Final = 5000
CONSENT_RULE_PREFIX: Final = "FR-CONSENT-"
FILING_RULE: Final = "FR-FILING"
VIOLATION_COLUMNS: Final = (
    "violation_id",
    "event_time",
    "detected_at",
    "rule_id",
    "severity",
    "profile",
    "region_code",
    "regions",
    "processor_id",
    "deployment_id",
    "device_id",
    "event_id",
    "articles",
    "message",
)
_SELECT_VIOLATIONS: Final = f"SELECT {', '.join(VIOLATION_COLUMNS)} FROM violations"
_NEWEST_FIRST: Final = "ORDER BY event_time DESC, violation_id DESC"
_DEPLOYMENT_FIELDS: Final = (
    "registered_purposes",
    "declared_retention_days",
    "pipia_date",
    "notice_complete",
    "law_requires_written_consent",
    "filing_id",
    "filing_date",
)

Row = dict[str, Any]


class Missing(LookupError):
    """No such rule, processor or violation anywhere in the store (HTTP 404)."""


class Reports:
    """The views' queries over one store, judged against one catalogue and profile."""

    def __init__(self, db: Database, catalogue: Catalogue, profile: str) -> None:
        self.db = db
        self.catalogue = catalogue
        self.profile = profile

    def healthy(self) -> bool:
        return self.db.scalar("SELECT 1") == 1

    def unverified_runs(self) -> Row | None:
        """How many validator runs stored under `--trust none` (registry signatures not
        checked), and the latest one's start; None if every run checked them."""
        [row] = self.db.rows(
            "SELECT count() AS runs, max(started_at) AS latest FROM validator_runs "
            "WHERE trust = 'none'"
        )
        return _json_row(row) if row["runs"] else None

    # -- overview ------------------------------------------------------------------

    def overview(self, scope: Scope, filters: Filters, bucket: str | None) -> Row:
        """Totals, the violation rate over time, top rules, processors, deployments; regions."""
        # One clause serves both statistics tables: they share the filtered columns.
        stats = Where(scope, filters, "minute")
        by_kind = {
            row["kind"]: row["events"]
            for row in self.db.rows(
                "SELECT kind, sum(events) AS events FROM event_stats_minute "
                f"{stats.sql} GROUP BY kind ORDER BY kind",
                stats.params,
            )
        }
        by_severity = severity_counts(self.db, stats)
        used, series = time_series(self.db, stats, bucket)
        top_rules = self.db.rows(
            "SELECT rule_id, sum(violations) AS violations FROM violation_stats_minute "
            f"{stats.violations_sql} GROUP BY rule_id "
            f"ORDER BY violations DESC, rule_id LIMIT {TOP}",
            stats.params,
        )
        regions = counts_by(self.db, ("region_code",), stats)
        for row in regions:
            # Violations with no event have no region: a row of their own.
            row["province"] = province(row["region_code"]) if row["region_code"] else None
        return {
            "profile": self.profile,
            "unverified_runs": self.unverified_runs(),
            "filters": filters.query_args(),
            "bucket": used,
            "events": {"total": sum(by_kind.values()), "by_kind": by_kind},
            "violations": {"total": sum(by_severity.values()), "by_severity": by_severity},
            "series": series,
            "top_rules": [self._titled(row) for row in top_rules],
            "top_processors": counts_by(self.db, ("processor_id",), stats)[:TOP],
            "top_deployments": counts_by(self.db, ("processor_id", "deployment_id"), stats)[:TOP],
            "regions": sorted(regions, key=lambda row: row["region_code"]),
        }

    # -- one rule ------------------------------------------------------------------

    def rule(self, scope: Scope, filters: Filters, rule_id: str, bucket: str | None) -> Row:
        """A rule's catalogue text, its trend and its top offenders within the scope."""
        try:
            rule = self.catalogue.rule(rule_id)
        except KeyError:
            raise Missing(f"no rule {rule_id} in catalogue {self.catalogue.version}") from None
        filters = replace(filters, rule=rule_id)
        stats = Where(scope, filters, "minute")
        by_profile = {
            row["profile"]: row["violations"]
            for row in self.db.rows(
                "SELECT profile, sum(violations) AS violations FROM violation_stats_minute "
                f"{stats.violations_sql} GROUP BY profile ORDER BY profile",
                stats.params,
            )
        }
        used, series = time_series(self.db, stats, bucket, events=False)
        return {
            "profile": self.profile,
            "filters": filters.query_args(),
            "rule": {
                "id": rule.id,
                "title": rule.title,
                "description": rule.description,
                "message": rule.message,
                "articles": list(rule.articles),
                "kinds": list(rule.kinds),
                "tags": list(rule.tags),
                "severity": dict(rule.severity),
                "active_severity": rule.severity[self.profile],
            },
            "violations": {
                "total": sum(by_profile.values()),
                "by_severity": severity_counts(self.db, stats),
                "by_profile": by_profile,
            },
            "bucket": used,
            "series": series,
            "top_processors": counts_by(self.db, ("processor_id",), stats, events=False)[:TOP],
            "top_deployments": counts_by(
                self.db, ("processor_id", "deployment_id"), stats, events=False
            )[:TOP],
            "latest": self.violations(scope, filters, Page(limit=LATEST))["violations"],
        }

    # -- one processor ---------------------------------------------------------------

    def processor(self, scope: Scope, filters: Filters, processor_id: str) -> Row:
        """Deployments, FR-FILING subjects against the threshold, consent coverage, violations."""
        self._check_processor(scope, processor_id)
        filters = replace(filters, processor=processor_id)
        stats = Where(scope, filters, "minute")
        by_rule = self.db.rows(
            "SELECT rule_id, severity, sum(violations) AS violations FROM violation_stats_minute "
            f"{stats.violations_sql} GROUP BY rule_id, severity ORDER BY violations DESC, rule_id",
            stats.params,
        )
        registry = self.db.rows(
            f"SELECT deployment_id, {', '.join(_DEPLOYMENT_FIELDS)} FROM deployments FINAL "
            "WHERE processor_id = {processor:String} ORDER BY deployment_id",
            {"processor": processor_id},
        )
        deployments = self._deployments(scope, registry, stats)
        # Filing ids only of the deployments the token sees: not other regions'.
        shown = {row["deployment_id"] for row in deployments if row["registered"]}
        visible = [entry for entry in registry if entry["deployment_id"] in shown]
        return {
            "profile": self.profile,
            "filters": filters.query_args(),
            "processor_id": processor_id,
            "events": self.db.scalar(
                f"SELECT sum(events) FROM event_stats_minute {stats.sql}", stats.params
            ),
            "violations": {
                "total": sum(row["violations"] for row in by_rule),
                "by_severity": severity_counts(self.db, stats),
                "by_rule": [self._titled(row) for row in by_rule],
            },
            "deployments": deployments,
            "filing": self._filing(scope, filters, visible),
            "consent": self._consent(scope, filters),
            "latest": self.violations(scope, filters, Page(limit=LATEST))["violations"],
        }

    def _check_processor(self, scope: Scope, processor_id: str) -> None:
        """Missing unless the processor has data within the scope: one outside it is no more
        visible than one that does not exist, so the answer tells nothing about it."""
        try:
            scope.check_processor(processor_id)
        except OutOfScope:
            raise Missing(f"no processor {processor_id}") from None
        if self._processor_seen(Where(scope), processor_id):
            return
        if not scope.regions and self.db.scalar(
            "SELECT count() FROM deployments WHERE processor_id = {processor:String}",
            {"processor": processor_id},
        ):
            return
        raise Missing(f"no processor {processor_id}")

    def _processor_seen(self, where: Where, processor_id: str) -> bool:
        where.add("processor_id = {processor:String}", processor=processor_id)
        return bool(
            self.db.scalar(
                f"SELECT (SELECT count() FROM event_stats_minute {where.sql}) "
                f"+ (SELECT count() FROM violation_stats_minute {where.violations_sql})",
                where.params,
            )
        )

    def _deployments(self, scope: Scope, registry: list[Row], stats: Where) -> list[Row]:
        """Registered deployments and those only seen in events (unregistered).

        A region-limited token sees only the deployments active in its regions:
        the registry itself carries no region.
        """
        activity = {
            row["deployment_id"]: row for row in counts_by(self.db, ("deployment_id",), stats)
        }
        rows = []
        for entry in registry:
            seen = activity.pop(entry["deployment_id"], None)
            if seen is None and scope.regions:
                continue
            rows.append({**_json_row(entry), "registered": True, **_counts(seen)})
        for deployment_id, seen in sorted(activity.items()):
            rows.append(
                {
                    "deployment_id": deployment_id,
                    **dict.fromkeys(_DEPLOYMENT_FIELDS),
                    "registered": False,
                    **_counts(seen),
                }
            )
        return rows

    def _filing(self, scope: Scope, filters: Filters, registry: list[Row]) -> Row:
        """Distinct subjects seen (FR-FILING's count) against the active profile's threshold."""
        where = Where(scope, filters).add("subject_ref IS NOT NULL")
        subjects = self.db.scalar(
            f"SELECT uniqExact(subject_ref) FROM events {where.sql}", where.params
        )
        threshold = self.catalogue.parameters(self.profile).filing_threshold
        filing_ids = sorted({row["filing_id"] for row in registry if row["filing_id"]})
        fr_filing = Where(scope, replace(filters, rule=FILING_RULE), "minute")
        if filing_ids:
            status = "filed"
        elif subjects >= threshold:
            status = "filing required"
        else:
            status = "below threshold"
        return {
            "distinct_subjects": subjects,
            "threshold": threshold,
            "percent_of_threshold": round(100 * subjects / threshold, 2),
            "filing_ids": filing_ids,
            "status": status,
            "fr_filing_violations": self.db.scalar(
                f"SELECT sum(violations) FROM violation_stats_minute {fr_filing.violations_sql}",
                fr_filing.params,
            ),
        }

    def _consent(self, scope: Scope, filters: Filters) -> Row:
        """Consent-based events, and how many broke an FR-CONSENT-* rule (at least one)."""
        based = Where(scope, filters).add("legal_basis = 'consent'")
        consent_events = self.db.scalar(f"SELECT count() FROM events {based.sql}", based.params)
        broken = (
            Where(scope, filters)
            .add("startsWith(rule_id, {consent_prefix:String})", consent_prefix=CONSENT_RULE_PREFIX)
            .add("event_id IS NOT NULL")
        )
        by_rule = {
            row["rule_id"]: row["events"]
            for row in self.db.rows(
                "SELECT rule_id, uniqExact(event_id) AS events FROM violations "
                f"{broken.violations_sql} GROUP BY rule_id ORDER BY rule_id",
                broken.params,
            )
        }
        without = self.db.scalar(
            f"SELECT uniqExact(event_id) FROM violations {broken.violations_sql}", broken.params
        )
        coverage = (
            round(100 * (consent_events - without) / consent_events, 2) if consent_events else None
        )
        return {
            "consent_based_events": consent_events,
            "events_without_valid_consent": without,
            "coverage_percent": coverage,
            "by_rule": by_rule,
        }

    # -- violations ------------------------------------------------------------------

    def violations(self, scope: Scope, filters: Filters, page: Page) -> Row:
        """One page of the filtered violations, newest first, and the total that match."""
        where = Where(scope, filters)
        total = self.db.scalar(
            f"SELECT count() FROM violations {where.violations_sql}", where.params
        )
        rows = self.db.rows(
            f"{_SELECT_VIOLATIONS} {where.violations_sql} {_NEWEST_FIRST} "
            "LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            {**where.params, "limit": page.limit, "offset": page.offset},
        )
        return {
            "filters": filters.query_args(),
            "total": total,
            "limit": page.limit,
            "offset": page.offset,
            "violations": [_json_row(row) for row in rows],
        }

    def violation_chunks(self, scope: Scope, filters: Filters) -> Iterator[list[Row]]:
        """Every filtered violation, newest first, in chunks (for the CSV export).

        Chunks follow each other by the last row's sort key, not by an offset, so
        rows stored meanwhile neither repeat nor shift a row out of the export.
        """
        after: Row | None = None
        while True:
            where = Where(scope, filters)
            if after is not None:
                where.add(
                    "(event_time, violation_id) < "
                    "({after_time:DateTime64(6, 'UTC')}, {after_id:String})",
                    after_time=aware(after["event_time"]),
                    after_id=after["violation_id"],
                )
            rows = self.db.rows(
                f"{_SELECT_VIOLATIONS} {where.violations_sql} {_NEWEST_FIRST} LIMIT {CSV_CHUNK}",
                where.params,
            )
            if not rows:
                return
            yield [_json_row(row) for row in rows]
            if len(rows) < CSV_CHUNK:
                return
            after = rows[-1]

    def violation(self, scope: Scope, violation_id: str) -> Row:
        """One violation with its details, its rule's text and the stored event it judged."""
        where = Where(scope).add("violation_id = {violation_id:String}", violation_id=violation_id)
        rows = self.db.rows(
            f"SELECT {', '.join(VIOLATION_COLUMNS)}, catalogue_version, details "
            f"FROM violations {where.violations_sql} LIMIT 1",
            where.params,
        )
        if not rows:  # none, or one outside the scope: the same answer
            raise Missing(f"no violation {violation_id}")
        found = _json_row(rows[0])
        found["details"] = _parse_details(found["details"])
        event = None
        if found["event_id"] is not None:
            where = Where(scope).add("event_id = {event_id:String}", event_id=found["event_id"])
            events = self.db.rows(f"SELECT * FROM events {where.sql} LIMIT 1", where.params)
            event = _json_row(events[0]) if events else None
        rule = self._rule_text(found["rule_id"])
        return {"violation": found, "rule": rule, "event": event}

    # -- shared ------------------------------------------------------------------------

    def _titled(self, row: Row) -> Row:
        text = self._rule_text(row["rule_id"])
        return {**row, "title": text["title"] if text else ""}

    def _rule_text(self, rule_id: str) -> Row | None:
        """Title, articles and description, or None for a rule the catalogue no longer has."""
        try:
            rule = self.catalogue.rule(rule_id)
        except KeyError:
            return None
        return {
            "title": rule.title,
            "articles": list(rule.articles),
            "description": rule.description,
        }


def _counts(seen: Row | None) -> Row:
    if seen is None:
        return {"events": 0, "violations": 0, "critical": 0, "per_100_events": None}
    return {k: seen[k] for k in ("events", "violations", "critical", "per_100_events")}


def _json_row(row: Row) -> Row:
    return {name: _json_value(value) for name, value in row.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _parse_details(text: str) -> Any:
    """A violation's details are JSON; an unparseable value is shown as the text it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text
