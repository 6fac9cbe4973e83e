"""The dashboard against a populated embedded store, through Flask's test client.

The store holds a simulated fleet judged by the real rule engine (``populate``);
every number the dashboard shows is checked against an independent SQL query
on the raw events and violations tables (the dashboard itself counts from the
statistics tables), never against a hard-coded value.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arrow_events import add_judged_events, chained
from clickhouse_connect.driver.client import Client
from flask import Flask
from flask.testing import FlaskClient

from consumers.batch import NO_POSITION, Batch
from consumers.judge import Judge
from consumers.processor_regions import ProcessorRegions
from consumers.registry import Registry
from consumers.rules.catalogue import load_catalogue
from consumers.runs import record_run
from consumers.settings import Settings
from consumers.sink import ClickHouseSink
from consumers.store import open_store
from core.errors import FaceauditError
from dashboard.access_log import open_access_log
from dashboard.app import create_app
from dashboard.auth import TokenFile, TokenFileError, add_token, hash_token
from dashboard.db import Database
from dashboard.queries import Reports
from dashboard.scope import Scope
from faceaudit.commands_dashboard import add_dashboard_parser
from producers.fleet import Fleet
from schemas.topics import EVENTS_TOPIC, TOPICS

PROFILE = "cac-2025"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STRETCH = 3000
"""The fleet's events come milliseconds apart; stretched, they span hours (a real chart)."""
REGISTRY_TABLES = {"deployment": "deployments", "consent": "consents", "deletion": "deletions"}
SEVERITY_ORDER = ("critical", "high", "medium", "advisory")
NOWHERE = "processor-with-no-events"
IN_31 = "(startsWith(region_code, '31') OR arrayExists(r -> startsWith(r, '31'), regions))"
"""A violation in Shanghai: its event's region, or (no event) one of its processor's."""


def populate(client: Client, *, events: int = 2400, seed: int = 11) -> None:
    """Store a simulated fleet's registry, events and the violations the engine finds."""
    fleet = Fleet(devices=40, seed=seed, violation_rate=0.2, start=T0)
    registry = Registry()
    batch = Batch()
    offsets: Counter[str] = Counter()

    def add(table: str, kind: str, row: dict[str, Any]) -> int:
        topic = TOPICS[kind]
        offset = offsets[topic]
        offsets[topic] += 1
        batch.add(table, row, topic, 0, offset)
        return offset

    for kind, record in fleet.registry_records():
        if kind != "deletion":
            registry.apply(kind, dict(record))
        add(REGISTRY_TABLES[kind], kind, record)
    judge = Judge(PROFILE, registry)
    stretched = [
        (kind, {**record, "event_time": T0 + (record["event_time"] - T0) * STRETCH})
        for kind, record, _ in fleet.events(events)
    ]
    add_judged_events(
        batch, judge, chained(stretched), 0, offsets[EVENTS_TOPIC], T0 + timedelta(days=1)
    )
    add_eventless_violations(batch, judge)
    ClickHouseSink(client).write(batch)


def add_eventless_violations(batch: Batch, judge: Judge) -> None:
    """FR-DELETION-OVERDUE (no event, no region of its own) of a processor with events in
    Shanghai and of one with no events at all, given their processors' regions as the
    validator's store step gives them."""
    seen = ProcessorRegions()
    seen.observe(batch.event_tables)
    processors = sorted({p for t in batch.event_tables for p in t["processor_id"].to_pylist()})
    in_shanghai = next(p for p in processors if any(r.startswith("31") for r in seen.of(p)))
    for processor in (in_shanghai, NOWHERE):
        withdrawn, deadline = T0 - timedelta(days=15), T0
        details = {
            "consent_id": f"consent-of-{processor}",
            "processor_id": processor,
            "subject_ref": "subject-withdrawn",
            "withdrawn_at": withdrawn.isoformat(),
            "deadline": deadline.isoformat(),
        }
        anchor = {"processor_id": processor, "event_time": deadline}
        violation = judge.rules.violation("FR-DELETION-OVERDUE", anchor, details)
        batch.add_violation(violation, *NO_POSITION, T0 + timedelta(days=20))
    seen.attribute(batch.rows["violations"])


# -- fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    national: str
    shanghai: str
    one_processor: str
    processor_id: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = open_store(f"chdb://{tmp_path_factory.mktemp('dashboard') / 'store'}")
    try:
        populate(client)
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def sql(store: Client):
    """Run an independent query: ``sql("SELECT ...", name=value)`` gives the rows."""

    def run(query: str, **params: Any) -> list[tuple]:
        return store.query(query, parameters=params).result_rows

    return run


@pytest.fixture(scope="module")
def token_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokens") / "tokens.jsonl"


@pytest.fixture(scope="module")
def tokens(token_path: Path, sql) -> Tokens:
    processor_id = sql(
        "SELECT processor_id FROM violations GROUP BY processor_id ORDER BY count() DESC LIMIT 1"
    )[0][0]
    return Tokens(
        national=add_token(token_path, "national", Scope()),
        shanghai=add_token(token_path, "shanghai", Scope(regions=("31",))),
        one_processor=add_token(token_path, "one-processor", Scope(processors=(processor_id,))),
        processor_id=processor_id,
    )


@pytest.fixture(scope="module")
def access_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "access.log"


@pytest.fixture(scope="module")
def app(store: Client, tokens: Tokens, token_path: Path, access_log_path: Path) -> Flask:
    reports = Reports(Database(store), load_catalogue(), PROFILE)
    return create_app(reports, TokenFile(token_path), open_access_log(access_log_path))


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


def get(web: FlaskClient, path: str, token: str | None, **args: Any):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return web.get(path, query_string=args, headers=headers)


def api(web: FlaskClient, path: str, token: str, **args: Any) -> Any:
    response = get(web, path, token, **args)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def csv_rows(web: FlaskClient, token: str, **args: Any) -> list[dict[str, str]]:
    response = get(web, "/violations.csv", token, **args)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


# -- the data itself ------------------------------------------------------------------------


def test_store_covers_what_the_tests_need(sql) -> None:
    provinces = {code[:2] for (code,) in sql("SELECT DISTINCT region_code FROM violations")}
    assert {"31", "11"} <= provinces
    regions = {code for (code,) in sql("SELECT DISTINCT region_code FROM events")}
    assert {"310104", "110105"} <= regions
    severities = {s for (s,) in sql("SELECT DISTINCT severity FROM violations")}
    assert len(severities) >= 2
    assert sql("SELECT uniqExact(rule_id) FROM violations")[0][0] >= 4
    assert sql("SELECT uniqExact(processor_id) FROM violations")[0][0] >= 3


# -- access ---------------------------------------------------------------------------------


def test_healthz_needs_no_token(web: FlaskClient) -> None:
    response = web.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/violations",
        "/violations.csv",
        "/rules/FR-PRIVATE-SPACE",
        "/api/overview",
        "/api/violations",
        "/api/rules/FR-PRIVATE-SPACE",
        "/api/processors/anything",
        "/api/violations/anything",
    ],
)
def test_no_or_unknown_token_is_401(web: FlaskClient, path: str) -> None:
    assert get(web, path, None).status_code == 401
    response = get(web, path, "fa_not-a-real-token")
    assert response.status_code == 401
    if path.startswith("/api/"):
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"] == "Unauthorized"
    else:
        assert 'name="token"' in response.get_data(as_text=True)  # the login form


def test_region_token_sees_only_its_regions(web: FlaskClient, tokens: Tokens, sql) -> None:
    overview = api(web, "/api/overview", tokens.shanghai)
    assert overview["regions"]
    # "": violations with no event, of processors with events in the region.
    assert all(row["region_code"][:2] in ("31", "") for row in overview["regions"])
    events_31 = sql("SELECT count() FROM events WHERE startsWith(region_code, '31')")[0][0]
    violations_31 = sql(f"SELECT count() FROM violations WHERE {IN_31}")
    assert overview["events"]["total"] == events_31
    assert overview["violations"]["total"] == violations_31[0][0]

    listed = api(web, "/api/violations", tokens.shanghai, limit=1000)
    assert listed["total"] == violations_31[0][0] > 0
    assert all(in_shanghai(v["region_code"], v["regions"]) for v in listed["violations"])

    rows = csv_rows(web, tokens.shanghai)
    assert len(rows) == violations_31[0][0]
    assert all(in_shanghai(row["region_code"], row["regions"].split("; ")) for row in rows)

    page = get(web, "/", tokens.shanghai).get_data(as_text=True)
    shown = set(re.findall(r'href="/violations\?region=(\d+)"', page))
    assert shown and all(code.startswith("31") for code in shown)


def in_shanghai(region_code: str, regions: list[str]) -> bool:
    return any(code.startswith("31") for code in (region_code, *regions))


def test_region_token_sees_the_violations_of_no_event_of_its_regions_processors(
    web: FlaskClient, tokens: Tokens, sql
) -> None:
    """FR-DELETION-OVERDUE has no region; it is shown where its processor's events are."""
    stored = dict(
        sql(
            "SELECT processor_id, violation_id FROM violations "
            "WHERE rule_id = 'FR-DELETION-OVERDUE' AND event_id IS NULL"
        )
    )
    [(local, local_id)] = [(p, v) for p, v in stored.items() if p != NOWHERE]
    regions = sql("SELECT regions FROM violations WHERE violation_id = {v:String}", v=local_id)
    seen_in = {
        code
        for (code,) in sql(
            "SELECT DISTINCT region_code FROM events WHERE processor_id = {p:String}", p=local
        )
    }
    assert sorted(seen_in) == regions[0][0]
    listed = api(web, "/api/violations", tokens.shanghai, rule="FR-DELETION-OVERDUE")
    assert [v["violation_id"] for v in listed["violations"]] == [local_id]
    assert api(web, f"/api/violations/{local_id}", tokens.shanghai)["violation"]["regions"]
    assert get(web, f"/api/violations/{stored[NOWHERE]}", tokens.shanghai).status_code == 404
    rule = api(web, "/api/rules/FR-DELETION-OVERDUE", tokens.shanghai)
    assert rule["violations"]["total"] == 1
    by_rule = api(web, f"/api/processors/{local}", tokens.shanghai)["violations"]["by_rule"]
    assert [r["violations"] for r in by_rule if r["rule_id"] == "FR-DELETION-OVERDUE"] == [1]
    # A narrower region than the processor's is shown it only if one of its regions is there.
    for region in seen_in:
        shown = api(
            web, "/api/violations", tokens.national, rule="FR-DELETION-OVERDUE", region=region
        )
        assert [v["violation_id"] for v in shown["violations"]] == [local_id]
    national = api(web, "/api/violations", tokens.national, rule="FR-DELETION-OVERDUE")
    assert {v["violation_id"] for v in national["violations"]} == set(stored.values())


def test_processor_token_sees_only_its_processor(web: FlaskClient, tokens: Tokens, sql) -> None:
    overview = api(web, "/api/overview", tokens.one_processor)
    assert [row["processor_id"] for row in overview["top_processors"]] == [tokens.processor_id]
    rows = csv_rows(web, tokens.one_processor)
    count = sql(
        "SELECT count() FROM violations WHERE processor_id = {p:String}", p=tokens.processor_id
    )[0][0]
    assert len(rows) == count
    assert {row["processor_id"] for row in rows} == {tokens.processor_id}


def test_out_of_scope_filters_are_403_and_resources_404(
    web: FlaskClient, tokens: Tokens, sql
) -> None:
    """A processor or violation outside the scope answers as one that does not exist."""
    outside = sql(
        "SELECT processor_id FROM events GROUP BY processor_id "
        "HAVING countIf(startsWith(region_code, '31')) = 0 LIMIT 1"
    )[0][0]
    foreign_violation = sql(
        "SELECT violation_id FROM violations WHERE startsWith(region_code, '11') LIMIT 1"
    )[0][0]
    refused = [
        (tokens.shanghai, "/api/overview", {"region": "11"}),
        (tokens.shanghai, "/api/overview", {"region": "3"}),
        (tokens.shanghai, "/api/violations", {"region": "110105"}),
        (tokens.shanghai, "/violations.csv", {"region": "11"}),
        (tokens.shanghai, "/violations", {"region": "11"}),
        (tokens.one_processor, "/api/violations", {"processor": outside}),
    ]
    for token, path, args in refused:
        assert get(web, path, token, **args).status_code == 403, (path, args)
    unseen = [
        (tokens.shanghai, f"/api/processors/{outside}", "/api/processors/no-such-processor"),
        (tokens.shanghai, f"/processors/{outside}", "/processors/no-such-processor"),
        (tokens.one_processor, f"/api/processors/{outside}", "/api/processors/no-such-processor"),
        (tokens.shanghai, f"/api/violations/{foreign_violation}", "/api/violations/no-such"),
        (tokens.shanghai, f"/violations/{foreign_violation}", "/violations/no-such"),
    ]
    for token, path, missing in unseen:
        response, absent = get(web, path, token), get(web, missing, token)
        assert response.status_code == absent.status_code == 404, path
        if path.startswith("/api/"):
            assert response.get_json()["error"] == absent.get_json()["error"]
    # The national token sees the same things; a narrower region than the scope is fine.
    assert get(web, f"/api/violations/{foreign_violation}", tokens.national).status_code == 200
    assert get(web, "/api/violations", tokens.shanghai, region="310104").status_code == 200


def test_missing_things_are_404_and_bad_arguments_400(web: FlaskClient, tokens: Tokens) -> None:
    assert get(web, "/api/rules/NO-SUCH-RULE", tokens.national).status_code == 404
    assert get(web, "/api/processors/no-such-processor", tokens.national).status_code == 404
    assert get(web, "/api/violations/no-such-violation", tokens.national).status_code == 404
    for args in ({"region": "31x"}, {"severity": "huge"}, {"since": "yesterday"}, {"limit": 0}):
        response = get(web, "/api/violations", tokens.national, **args)
        assert response.status_code == 400, args
        assert response.get_json()["message"]
    assert get(web, "/api/overview", tokens.national, bucket="week").status_code == 400


# -- numbers -----------------------------------------------------------------------------


def test_overview_matches_the_raw_tables(web: FlaskClient, tokens: Tokens, sql) -> None:
    data = api(web, "/api/overview", tokens.national)
    by_kind = dict(sql("SELECT kind, count() FROM events GROUP BY kind"))
    assert data["events"] == {"total": sum(by_kind.values()), "by_kind": by_kind}
    by_severity = dict(sql("SELECT severity, count() FROM violations GROUP BY severity"))
    assert data["violations"]["by_severity"] == {s: by_severity.get(s, 0) for s in SEVERITY_ORDER}
    assert data["violations"]["total"] == sum(by_severity.values())

    top_rules = sql(
        "SELECT rule_id, count() AS n FROM violations GROUP BY rule_id "
        "ORDER BY n DESC, rule_id LIMIT 10"
    )
    assert [(r["rule_id"], r["violations"]) for r in data["top_rules"]] == top_rules
    assert all(r["title"] == load_catalogue().rule(r["rule_id"]).title for r in data["top_rules"])

    regions = sql(
        "SELECT region_code, count() FROM events GROUP BY region_code ORDER BY region_code"
    )
    # Plus one row of the violations with no event, which have no region.
    assert [(r["region_code"], r["events"]) for r in data["regions"]] == [("", 0), *regions]
    region_violations = dict(sql("SELECT region_code, count() FROM violations GROUP BY 1"))
    for row in data["regions"]:
        assert row["violations"] == region_violations.get(row["region_code"], 0)
        expected = round(100 * row["violations"] / row["events"], 2) if row["events"] else None
        assert row["per_100_events"] == expected

    processor_events = dict(sql("SELECT processor_id, count() FROM events GROUP BY 1"))
    processor_violations = dict(sql("SELECT processor_id, count() FROM violations GROUP BY 1"))
    top = sorted(
        processor_events.keys() | processor_violations.keys(),
        key=lambda p: (-processor_violations.get(p, 0), -processor_events.get(p, 0), p),
    )[:10]
    assert [row["processor_id"] for row in data["top_processors"]] == top
    for row in data["top_processors"]:
        assert row["events"] == processor_events.get(row["processor_id"], 0)
        assert row["violations"] == processor_violations.get(row["processor_id"], 0)

    series = data["series"]
    assert data["bucket"] == "hour"  # the stretched fleet spans several hours
    assert sum(p["events"] for p in series) == data["events"]["total"]
    assert sum(p["violations"] for p in series) == data["violations"]["total"]
    hourly = dict(
        sql("SELECT toStartOfHour(event_time), count() FROM violations GROUP BY 1 ORDER BY 1")
    )
    for point in series:
        start = datetime.fromisoformat(point["bucket"]).replace(tzinfo=None)
        assert point["violations"] == hourly.get(start, 0)


def test_overview_page_shows_the_api_numbers(web: FlaskClient, tokens: Tokens) -> None:
    data = api(web, "/api/overview", tokens.national)
    page = get(web, "/", tokens.national).get_data(as_text=True)
    assert f'id="events-total">{data["events"]["total"]:,}<' in page
    assert f'id="violations-total">{data["violations"]["total"]:,}<' in page
    for severity, count in data["violations"]["by_severity"].items():
        assert f'id="severity-{severity}">{count:,}<' in page
    bars = re.findall(r'data-bucket="([^"]+)" data-value="([^"]+)"', page)
    assert [(b, float(v)) for b, v in bars] == [
        (p["bucket"], p["per_100_events"] or 0.0) for p in data["series"]
    ]


@pytest.mark.parametrize(
    ("args", "condition"),
    [
        ({"region": "310104"}, "(region_code = '310104' OR has(regions, '310104'))"),
        (
            {"region": "11"},
            "(startsWith(region_code, '11') OR arrayExists(r -> startsWith(r, '11'), regions))",
        ),
        ({"severity": "critical"}, "severity = 'critical'"),
        ({"rule": "FR-PRIVATE-SPACE"}, "rule_id = 'FR-PRIVATE-SPACE'"),
        (
            {"since": "2026-03-02T07:00:00Z", "until": "2026-03-02T08:30:00"},
            "event_time >= '2026-03-02 07:00:00' AND event_time < '2026-03-02 08:30:00'",
        ),
        (
            {"region": "31", "severity": "high", "since": "2026-03-02T07:00:00+00:00"},
            f"{IN_31} AND severity = 'high' AND event_time >= '2026-03-02 07:00:00'",
        ),
    ],
)
def test_filters_narrow_to_what_sql_says(
    web: FlaskClient, tokens: Tokens, sql, args: dict[str, str], condition: str
) -> None:
    expected = [
        row[0]
        for row in sql(
            f"SELECT violation_id FROM violations WHERE {condition} "
            "ORDER BY event_time DESC, violation_id DESC"
        )
    ]
    assert expected, "each filter must match something to mean anything"
    assert len(expected) < sql("SELECT count() FROM violations")[0][0]
    data = api(web, "/api/violations", tokens.national, limit=1000, **args)
    assert data["total"] == len(expected)
    assert [v["violation_id"] for v in data["violations"]] == expected
    assert [row["violation_id"] for row in csv_rows(web, tokens.national, **args)] == expected


def test_processor_filter(web: FlaskClient, tokens: Tokens, sql) -> None:
    expected = sql(
        "SELECT count() FROM violations WHERE processor_id = {p:String}", p=tokens.processor_id
    )[0][0]
    data = api(web, "/api/violations", tokens.national, processor=tokens.processor_id)
    assert data["total"] == expected
    assert {v["processor_id"] for v in data["violations"]} == {tokens.processor_id}


def test_violations_pages_follow_each_other(web: FlaskClient, tokens: Tokens) -> None:
    whole = api(web, "/api/violations", tokens.national, limit=1000)["violations"]
    first = api(web, "/api/violations", tokens.national, limit=7)
    second = api(web, "/api/violations", tokens.national, limit=7, offset=7)
    assert first["violations"] + second["violations"] == whole[:14]
    page = get(web, "/violations", tokens.national, limit=7).get_data(as_text=True)
    assert f'id="violations-total">{first["total"]:,}<' in page
    assert "offset=7" in page


def test_csv_matches_the_api(web: FlaskClient, tokens: Tokens) -> None:
    args = {"region": "31"}
    listed = api(web, "/api/violations", tokens.national, limit=1000, **args)["violations"]
    rows = csv_rows(web, tokens.national, **args)
    assert len(rows) == len(listed)
    for row, item in zip(rows, listed, strict=True):
        for name, value in item.items():
            if isinstance(value, list):
                assert row[name] == "; ".join(value), name
            else:
                assert row[name] == ("" if value is None else str(value)), name


def test_csv_export_continues_chunk_after_chunk(
    web: FlaskClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks follow on by (event_time, violation_id): ties and microseconds must survive."""
    monkeypatch.setattr("dashboard.queries.CSV_CHUNK", 7)
    listed = api(web, "/api/violations", tokens.national, limit=1000)["violations"]
    exported = csv_rows(web, tokens.national)
    assert [r["violation_id"] for r in exported] == [v["violation_id"] for v in listed]


def test_drill_down_shows_the_event(web: FlaskClient, tokens: Tokens, sql) -> None:
    violation_id, event_id, details = sql(
        "SELECT violation_id, event_id, details FROM violations "
        "WHERE event_id IS NOT NULL ORDER BY violation_id LIMIT 1"
    )[0]
    data = api(web, f"/api/violations/{violation_id}", tokens.national)
    assert data["violation"]["violation_id"] == violation_id
    assert data["violation"]["details"] == json.loads(details)
    result = sql("SELECT * FROM events WHERE event_id = {e:String}", e=event_id)
    assert len(result) == 1
    names = [
        c
        for (c,) in sql(
            "SELECT name FROM system.columns WHERE database = 'faceaudit' "
            "AND table = 'events' ORDER BY position"
        )
    ]
    event = dict(zip(names, result[0], strict=True))
    assert list(data["event"]) == names
    for name in ("event_id", "device_id", "region_code", "purpose", "legal_basis", "offset"):
        assert data["event"][name] == event[name]
    assert data["rule"]["title"] == load_catalogue().rule(data["violation"]["rule_id"]).title

    page = get(web, f"/violations/{violation_id}", tokens.national).get_data(as_text=True)
    for name in ("event_id", "device_id", "processor_id", "purpose"):
        assert f"<th>{name}</th>" in page
        assert str(event[name]) in page
    assert data["violation"]["message"] in page.replace("&#39;", "'")


def test_rule_view(web: FlaskClient, tokens: Tokens, sql) -> None:
    (rule_id,) = sql(
        "SELECT rule_id FROM violations WHERE startsWith(region_code, '31') "
        "GROUP BY rule_id ORDER BY count() DESC, rule_id LIMIT 1"
    )[0]
    rule = load_catalogue().rule(rule_id)
    data = api(web, f"/api/rules/{rule_id}", tokens.shanghai)
    count = sql(
        "SELECT count() FROM violations WHERE rule_id = {r:String} "
        "AND startsWith(region_code, '31')",
        r=rule_id,
    )[0][0]
    assert data["violations"]["total"] == count > 0
    assert data["rule"]["articles"] == list(rule.articles)
    assert data["rule"]["title"] == rule.title
    assert sum(p["violations"] for p in data["series"]) == count
    offenders = dict(
        sql(
            "SELECT processor_id, count() FROM violations WHERE rule_id = {r:String} "
            "AND startsWith(region_code, '31') GROUP BY 1",
            r=rule_id,
        )
    )
    for row in data["top_processors"]:
        assert row["violations"] == offenders[row["processor_id"]]
    assert all(v["rule_id"] == rule_id for v in data["latest"])
    page = get(web, f"/rules/{rule_id}", tokens.shanghai).get_data(as_text=True)
    assert ", ".join(rule.articles) in page
    assert f'id="violations-total">{count:,}<' in page


def test_processor_view(web: FlaskClient, tokens: Tokens, sql) -> None:
    processor_id = tokens.processor_id
    data = api(web, f"/api/processors/{processor_id}", tokens.national)
    (subjects,) = sql(
        "SELECT uniqExact(subject_ref) FROM events WHERE processor_id = {p:String} "
        "AND subject_ref IS NOT NULL",
        p=processor_id,
    )[0]
    threshold = load_catalogue().parameters(PROFILE).filing_threshold
    assert data["filing"]["distinct_subjects"] == subjects
    assert data["filing"]["threshold"] == threshold
    assert data["filing"]["percent_of_threshold"] == round(100 * subjects / threshold, 2)

    registered = sql(
        "SELECT deployment_id, pipia_date, filing_id FROM deployments FINAL "
        "WHERE processor_id = {p:String} ORDER BY deployment_id",
        p=processor_id,
    )
    shown = {d["deployment_id"]: d for d in data["deployments"] if d["registered"]}
    assert sorted(shown) == [d for d, _, _ in registered]
    for deployment_id, pipia_date, filing_id in registered:
        assert shown[deployment_id]["filing_id"] == filing_id
        assert shown[deployment_id]["pipia_date"][:19] == pipia_date.isoformat()[:19]

    (consent_events,) = sql(
        "SELECT count() FROM events WHERE processor_id = {p:String} AND legal_basis = 'consent'",
        p=processor_id,
    )[0]
    (broken,) = sql(
        "SELECT uniqExact(event_id) FROM violations WHERE processor_id = {p:String} "
        "AND rule_id LIKE 'FR-CONSENT-%'",
        p=processor_id,
    )[0]
    consent = data["consent"]
    assert consent["consent_based_events"] == consent_events
    assert consent["events_without_valid_consent"] == broken
    assert consent["coverage_percent"] == round(100 * (consent_events - broken) / consent_events, 2)

    (violations,) = sql(
        "SELECT count() FROM violations WHERE processor_id = {p:String}", p=processor_id
    )[0]
    assert data["violations"]["total"] == violations
    page = get(web, f"/processors/{processor_id}", tokens.national).get_data(as_text=True)
    assert f'id="filing-subjects">{subjects:,}<' in page
    assert f'id="consent-events">{consent_events:,}<' in page


def test_processor_view_lists_unregistered_deployments(
    web: FlaskClient, tokens: Tokens, sql
) -> None:
    processor_id, deployment_id, events = sql(
        "SELECT processor_id, deployment_id, count() FROM events "
        "WHERE deployment_id NOT IN (SELECT deployment_id FROM deployments) "
        "GROUP BY processor_id, deployment_id ORDER BY deployment_id LIMIT 1"
    )[0]
    data = api(web, f"/api/processors/{processor_id}", tokens.national)
    shown = {d["deployment_id"]: d for d in data["deployments"]}
    assert shown[deployment_id]["registered"] is False
    assert shown[deployment_id]["events"] == events
    assert shown[deployment_id]["filing_id"] is None


# -- tokens, login and the access log -------------------------------------------------------


def test_token_file_holds_hashes_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.jsonl"
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers())
    for name, extra in (("shanghai", ["--regions", "31"]), ("all", [])):
        args = parser.parse_args(["dashboard", "--tokens", str(path), "--make-token", name, *extra])
        assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2
    text = path.read_text()
    for token in printed:
        assert token not in text
        assert hash_token(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["regions"] for e in entries] == [["31"], []]
    assert TokenFile(path).lookup(printed[0]).scope == Scope(regions=("31",))
    args = parser.parse_args(["dashboard", "--tokens", str(path), "--make-token", "all"])
    with pytest.raises(TokenFileError, match="already exists"):
        args.handler(args)


def test_replacing_a_token_revokes_the_old_one_and_keeps_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.jsonl"
    other = add_token(path, "other", Scope(regions=("44",)))
    old = add_token(path, "demo", Scope())
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["dashboard", "--tokens", str(path), "--make-token", "demo", "--replace"]
    )
    assert args.handler(args) == 0
    new = capsys.readouterr().out.strip()
    tokens = TokenFile(path)
    assert tokens.lookup(old) is None
    assert tokens.lookup(new).name == "demo"
    assert tokens.lookup(other).scope == Scope(regions=("44",))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def dashboard_command(*args: str) -> int:
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers())
    parsed = parser.parse_args(["dashboard", *args])
    return parsed.handler(parsed)


def test_a_token_expires(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.jsonl"
    assert dashboard_command("--tokens", str(path), "--make-token", "month") == 0
    assert (
        dashboard_command(
            "--tokens", str(path), "--make-token", "past", "--expires", "2026-01-01T00:00:00Z"
        )
        == 0
    )
    assert (
        dashboard_command("--tokens", str(path), "--make-token", "ever", "--expires", "never") == 0
    )
    month, past, ever = capsys.readouterr().out.split()
    entries = {e["name"]: e for e in map(json.loads, path.read_text().splitlines())}
    expires = datetime.fromisoformat(entries["month"]["expires"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30), "by default"
    assert entries["ever"]["expires"] is None
    tokens = TokenFile(path)
    assert tokens.lookup(month).name == "month" and tokens.lookup(ever).name == "ever"
    assert tokens.lookup(past) is None, "past its expiry: refused like an unknown token"


def test_a_revoked_token_stops_working(tmp_path: Path) -> None:
    path = tmp_path / "tokens.jsonl"
    kept, revoked = add_token(path, "kept", Scope()), add_token(path, "gone", Scope())
    tokens = TokenFile(path)
    assert tokens.lookup(revoked) is not None
    assert dashboard_command("--tokens", str(path), "--revoke", "gone") == 0
    assert tokens.lookup(revoked) is None and tokens.lookup(kept).name == "kept"
    with pytest.raises(TokenFileError, match="no token named 'gone'"):
        dashboard_command("--tokens", str(path), "--revoke", "gone")


def test_replace_without_make_token_is_refused(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers())
    args = parser.parse_args(["dashboard", "--tokens", str(tmp_path / "t.jsonl"), "--replace"])
    with pytest.raises(FaceauditError, match="--replace only go"):
        args.handler(args)


def test_serving_without_a_token_file_says_how_to_make_one(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers())
    args = parser.parse_args(["dashboard", "--tokens", str(tmp_path / "none.jsonl")])
    with pytest.raises(TokenFileError, match="--make-token NAME"):
        args.handler(args)


def test_a_deleted_token_line_revokes_the_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.jsonl"
    keep = add_token(path, "keep", Scope())
    drop = add_token(path, "drop", Scope())
    tokens = TokenFile(path)
    assert tokens.lookup(drop) is not None
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n")
    assert tokens.lookup(drop) is None
    assert tokens.lookup(keep) is not None


def log_in(web: FlaskClient, token: str, **fields: str):
    """What the login form posts: the token, the form's nonce, and any other field."""
    form = web.get("/login").get_data(as_text=True)
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)[1]
    return web.post("/login", data={"token": token, "nonce": nonce, **fields})


def test_login_sets_an_httponly_cookie(web: FlaskClient, tokens: Tokens) -> None:
    response = log_in(web, tokens.shanghai, next="/violations")
    assert response.status_code == 302
    assert response.headers["Location"] == "/violations"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = web.get("/violations")  # the cookie now authenticates
    assert page.status_code == 200
    assert "shanghai" in page.get_data(as_text=True)
    assert log_in(web, "fa_wrong").status_code == 401
    web.get("/logout")
    assert web.get("/violations").status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\t/evil.example",  # /%09/evil.example: browsers drop the tab
        "/\\evil.example",  # read as //evil.example
        "/\n/evil.example",
        "https://evil.example",
    ],
)
def test_login_never_redirects_off_the_site(web: FlaskClient, tokens: Tokens, target: str) -> None:
    response = log_in(web, tokens.shanghai, next=target)
    assert (response.status_code, response.headers["Location"]) == (302, "/")


def test_a_token_in_the_url_logs_nobody_in(web: FlaskClient, tokens: Tokens) -> None:
    """A link with a token would log a regulator in under its scope (login CSRF), and land in
    history and proxy logs."""
    response = web.get("/login", query_string={"token": tokens.shanghai})
    assert response.status_code == 200 and 'name="token"' in response.get_data(as_text=True)
    assert "faceaudit_token" not in response.headers.get("Set-Cookie", "")
    assert web.get("/violations").status_code == 401


def test_a_login_posted_from_elsewhere_is_refused(web: FlaskClient, tokens: Tokens) -> None:
    """Another site can post a form, but cannot know the nonce this site's cookie holds."""
    forged = web.post("/login", data={"token": tokens.shanghai, "nonce": "guessed"})
    assert forged.status_code == 400 and "expired" in forged.get_data(as_text=True)
    assert web.post("/login", data={"token": tokens.shanghai}).status_code == 400
    assert web.get("/violations").status_code == 401


def test_every_access_is_logged(web: FlaskClient, tokens: Tokens, access_log_path: Path) -> None:
    before = len(access_log_path.read_text().splitlines())
    get(web, "/api/overview", tokens.shanghai)
    get(web, "/api/overview", tokens.shanghai, region="11")
    get(web, "/api/overview", None)
    log_in(web, tokens.national)
    web.get("/login", query_string={"token": tokens.shanghai})
    lines = [json.loads(line) for line in access_log_path.read_text().splitlines()[before:]]
    assert [(e["who"], e["method"], e["path"], e["status"]) for e in lines] == [
        ("shanghai", "GET", "/api/overview", 200),
        ("shanghai", "GET", "/api/overview", 403),
        (None, "GET", "/api/overview", 401),
        (None, "GET", "/login", 200),
        ("national", "POST", "/login", 302),
        (None, "GET", "/login", 200),
    ]
    assert lines[1]["query"] == "region=11"
    assert lines[5]["query"] == "token=%2A%2A%2A", "a token in a URL is never logged"
    assert all(datetime.fromisoformat(e["time"]) for e in lines)
    text = access_log_path.read_text()
    for token in (tokens.national, tokens.shanghai, tokens.one_processor):
        assert token not in text


def test_runs_under_trust_none_put_a_banner_on_every_page(
    web: FlaskClient, tokens: Tokens, store: Client, sql
) -> None:
    """The store says when findings were judged without checking signatures."""
    assert "Signatures not checked" not in get(web, "/", tokens.national).get_data(as_text=True)
    assert api(web, "/api/overview", tokens.national)["unverified_runs"] is None
    settings = Settings(trust="none", group="faceaudit-untrusting")
    record_run(store, settings)
    record_run(store, Settings())
    try:
        assert sql("SELECT trust, consumer_group FROM validator_runs ORDER BY started_at") == [
            ("none", "faceaudit-untrusting"),
            ("signatures", "faceaudit-validator"),
        ]
        for path in ("/", "/violations"):
            page = get(web, path, tokens.shanghai).get_data(as_text=True)
            assert "Signatures not checked: 1 validator\n  run stored here" in page
        runs = api(web, "/api/overview", tokens.national)["unverified_runs"]
        assert runs["runs"] == 1 and runs["latest"].endswith("Z")
    finally:
        store.command("TRUNCATE TABLE validator_runs")


def test_a_nan_score_comes_out_as_null_and_the_answer_stays_json(
    web: FlaskClient, tokens: Tokens, store: Client, sql
) -> None:
    """NaN is not JSON: one such score would make a strict parser refuse the whole answer."""
    violation_id, event_id = sql(
        "SELECT v.violation_id, v.event_id FROM violations AS v INNER JOIN events AS e "
        "ON v.event_id = e.event_id WHERE e.kind = 'match' LIMIT 1"
    )[0]
    update = "ALTER TABLE faceaudit.events UPDATE score = {s:Float32} WHERE event_id = {e:String}"
    (score,) = sql("SELECT score FROM events WHERE event_id = {e:String}", e=event_id)[0]
    store.command(update, parameters={"s": float("nan"), "e": event_id}, settings=MUTATE)
    try:
        text = get(web, f"/api/violations/{violation_id}", tokens.national).get_data(as_text=True)
    finally:
        store.command(update, parameters={"s": score, "e": event_id}, settings=MUTATE)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    assert json.loads(text, parse_constant=refuse)["event"]["score"] is None


MUTATE = {"mutations_sync": 2}


PROXY = "10.0.0.7"


@pytest.mark.parametrize(
    ("remote", "secure"), [(PROXY, True), ("10.0.0.8", False)], ids=["the-proxy", "anyone-else"]
)
def test_the_login_cookie_is_secure_behind_the_trusted_proxy_only(
    store: Client,
    tokens: Tokens,
    token_path: Path,
    access_log_path: Path,
    remote: str,
    secure: bool,
) -> None:
    """The proxy speaks plain HTTP to the dashboard: only it may say the client used TLS."""
    reports = Reports(Database(store), load_catalogue(), PROFILE)
    app = create_app(reports, TokenFile(token_path), open_access_log(access_log_path), PROXY)
    web = app.test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    base = {"REMOTE_ADDR": remote}
    form = web.get("/login", headers=forwarded, environ_base=base).get_data(as_text=True)
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)[1]
    response = web.post(
        "/login",
        data={"token": tokens.shanghai, "nonce": nonce},
        headers=forwarded,
        environ_base=base,
    )
    assert response.status_code == 302
    assert ("Secure" in response.headers["Set-Cookie"]) is secure
    logged = json.loads(access_log_path.read_text().splitlines()[-1])
    assert logged["remote"] == ("203.0.113.9" if secure else remote)


def test_a_regional_token_sees_filing_ids_of_its_regions_deployments_only(
    web: FlaskClient, tokens: Tokens, store: Client, sql
) -> None:
    """A processor filed one deployment in Beijing: Shanghai's token must not see that filing."""
    processor_id, event_id = sql(
        "SELECT processor_id, any(event_id) FROM events WHERE startsWith(region_code, '31') "
        "GROUP BY processor_id ORDER BY processor_id LIMIT 1"
    )[0]
    other = {"d": "d-beijing-only", "f": "F-BEIJING", "p": processor_id, "e": event_id}
    added = [
        "INSERT INTO faceaudit.deployments SELECT * REPLACE ({d:String} AS deployment_id, "
        "{f:String} AS filing_id) FROM faceaudit.deployments FINAL "
        "WHERE processor_id = {p:String} LIMIT 1",
        "INSERT INTO faceaudit.events SELECT * REPLACE ({d:String} AS deployment_id, "
        "'110105' AS region_code, 'beijing-' || event_id AS event_id) "
        "FROM faceaudit.events WHERE event_id = {e:String}",
    ]
    for statement in added:
        store.command(statement, parameters=other)
    try:
        regional = api(web, f"/api/processors/{processor_id}", tokens.shanghai)["filing"]
        national = api(web, f"/api/processors/{processor_id}", tokens.national)["filing"]
    finally:
        for table in ("deployments", "events", "event_stats_minute"):
            store.command(
                f"ALTER TABLE faceaudit.{table} DELETE WHERE deployment_id = {{d:String}}",
                parameters=other,
                settings=MUTATE,
            )
    assert "F-BEIJING" in national["filing_ids"]
    assert "F-BEIJING" not in regional["filing_ids"]
