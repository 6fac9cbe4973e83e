"""The Grafana dashboards and their provisioning, checked against the real schema and metrics.

Every ClickHouse query of every dashboard (panels and template variables) is
rendered the way Grafana and the ClickHouse plugin would render it (template
variables, `$__conditionalAll`, then the time macros) and executed on a
migrated embedded store holding a few events, violations and dead letters: a
table or column that does not exist fails the test, and so does a filter that
lets everything through or nothing. Every Prometheus expression may name only
metrics and labels that `PipelineMetrics` exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from consumers.metrics import PipelineMetrics
from consumers.rules.catalogue import load_catalogue
from consumers.store import open_store
from schemas.ddl import DATABASE

REPO_ROOT = Path(__file__).resolve().parents[1]
GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YML = GRAFANA / "provisioning" / "datasources" / "faceaudit.yml"
PROVIDERS_YML = GRAFANA / "provisioning" / "dashboards" / "faceaudit.yml"
EXPECTED_DASHBOARDS = {"regulator-overview.json", "pipeline-health.json"}

CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
CLICKHOUSE_UID = "faceaudit-clickhouse"
PROMETHEUS_UID = "faceaudit-prometheus"


# --- A strict reader for the small YAML subset that provisioning files use -----------------

_KEY = re.compile(r"^([A-Za-z_][\w.-]*):(?:\s+(.*))?$")
_INT = re.compile(r"^-?\d+$")


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    indent: int
    text: str


def load_yaml_subset(text: str) -> Any:
    """Block mappings, block sequences and plain or quoted scalars; anything else is an error.

    PyYAML is not a dependency of the project; this reader accepts less than
    YAML does, never more, so a file it reads is valid for Grafana's reader too.
    """
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise ValueError(f"line {number}: tab character")
        content = _strip_comment(raw).rstrip()
        if content.strip():
            lines.append(_Line(number, len(content) - len(content.lstrip(" ")), content.strip()))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0].indent)
    if end != len(lines):
        raise ValueError(f"line {lines[end].number}: unexpected indentation")
    return value


def _strip_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i]
    return line


def _block(lines: list[_Line], i: int, indent: int) -> tuple[Any, int]:
    if lines[i].text == "-" or lines[i].text.startswith("- "):
        return _sequence(lines, i, indent)
    return _mapping(lines, i, indent)


def _sequence(lines: list[_Line], i: int, indent: int) -> tuple[list, int]:
    items: list = []
    while i < len(lines) and lines[i].indent == indent and lines[i].text.startswith("-"):
        line = lines[i]
        rest = line.text[1:].strip()
        if not line.text.startswith("- ") and line.text != "-":
            raise ValueError(f"line {line.number}: expected '- '")
        if not rest:
            if i + 1 >= len(lines) or lines[i + 1].indent <= indent:
                raise ValueError(f"line {line.number}: empty sequence item")
            value, i = _block(lines, i + 1, lines[i + 1].indent)
        elif _KEY.match(rest):
            inner = indent + (len(line.text) - len(rest))
            lines[i] = _Line(line.number, inner, rest)
            value, i = _mapping(lines, i, inner)
        else:
            value, i = _scalar(rest, line.number), i + 1
        items.append(value)
    return items, i


def _mapping(lines: list[_Line], i: int, indent: int) -> tuple[dict, int]:
    result: dict[str, Any] = {}
    while i < len(lines) and lines[i].indent == indent:
        line = lines[i]
        match = _KEY.match(line.text)
        if not match:
            raise ValueError(f"line {line.number}: expected 'key: value', got {line.text!r}")
        key, rest = match[1], match[2]
        if key in result:
            raise ValueError(f"line {line.number}: duplicate key {key!r}")
        i += 1
        if rest:
            result[key] = _scalar(rest, line.number)
        elif i < len(lines) and (
            lines[i].indent > indent or (lines[i].indent == indent and lines[i].text[0] == "-")
        ):
            result[key], i = _block(lines, i, lines[i].indent)
        else:
            result[key] = None
    if i < len(lines) and lines[i].indent > indent:
        raise ValueError(f"line {lines[i].number}: unexpected indentation")
    return result, i


def _scalar(text: str, number: int) -> Any:
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'" or "'" in text[1:-1].replace("''", ""):
            raise ValueError(f"line {number}: bad single-quoted string")
        return text[1:-1].replace("''", "'")
    if text[0] == '"':
        return json.loads(text)
    if text[0] in "[]{}&*!|>%@`" or ": " in text or text.endswith(":"):
        raise ValueError(f"line {number}: YAML outside the supported subset: {text!r}")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if _INT.match(text):
        return int(text)
    return text


def read_yaml(path: Path) -> Any:
    text = path.read_text("utf-8")
    value = load_yaml_subset(text)
    try:
        import yaml  # optional cross-check: PyYAML is not a dependency
    except ImportError:
        return value
    assert yaml.safe_load(text) == value, f"{path}: the subset reader disagrees with PyYAML"
    return value


def test_yaml_subset_reader_rejects_what_it_does_not_understand() -> None:
    assert load_yaml_subset("a:\n  - b: 1\n    c: 'x # y'\n  - two\nd: true # note\n") == {
        "a": [{"b": 1, "c": "x # y"}, "two"],
        "d": True,
    }
    for bad in ("a: [1, 2]\n", "a:\n  b: 1\n   c: 2\n", "a: 1\na: 2\n", "a: b: c\n", "a:\tb\n"):
        with pytest.raises(ValueError):
            load_yaml_subset(bad)


# --- Provisioning -----------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, dict]:
    config = read_yaml(DATASOURCES_YML)
    assert config["apiVersion"] == 1
    return {source["uid"]: source for source in config["datasources"]}


def test_datasource_provisioning() -> None:
    sources = provisioned_datasources()
    assert set(sources) == {CLICKHOUSE_UID, PROMETHEUS_UID}
    clickhouse = sources[CLICKHOUSE_UID]
    assert clickhouse["type"] == CLICKHOUSE_PLUGIN
    assert clickhouse["jsonData"]["defaultDatabase"] == DATABASE
    assert clickhouse["jsonData"]["protocol"] == "http"
    assert (clickhouse["jsonData"]["host"], clickhouse["jsonData"]["port"]) == ("127.0.0.1", 8123)
    prometheus = sources[PROMETHEUS_UID]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://127.0.0.1:9090"
    assert len({source["name"] for source in sources.values()}) == len(sources)


def test_dashboard_provider() -> None:
    config = read_yaml(PROVIDERS_YML)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert provider["folder"]


# --- Dashboards -------------------------------------------------------------------------------


def _load_dashboards() -> dict[str, dict]:
    """Every dashboard file that parses (test_dashboards_parse reports those that do not)."""
    boards = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        try:
            boards[path.name] = json.loads(path.read_text("utf-8"))
        except ValueError:
            continue
    return boards


DASHBOARDS = _load_dashboards()


def panels(board: dict) -> Iterator[dict]:
    """Every panel, including those inside collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def test_dashboards_parse() -> None:
    files = {path.name for path in DASHBOARD_DIR.glob("*.json")}
    assert files >= EXPECTED_DASHBOARDS
    for name in files:
        board = json.loads((DASHBOARD_DIR / name).read_text("utf-8"))
        assert board["title"] and board["uid"], name
        assert 36 <= board["schemaVersion"] <= 41, name
    assert set(DASHBOARDS) == files


def test_dashboards_are_well_formed() -> None:
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    for name, board in DASHBOARDS.items():
        ids = [panel["id"] for panel in panels(board)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        titles = [panel["title"] for panel in panels(board)]
        assert len(set(titles)) == len(titles), f"{name}: duplicate panel titles"
        for panel in panels(board):
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (name, panel["title"])
            if panel["type"] != "row":
                assert panel["targets"], (name, panel["title"])
                assert panel.get("description"), (name, panel["title"], "needs a description")
        for link in board.get("links", []):
            target = re.fullmatch(r"/d/([\w-]+)", link["url"])
            assert target and target[1] in uids, f"{name}: link to an unknown dashboard"
        names = [variable["name"] for variable in board["templating"]["list"]]
        assert len(set(names)) == len(names)


def test_every_panel_uses_a_provisioned_datasource() -> None:
    sources = provisioned_datasources()
    seen = set()
    for name, board in DASHBOARDS.items():
        queried = [panel for panel in panels(board) if panel["type"] != "row"]
        queried += [v for v in board["templating"]["list"] if v["type"] == "query"]
        for item in queried:
            refs = [item["datasource"]] + [t["datasource"] for t in item.get("targets", [])]
            for ref in refs:
                assert ref["uid"] in sources, (name, item.get("title", item.get("name")))
                assert ref["type"] == sources[ref["uid"]]["type"], (name, ref)
                seen.add(ref["uid"])
    assert seen == set(sources), "a provisioned data source that no dashboard uses"


# --- Rendering ClickHouse queries as Grafana and the plugin do --------------------------------


@dataclass(frozen=True)
class Selection:
    """A time range and dashboard variable values; None selects All."""

    start: datetime
    end: datetime
    values: dict[str, list[str] | None] = field(default_factory=dict)
    interval_s: int = 300


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at open_paren, and its end."""
    depth, start, args = 0, open_paren + 1, []
    quote = None
    for i in range(open_paren, len(sql)):
        char = sql[i]
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif char == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise ValueError(f"unbalanced macro call in {sql!r}")


def _singlequote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sqlstring(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render(sql: str, variables: dict[str, dict], selection: Selection) -> str:
    """Expand `sql` for `selection`; an unknown variable, format or macro raises."""

    def selected(name: str) -> list[str] | None:
        if name not in variables:
            raise ValueError(f"unknown variable ${name}")
        if variables[name]["type"] == "textbox":
            value = selection.values.get(name) or [""]
            return value if value != [""] else None
        return selection.values.get(name)

    # 1. $__conditionalAll(condition, $var): the plugin's front end drops the
    #    condition when the variable selects All (or is empty).
    macro = "$__conditionalAll("
    while (at := sql.find(macro)) >= 0:
        args, end = _macro_args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise ValueError("$__conditionalAll takes a condition and a variable")
        ref = re.fullmatch(r"\$(\w+)|\$\{(\w+)\}", args[1].strip())
        if not ref:
            raise ValueError(f"$__conditionalAll needs a plain variable, not {args[1]!r}")
        keep = selected(ref[1] or ref[2]) is not None
        sql = sql[:at] + (args[0].strip() if keep else "1=1") + sql[end:]

    # 2. Template variables.
    def interpolate(match: re.Match) -> str:
        name = match[1] or match[3]
        fmt = match[2]
        if name.startswith("__"):
            return match[0]
        values = selected(name)
        if values is None:
            if variables[name]["type"] != "textbox":
                raise ValueError(f"${name} selects All outside $__conditionalAll")
            values = [""]
        if fmt == "singlequote":
            return ",".join(_singlequote(v) for v in values)
        if fmt == "sqlstring":
            return ",".join(_sqlstring(v) for v in values)
        if fmt is None and len(values) == 1:
            return values[0]
        raise ValueError(f"unsupported use of ${name} ({fmt or 'no format'})")

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", interpolate, sql)

    # 3. The plugin's back-end macros.
    start, end = int(selection.start.timestamp()), int(selection.end.timestamp())
    while match := re.search(r"\$__(\w+)", sql):
        name = match[1]
        if name in ("timeFilter", "timeInterval"):
            (column,), stop = _macro_args(sql, match.end())
            column = column.strip()
            if name == "timeFilter":
                text = f"{column} >= toDateTime({start}) AND {column} <= toDateTime({end})"
            else:
                step = f"INTERVAL {selection.interval_s} second"
                text = f"toStartOfInterval(toDateTime({column}), {step})"
            sql = sql[: match.start()] + text + sql[stop:]
            continue
        plain = {
            "fromTime": f"toDateTime({start})",
            "toTime": f"toDateTime({end})",
            "interval_s": str(selection.interval_s),
        }
        if name not in plain:
            raise ValueError(f"macro $__{name} is not one the tests know")
        sql = sql[: match.start()] + plain[name] + sql[match.end() :]
    return sql


def test_render_follows_grafana() -> None:
    variables = {"p": {"type": "query"}, "r": {"type": "textbox"}}
    sql = (
        "SELECT 1 WHERE $__timeFilter(t) AND $__conditionalAll(p IN (${p:singlequote}), $p) "
        "AND startsWith(c, ${r:singlequote}) AND x = ${p:sqlstring}"
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    chosen = Selection(when, when + timedelta(hours=1), {"p": ["a'b"], "r": ["31"]})
    assert render(sql, variables, chosen) == (
        "SELECT 1 WHERE t >= toDateTime(1767225600) AND t <= toDateTime(1767229200) "
        "AND p IN ('a\\'b') AND startsWith(c, '31') AND x = 'a''b'"
    )
    everything = Selection(when, when, {})
    assert "1=1 AND startsWith(c, '')" in render(sql.split(" AND x =")[0], variables, everything)
    for bad in ("$__timeFilter_ms(t)", "$nope", "${p:csv}", "x IN (${p:singlequote})"):
        with pytest.raises(ValueError):
            render(bad, variables, everything)


# --- The store the queries run on -------------------------------------------------------------

DAY = datetime(2026, 3, 1, tzinfo=UTC)
IN_RANGE = Selection(DAY, DAY + timedelta(days=1))


@dataclass(frozen=True)
class Sample:
    """What the fixture stores, so expectations are computed from the data, not written in."""

    events: list[dict]
    violations: list[dict]
    dead_letters: list[dict]


def _sample() -> Sample:
    fleet = [  # processor, deployment, region, purpose, captures, matches
        ("p-1", "d-1", "310104", "payment", 6, 4),
        ("p-1", "d-4", "310115", "access_control", 2, 0),
        ("p-2", "d-2", "110105", "access_control", 3, 2),
        ("p-3", "d-3", "440305", "public_security", 2, 0),
    ]
    events = []
    for processor, deployment, region, purpose, captures, matches in fleet:
        for kind, count in (("capture", captures), ("match", matches)):
            for _ in range(count):
                n = len(events)
                events.append(
                    {
                        "kind": kind,
                        "event_id": f"e-{n}",
                        "event_time": DAY + timedelta(hours=8, seconds=47 * n),
                        "processor_id": processor,
                        "deployment_id": deployment,
                        "device_id": f"dev-{deployment}",
                        "region_code": region,
                        "device_seq": n,
                        "purpose": purpose,
                        "legal_basis": "consent",
                        "topic": f"faceaudit.{kind}.v1",
                        "partition": 0,
                        "offset": n,
                    }
                )
    findings = [  # index of the event, rule, severity
        (0, "FR-PRIVATE-SPACE", "critical"),
        (1, "FR-PRIVATE-SPACE", "critical"),
        (1, "FR-PUBLIC-SIGNAGE", "high"),
        (10, "FR-PUBLIC-SIGNAGE", "high"),
        (12, "FR-CONSENT-MISSING", "critical"),
        (13, "FR-NOTICE", "medium"),
        (14, "FR-NOTICE", "medium"),
        (15, "FR-REMOTE-ID", "advisory"),
    ]
    violations = []
    for index, rule, severity in findings:
        event = events[index]
        violations.append(
            {
                "violation_id": f"v-{index}-{rule}",
                "event_id": event["event_id"],
                "rule_id": rule,
                "severity": severity,
                "profile": "cac-2025",
                "catalogue_version": "test",
                "articles": ["F 13"],
                "message": f"{rule} broken",
                "details": "{}",
                **{k: event[k] for k in ("processor_id", "deployment_id", "device_id")},
                **{k: event[k] for k in ("region_code", "event_time", "topic", "partition")},
                "detected_at": event["event_time"] + timedelta(seconds=2),
                "offset": event["offset"],
            }
        )
    dead_letters = [
        {
            "topic": "faceaudit.events.v1",
            "partition": 0,
            "offset": 1000 + n,
            "raw": "\x00garbage",
            "headers": {},
            "reason": reason,
            "detail": "test",
            "received_at": DAY + timedelta(hours=9, minutes=n),
        }
        for n, reason in enumerate(("undecodable", "unknown-schema", "undecodable"))
    ]
    return Sample(events, violations, dead_letters)


SAMPLE = _sample()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One migrated embedded store for the module (chDB allows one per process at a time)."""
    client = open_store(f"chdb://{tmp_path_factory.mktemp('grafana-ch')}")
    try:
        for table, rows in (
            ("events", SAMPLE.events),
            ("violations", SAMPLE.violations),
            ("dead_letters", SAMPLE.dead_letters),
        ):
            names = list(rows[0])
            client.insert(table, [[row[n] for n in names] for row in rows], column_names=names)
        yield client
    finally:
        client.close()


# --- Running every ClickHouse query -----------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str
    title: str
    sql: str
    variables: dict[str, dict]
    is_variable: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.title}"

    def uses(self, name: str) -> bool:
        return re.search(rf"\$(\{{)?{name}\b", self.sql) is not None


def clickhouse_queries() -> list[Query]:
    found = []
    for name, board in DASHBOARDS.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == CLICKHOUSE_UID:
                    title = f"{panel['title']}/{target['refId']}"
                    found.append(Query(name, title, target["rawSql"], variables, False))
        for variable in variables.values():
            if variable["type"] == "query" and variable["datasource"]["uid"] == CLICKHOUSE_UID:
                sql = variable["query"]["rawSql"]
                assert sql == variable["definition"], f"{name}: ${variable['name']} definition"
                found.append(Query(name, f"${variable['name']}", sql, variables, True))
    return found


QUERIES = clickhouse_queries()


def _run(store: Client, query: Query, selection: Selection) -> list[tuple]:
    return store.query(render(query.sql, query.variables, selection)).result_rows


def _informative(row: tuple) -> bool:
    return any(cell not in (None, 0, "", []) for cell in row)


def _matching() -> Selection:
    """Values that real rows match: one district of Shanghai, one processor, two rules."""
    chosen = [v for v in SAMPLE.violations if v["severity"] in ("critical", "high")]
    first = chosen[0]
    rules = sorted({v["rule_id"] for v in chosen if v["processor_id"] == first["processor_id"]})
    return Selection(
        IN_RANGE.start,
        IN_RANGE.end,
        {
            "region": [first["region_code"][:4]],
            "processor": [first["processor_id"]],
            "rule": rules,
            "severity": ["critical", "high"],
        },
    )


MATCHING = _matching()
MATCHES_NOTHING = {
    "region": ["99"],
    "processor": ["no-such-processor"],
    "rule": ["NO-SUCH-RULE"],
    "severity": ["no-such-severity"],
}


def test_dashboards_hold_clickhouse_queries() -> None:
    assert len([q for q in QUERIES if not q.is_variable]) >= 10
    assert {q.dashboard for q in QUERIES} == {"regulator-overview.json"}


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
@pytest.mark.parametrize("selection", [IN_RANGE, MATCHING], ids=["all", "matching"])
def test_query_runs_and_finds_the_rows(store: Client, query: Query, selection: Selection) -> None:
    rows = _run(store, query, selection)
    assert rows, "no rows"
    assert any(_informative(row) for row in rows), f"nothing but zeros and nulls: {rows}"


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_query_honours_the_time_range_and_every_variable_it_names(
    store: Client, query: Query
) -> None:
    assert query.uses("__timeFilter"), "every query must follow the dashboard's time range"
    baseline = _run(store, query, IN_RANGE)
    earlier = Selection(DAY - timedelta(days=400), DAY - timedelta(days=399))
    assert _run(store, query, earlier) != baseline, "the time range changes nothing"
    named = [name for name in query.variables if query.uses(name)]
    for name in named:
        narrowed = Selection(IN_RANGE.start, IN_RANGE.end, {name: MATCHES_NOTHING[name]})
        assert _run(store, query, narrowed) != baseline, f"${name} changes nothing"


EVENT_TABLES = {"events", "event_stats_minute"}
VIOLATION_TABLES = {"violations", "violation_stats_minute"}


@pytest.mark.parametrize("query", [q for q in QUERIES if not q.is_variable], ids=lambda q: q.id)
def test_panels_on_audit_tables_apply_the_filters(query: Query) -> None:
    """A regulator who filters on a region or processor must not see an unfiltered panel."""
    tables = set(re.findall(rf"\b{DATABASE}\.(\w+)", query.sql))
    assert tables, "tables must be named with their database"
    if tables & (EVENT_TABLES | VIOLATION_TABLES):
        assert query.uses("region") and query.uses("processor")
    if tables & VIOLATION_TABLES:
        assert query.uses("rule")


def _stat(store: Client, title: str, selection: Selection) -> Any:
    (query,) = [q for q in QUERIES if q.title == f"{title}/A"]
    (row,) = _run(store, query, selection)
    return row[0]


@pytest.mark.parametrize("selection", [IN_RANGE, MATCHING], ids=["all", "matching"])
def test_headline_numbers_match_the_stored_rows(store: Client, selection: Selection) -> None:
    values = selection.values

    def keep(row: dict) -> bool:
        if values.get("region") and not row["region_code"].startswith(values["region"][0]):
            return False
        if values.get("processor") and row["processor_id"] not in values["processor"]:
            return False
        return not (
            "rule_id" in row and values.get("rule") and row["rule_id"] not in values["rule"]
        )

    events = [e for e in SAMPLE.events if keep(e)]
    violations = [v for v in SAMPLE.violations if keep(v)]
    critical = [v for v in violations if v["severity"] == "critical"]
    if values.get("severity"):
        violations = [v for v in violations if v["severity"] in values["severity"]]
    assert _stat(store, "Events", selection) == len(events) > 0
    assert _stat(store, "Violations", selection) == len(violations) > 0
    assert _stat(store, "Critical violations", selection) == len(critical) > 0
    assert _stat(store, "Violations per 100 events", selection) == pytest.approx(
        100 * len(violations) / len(events), abs=1e-3
    )
    assert _stat(store, "Processors with critical violations", selection) == len(
        {v["processor_id"] for v in critical}
    )
    assert _stat(store, "Dead letters", selection) == len(SAMPLE.dead_letters)


# --- Prometheus expressions -------------------------------------------------------------------

TARGET_LABELS = {"instance", "job"}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def exposed_metrics() -> dict[str, set[str]]:
    """Every series name PipelineMetrics exposes, with its label names.

    The rules-info labels are set when the validator starts; the same call
    fills them in here.
    """
    metrics = PipelineMetrics()
    metrics.describe_rules(load_catalogue(), "cac-2025")
    labels_of = {
        wrapper._name: set(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if hasattr(wrapper, "_labelnames")
    }
    exposed: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels = labels_of.get(family.name, set()) | TARGET_LABELS
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
            "info": ("_info",),
        }[family.type]
        for suffix in suffixes:
            exposed[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        for sample in family.samples:
            exposed.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
    return exposed


@dataclass(frozen=True)
class PromQuery:
    dashboard: str
    title: str
    expr: str
    legend: str
    variables: dict[str, dict]

    def concrete(self) -> str:
        def value(match: re.Match) -> str:
            name = match[1] or match[2]
            if name in GRAFANA_INTERVALS:
                return GRAFANA_INTERVALS[name]
            variable = self.variables.get(name)
            if variable is None or "allValue" not in variable:
                raise ValueError(f"unknown variable ${name}")
            return variable["allValue"]

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, self.expr)


def prometheus_queries() -> list[PromQuery]:
    found = []
    for name, board in DASHBOARDS.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == PROMETHEUS_UID:
                    title = f"{panel['title']}/{target['refId']}"
                    legend = target.get("legendFormat", "")
                    found.append(PromQuery(name, title, target["expr"], legend, variables))
    return found


PROM_QUERIES = prometheus_queries()


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    labels = set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    metrics = {
        match[1]
        for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
        if match[1] not in PROMQL_KEYWORDS
    }
    return metrics, labels


def test_promql_name_extraction() -> None:
    expr = 'histogram_quantile(0.5, sum by (le) (rate(a_bucket{x=~"$v"}[5m]))) / on(y) b'
    assert names_in(expr) == ({"a_bucket", "b"}, {"le", "x", "y"})


def test_dashboards_hold_prometheus_queries() -> None:
    assert len(PROM_QUERIES) >= 10
    assert {q.dashboard for q in PROM_QUERIES} == {"pipeline-health.json"}


def test_prometheus_queries_name_only_exposed_metrics_and_labels() -> None:
    exposed = exposed_metrics()
    for query in PROM_QUERIES:
        metrics, labels = names_in(query.concrete())
        assert metrics, f"{query.title}: names no metric"
        unknown = metrics - set(exposed)
        assert not unknown, f"{query.title}: not exposed by PipelineMetrics: {unknown}"
        known_labels = set().union(*(exposed[m] for m in metrics))
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend))
        missing = (labels | legend) - known_labels
        assert not missing, f"{query.title}: labels {missing} not on {metrics}"
    for board in DASHBOARDS.values():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query" and variable["datasource"]["uid"] == PROMETHEUS_UID:
                call = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
                assert call, variable["definition"]
                assert call[2] in exposed[call[1]]
                assert variable["query"]["query"] == variable["definition"]


def test_prometheus_queries_parse() -> None:
    """promtool parses every expression (skipped where Prometheus' tools are not installed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    rules = [
        {"record": f"faceaudit_dashboard:query_{n}", "expr": query.concrete()}
        for n, query in enumerate(PROM_QUERIES)
    ]
    document = json.dumps({"groups": [{"name": "dashboards", "rules": rules}]})
    result = subprocess.run(
        [promtool, "check", "rules", "/dev/stdin"],
        input=document,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
