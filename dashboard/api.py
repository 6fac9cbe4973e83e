"""The JSON API: each route returns exactly the dict its HTML page renders."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from dashboard.context import (
    OVERVIEW_FILTERS,
    PROCESSOR_FILTERS,
    RULE_FILTERS,
    VIOLATION_FILTERS,
    reports,
    scoped_filters,
    viewer,
)
from dashboard.filters import parse_bucket, parse_page

api = Blueprint("api", __name__, url_prefix="/api")


@api.get("/overview")
def overview() -> ResponseReturnValue:
    filters = scoped_filters(OVERVIEW_FILTERS)
    return jsonify(reports().overview(viewer().scope, filters, parse_bucket(request.args)))


@api.get("/rules/<rule_id>")
def rule(rule_id: str) -> ResponseReturnValue:
    filters = scoped_filters(RULE_FILTERS)
    return jsonify(reports().rule(viewer().scope, filters, rule_id, parse_bucket(request.args)))


@api.get("/processors/<processor_id>")
def processor(processor_id: str) -> ResponseReturnValue:
    filters = scoped_filters(PROCESSOR_FILTERS)
    return jsonify(reports().processor(viewer().scope, filters, processor_id))


@api.get("/violations")
def violations() -> ResponseReturnValue:
    filters = scoped_filters(VIOLATION_FILTERS)
    return jsonify(reports().violations(viewer().scope, filters, parse_page(request.args)))


@api.get("/violations/<violation_id>")
def violation(violation_id: str) -> ResponseReturnValue:
    return jsonify(reports().violation(viewer().scope, violation_id))
