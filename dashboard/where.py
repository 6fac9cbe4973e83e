"""WHERE clauses from a token's scope and a view's filters, every value a bound parameter.

The SQL text is built only from the constant fragments below; request values
travel as ClickHouse query parameters (``{name:Type}``), so no argument can
change a query's shape. The scope is always applied, whatever the filters.

The events tables and the violations tables take the same conditions except
for the region: a violation with no event has no `region_code` but its
processor's `regions` (`consumers.processor_regions`), so a region
condition on a violations table matches either (``violations_sql``).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from dashboard.filters import Filters
from dashboard.scope import Scope

TimeColumn = Literal["event_time", "minute"]
"""``event_time`` in the events and violations tables, ``minute`` in the statistics tables."""

_SCOPE_REGIONS: Final = (
    "arrayExists(p -> startsWith(region_code, p), {scope_regions:Array(String)})"
)
_VIOLATION_SCOPE_REGIONS: Final = (
    "arrayExists(p -> startsWith(region_code, p) OR arrayExists(r -> startsWith(r, p), regions), "
    "{scope_regions:Array(String)})"
)
_VIOLATION_REGION: Final = (
    "(startsWith(region_code, {region:String}) "
    "OR arrayExists(r -> startsWith(r, {region:String}), regions))"
)
_SCOPE_PROCESSORS: Final = "has({scope_processors:Array(String)}, processor_id)"
_FILTERS: Final = {
    "region": "startsWith(region_code, {region:String})",
    "processor": "processor_id = {processor:String}",
    "rule": "rule_id = {rule:String}",
    "severity": "severity = {severity:String}",
}
_TIMES: Final = {
    ("event_time", "since"): "event_time >= {since:DateTime64(6, 'UTC')}",
    ("event_time", "until"): "event_time < {until:DateTime64(6, 'UTC')}",
    ("minute", "since"): "minute >= {since:DateTime64(6, 'UTC')}",
    ("minute", "until"): "minute < {until:DateTime64(6, 'UTC')}",
}


class Where:
    """Conditions joined by AND; ``sql`` is the clause for the events tables,
    ``violations_sql`` for the violations tables, ``params`` the values to bind."""

    def __init__(
        self, scope: Scope, filters: Filters | None = None, time_column: TimeColumn = "event_time"
    ) -> None:
        self.conditions: list[str] = []
        self.violation_conditions: list[str] = []
        self.params: dict[str, Any] = {}
        if scope.regions:
            self.add(_SCOPE_REGIONS, scope_regions=list(scope.regions)).violation_conditions[-1] = (
                _VIOLATION_SCOPE_REGIONS
            )
        if scope.processors:
            self.add(_SCOPE_PROCESSORS, scope_processors=list(scope.processors))
        if filters is None:
            return
        for name in ("since", "until"):
            value = getattr(filters, name)
            if value is not None:
                self.add(_TIMES[time_column, name], **{name: value})
        for name, condition in _FILTERS.items():
            value = getattr(filters, name)
            if value is not None:
                self.add(condition, **{name: value})
                if name == "region":
                    self.violation_conditions[-1] = _VIOLATION_REGION

    def add(self, condition: str, **params: Any) -> Where:
        """Add a constant condition, for both kinds of table, and the values of its placeholders."""
        self.conditions.append(condition)
        self.violation_conditions.append(condition)
        self.params.update(params)
        return self

    @property
    def sql(self) -> str:
        return _clause(self.conditions)

    @property
    def violations_sql(self) -> str:
        return _clause(self.violation_conditions)


def _clause(conditions: list[str]) -> str:
    return "WHERE " + " AND ".join(conditions) if conditions else ""
