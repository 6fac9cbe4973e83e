"""The HTML pages: each renders the dict of its JSON API route (see ``dashboard.api``)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue

from dashboard.charts import Bar, bar_chart
from dashboard.context import (
    OVERVIEW_FILTERS,
    PROCESSOR_FILTERS,
    RULE_FILTERS,
    VIOLATION_FILTERS,
    reports,
    scoped_filters,
    viewer,
)
from dashboard.export import violations_csv
from dashboard.filters import REPORTED_SEVERITIES, parse_bucket, parse_page

pages = Blueprint("pages", __name__)


@pages.get("/")
def overview() -> ResponseReturnValue:
    filters = scoped_filters(OVERVIEW_FILTERS)
    data = reports().overview(viewer().scope, filters, parse_bucket(request.args))
    chart = bar_chart(
        [
            Bar(
                point["bucket"],
                point["per_100_events"] or 0.0,
                f"{point['bucket']}: {point['violations']:,} violations in "
                f"{point['events']:,} events",
            )
            for point in data["series"]
        ],
        f"Violations per 100 events, per {data['bucket']}",
    )
    return render_template("overview.html", data=data, chart=chart)


@pages.get("/rules/<rule_id>")
def rule(rule_id: str) -> ResponseReturnValue:
    filters = scoped_filters(RULE_FILTERS)
    data = reports().rule(viewer().scope, filters, rule_id, parse_bucket(request.args))
    chart = bar_chart(
        [
            Bar(p["bucket"], p["violations"], f"{p['bucket']}: {p['violations']:,} violations")
            for p in data["series"]
        ],
        f"{rule_id} violations per {data['bucket']}",
    )
    return render_template("rule.html", data=data, chart=chart)


@pages.get("/processors/<processor_id>")
def processor(processor_id: str) -> ResponseReturnValue:
    filters = scoped_filters(PROCESSOR_FILTERS)
    data = reports().processor(viewer().scope, filters, processor_id)
    return render_template("processor.html", data=data)


@pages.get("/violations")
def violations() -> ResponseReturnValue:
    filters = scoped_filters(VIOLATION_FILTERS)
    data = reports().violations(viewer().scope, filters, parse_page(request.args))
    return render_template(
        "violations.html",
        data=data,
        rule_ids=[rule.id for rule in reports().catalogue.rules],
        severities=REPORTED_SEVERITIES,
    )


@pages.get("/violations/<violation_id>")
def violation(violation_id: str) -> ResponseReturnValue:
    return render_template("violation.html", data=reports().violation(viewer().scope, violation_id))


@pages.get("/violations.csv")
def violations_export() -> ResponseReturnValue:
    """The whole filtered list (not one page), streamed."""
    filters = scoped_filters(VIOLATION_FILTERS)
    chunks = reports().violation_chunks(viewer().scope, filters)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        violations_csv(chunks),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="violations-{stamp}.csv"'},
    )
