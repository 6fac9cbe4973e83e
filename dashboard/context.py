"""What a request handler needs: the reports, the token holder, filters checked against scope."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from flask import current_app, g, request

from dashboard.auth import Token, TokenFile
from dashboard.filters import FILTER_NAMES, Filters, parse_filters
from dashboard.queries import Reports

REPORTS: Final = "faceaudit.reports"
TOKENS: Final = "faceaudit.tokens"
OVERVIEW_FILTERS: Final = ("since", "until", "region", "processor")
"""Filters the statistics tables can apply; rules and processors fix one of them themselves."""
RULE_FILTERS: Final = OVERVIEW_FILTERS
PROCESSOR_FILTERS: Final = ("since", "until", "region")
VIOLATION_FILTERS: Final = FILTER_NAMES


def reports() -> Reports:
    return current_app.extensions[REPORTS]


def tokens() -> TokenFile:
    return current_app.extensions[TOKENS]


def viewer() -> Token:
    """The holder of the token this request was authenticated with."""
    return g.viewer


def scoped_filters(accepted: Collection[str]) -> Filters:
    """The request's filters; OutOfScope for a region or processor the token may not see."""
    filters = parse_filters(request.args, accepted)
    scope = viewer().scope
    if filters.region is not None:
        scope.check_region_filter(filters.region)
    if filters.processor is not None:
        scope.check_processor(filters.processor)
    return filters
