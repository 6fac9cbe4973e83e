"""Request arguments turned into checked values: time range, region, processor, rule, severity.

Empty values count as absent, as an HTML form sends every field. Anything
malformed raises FilterError (HTTP 400); nothing here is ever put into SQL
text, only bound as a parameter by ``dashboard.where``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from consumers.rules.catalogue import SEVERITIES
from dashboard.auth import check_region_prefix

REPORTED_SEVERITIES: Final = tuple(s for s in SEVERITIES if s != "off")
BUCKETS: Final = {"minute": 60, "hour": 3600, "day": 86400}
"""Chart bucket widths in seconds."""
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
_MAX_ID: Final = 200
FILTER_NAMES: Final = ("since", "until", "region", "processor", "rule", "severity")


class FilterError(ValueError):
    """A malformed request argument (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What a view is narrowed to; None does not narrow. ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    region: str | None = None
    processor: str | None = None
    rule: str | None = None
    severity: str | None = None

    def query_args(self) -> dict[str, str]:
        """The filters as request arguments, for links that keep them (pages, CSV)."""
        args = {}
        for name in FILTER_NAMES:
            value = getattr(self, name)
            if value is not None:
                args[name] = iso_z(value) if isinstance(value, datetime) else value
        return args


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_filters(args: Mapping[str, str], accepted: Collection[str] = FILTER_NAMES) -> Filters:
    """The ``accepted`` filters found in ``args``; other arguments are left to the caller."""
    values: dict[str, object] = {}
    for name in accepted:
        raw = (args.get(name) or "").strip()
        if raw:
            values[name] = _PARSERS[name](name, raw)
    filters = Filters(**values)
    if filters.since and filters.until and filters.since >= filters.until:
        raise FilterError("since must be earlier than until")
    return filters


def parse_page(args: Mapping[str, str]) -> Page:
    limit = _integer(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return Page(limit=limit, offset=_integer(args, "offset", 0, 0, 10_000_000))


def parse_bucket(args: Mapping[str, str]) -> str | None:
    """``minute``, ``hour`` or ``day``; None (or ``auto``) lets the data's span decide."""
    raw = (args.get("bucket") or "").strip()
    if raw in ("", "auto"):
        return None
    if raw not in BUCKETS:
        raise FilterError(f"bucket must be auto, {', '.join(BUCKETS)}; not {raw!r}")
    return raw


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with ``Z``; a naive time (as ClickHouse returns them) is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(name: str, raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise FilterError(f"{name} must be an ISO-8601 time, not {raw!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _region(name: str, raw: str) -> str:
    try:
        return check_region_prefix(raw)
    except ValueError as exc:
        raise FilterError(str(exc)) from None


def _identifier(name: str, raw: str) -> str:
    if len(raw) > _MAX_ID or not raw.isprintable():
        raise FilterError(f"{name} must be at most {_MAX_ID} printable characters")
    return raw


def _severity(name: str, raw: str) -> str:
    if raw not in REPORTED_SEVERITIES:
        raise FilterError(f"severity must be one of {', '.join(REPORTED_SEVERITIES)}")
    return raw


_PARSERS: Final = {
    "since": _time,
    "until": _time,
    "region": _region,
    "processor": _identifier,
    "rule": _identifier,
    "severity": _severity,
}


def _integer(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FilterError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise FilterError(f"{name} must be between {low} and {high}")
    return value
