"""Alerting: the Prometheus rules, their unit tests and the Alertmanager routes.

Checked with the real tools: promtool and amtool (and the prometheus and
alertmanager servers) from the Debian packages prometheus and
prometheus-alertmanager, which `make test` installs. A missing tool FAILS the
test instead of skipping it: alerts nobody checked are not known to work.

The rules are read back from a Prometheus server that loaded
deploy/prometheus/prometheus.yml (its /api/v1/rules), so what is checked here
is what Prometheus itself parsed, and every metric and label an alert uses must
be one that consumers/metrics.py registers: alerts cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.metrics import MetricWrapperBase

from consumers.metrics import PipelineMetrics
from consumers.rules.catalogue import SEVERITIES, load_catalogue
from faceaudit.broker import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL = "apt-get install -y prometheus prometheus-alertmanager"

ALERT_NAMES = frozenset(
    {
        "FaceauditCriticalViolation",
        "FaceauditViolationRateSurge",
        "FaceauditAuditIntegrity",
        "FaceauditDeadLettersRising",
        "FaceauditConsumerLagGrowing",
        "FaceauditPipelineDown",
        "FaceauditInsertsFailing",
    }
)
VIOLATION_ALERTS = frozenset(
    {"FaceauditCriticalViolation", "FaceauditViolationRateSurge", "FaceauditAuditIntegrity"}
)
ALERT_SEVERITIES = frozenset(SEVERITIES) - {"off"}
CATEGORIES = frozenset({"violation", "integrity", "pipeline"})
TARGET_LABELS = frozenset({"job", "instance"})
"""Labels every scraped series gets from its target."""
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
"""Series Prometheus makes itself, with their labels."""

T = TypeVar("T")


# -- tools and servers --------------------------------------------------------


def tool(*names: str) -> str:
    """Path of the first of `names` on PATH; fail (never skip) if none is installed."""
    for name in names:
        if path := shutil.which(name):
            return path
    pytest.fail(f"{names[0]} is not installed: `make test` installs it ({INSTALL})", pytrace=False)


def check(*args: str) -> str:
    """Run a checking command from the repo root; fail with its output unless it succeeds."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, f"`{' '.join(args)}` failed:\n{output}"
    return output


def get_json(url: str, data: Any = None) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def server(args: list[str], ready_url: str, log: Path) -> Iterator[None]:
    """Run a Prometheus or Alertmanager server until the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{args[0]} exited with {process.returncode}:\n{log.read_text()}")
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                return response.status == 200

        wait_for(f"{args[0]} to be ready", ready)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def prometheus(config: Path, tmp: Path) -> Iterator[str]:
    """A Prometheus server on a free port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with server(args, f"{url}/-/ready", tmp / "prometheus.log"):
        yield url


@pytest.fixture(scope="module")
def loaded_rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The alerting rules as a Prometheus server loaded them from prometheus.yml, by name."""
    tmp = tmp_path_factory.mktemp("prometheus")
    with prometheus(PROMETHEUS_CONFIG, tmp) as url:
        groups = get_json(f"{url}/api/v1/rules")["data"]["groups"]
    assert [group["name"] for group in groups] == ["faceaudit"]
    return {rule["name"]: rule for rule in groups[0]["rules"] if rule["type"] == "alerting"}


# -- PromQL names -------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "inf", "nan"})


def parse_promql(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """Metric names with the label names of their matchers, and the grouping labels.

    Not a full PromQL parser: enough for the expressions Prometheus prints back.
    Strings, ranges and offsets are removed first; a name followed by "(" is a
    function or an aggregation.
    """
    text = _OFFSET.sub("", _RANGE.sub("", _STRING.sub('""', expr)))
    grouping = {
        label.strip()
        for clause in _GROUPING.finditer(text)
        for label in clause.group(1).split(",")
        if label.strip()
    }
    selectors: dict[str, set[str]] = {}
    for name, matchers, call in _SELECTOR.findall(_GROUPING.sub("", text)):
        if call or name.lower() in _KEYWORDS:
            continue
        selectors.setdefault(name, set()).update(_MATCHER.findall(matchers))
    return selectors, grouping


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exposed_metrics() -> dict[str, frozenset[str] | None]:
    """Every sample name PipelineMetrics exposes, with its label names (None: not known).

    Names come from the registry's families (a labelled counter has no sample
    until its first increment, so the family type gives the suffixes); labels
    from the metric objects. An Info's labels are its values, set at run time.
    A collector of the pipeline's own (`ColumnHistogram`) always has every
    sample, so its names and labels are read from them.
    """
    metrics = PipelineMetrics()
    labels = {
        metric.describe()[0].name: frozenset(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    exposed: dict[str, frozenset[str] | None] = {}
    for family in metrics.registry.collect():
        if family.name not in labels:  # a collector of its own: its samples are all there is
            for sample in family.samples:
                exposed[sample.name] = frozenset(sample.labels)
            continue
        for suffix in _SUFFIXES[family.type]:
            names = labels[family.name] | ({"le"} if suffix == "_bucket" else set())
            exposed[family.name + suffix] = None if family.type == "info" else names
    return exposed


def test_promql_parser_finds_names_matchers_and_grouping() -> None:
    expr = (
        'sum by (rule, province) (rate(a_total{rule=~"X|Y", severity="critical"}[5m]))'
        " / on () group_left () sum(b offset 1m) > 1e3"
        ' and deriv(sum(c)[10m:1m]) > 0 or absent(up{job="j,{x}"})'
    )
    selectors, grouping = parse_promql(expr)
    assert selectors == {"a_total": {"rule", "severity"}, "b": set(), "c": set(), "up": {"job"}}
    assert grouping == {"rule", "province"}


def test_exposed_metrics_are_the_documented_names() -> None:
    exposed = exposed_metrics()
    assert exposed["faceaudit_violations_total"] == {"rule", "severity", "province"}
    assert exposed["faceaudit_consumer_lag"] == {"topic", "partition"}
    assert exposed["faceaudit_insert_failures_total"] == frozenset()
    assert "faceaudit_batch_duration_seconds_bucket" in exposed
    assert exposed["faceaudit_event_to_stored_seconds_bucket"] == {"le"}
    assert "faceaudit_rules_info" in exposed


# -- the rules ----------------------------------------------------------------


def test_promtool_check_rules() -> None:
    output = check(tool("promtool"), "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in output


def test_promtool_check_config() -> None:
    output = check(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS: 1 rule files found" in output


def test_promtool_unit_tests_pass() -> None:
    check(tool("promtool"), "test", "rules", str(ALERTS_TEST))


def test_every_alert_has_unit_tests_that_fire_and_that_stay_silent() -> None:
    """alerts_test.yml names, for each alert, a case with expected alerts and one with none."""
    cases = re.findall(
        r"alertname:\s*(\w+)\s*\n\s*exp_alerts:[ \t]*(\[\])?", ALERTS_TEST.read_text()
    )
    fires = {name for name, empty in cases if not empty}
    silent = {name for name, empty in cases if empty}
    assert fires == ALERT_NAMES, f"alerts without a firing test: {sorted(ALERT_NAMES - fires)}"
    assert silent == ALERT_NAMES, f"alerts without a silent test: {sorted(ALERT_NAMES - silent)}"


def test_alerts_are_the_expected_ones(loaded_rules: dict[str, dict[str, Any]]) -> None:
    assert set(loaded_rules) == ALERT_NAMES


def test_every_alert_has_severity_category_summary_and_description(
    loaded_rules: dict[str, dict[str, Any]],
) -> None:
    for name, rule in loaded_rules.items():
        assert rule["labels"].get("severity") in ALERT_SEVERITIES, name
        assert rule["labels"].get("category") in CATEGORIES, name
        assert rule["annotations"].get("summary"), name
        assert rule["annotations"].get("description"), name


def test_violation_alerts_keep_rule_and_province_for_routing(
    loaded_rules: dict[str, dict[str, Any]],
) -> None:
    for name in VIOLATION_ALERTS:
        _, grouping = parse_promql(loaded_rules[name]["query"])
        assert {"rule", "province"} <= grouping, name
        description = loaded_rules[name]["annotations"]["description"]
        assert "$labels.rule" in description and "$labels.province" in description, name


def test_critical_violation_alert_pages_at_once(loaded_rules: dict[str, dict[str, Any]]) -> None:
    rule = loaded_rules["FaceauditCriticalViolation"]
    assert rule["duration"] == 0
    assert rule["labels"]["severity"] == "critical"
    assert 'increase(faceaudit_violations_total{severity="critical"}[1m])' in rule["query"]


def test_every_metric_in_the_alerts_is_registered_by_the_pipeline(
    loaded_rules: dict[str, dict[str, Any]],
) -> None:
    exposed = exposed_metrics()
    known = {**exposed, **PROMETHEUS_SERIES}
    for name, rule in loaded_rules.items():
        selectors, _ = parse_promql(rule["query"])
        unknown = set(selectors) - set(known)
        assert not unknown, (
            f"{name} uses {sorted(unknown)}, which consumers/metrics.py does not register "
            f"(it registers {sorted(exposed)})"
        )


def test_every_label_in_the_alerts_exists_on_its_metric(
    loaded_rules: dict[str, dict[str, Any]],
) -> None:
    known = {**exposed_metrics(), **PROMETHEUS_SERIES}
    for name, rule in loaded_rules.items():
        selectors, grouping = parse_promql(rule["query"])
        available = set(TARGET_LABELS)
        for metric, matched in selectors.items():
            labels = known.get(metric)
            if labels is None:
                continue
            assert matched <= labels | TARGET_LABELS, (
                f"{name}: {metric} has no label {sorted(matched - labels - TARGET_LABELS)}"
            )
            available |= labels
        assert grouping <= available, f"{name} groups by unknown {sorted(grouping - available)}"


def test_rule_ids_and_severities_in_the_alerts_are_in_the_catalogue(
    loaded_rules: dict[str, dict[str, Any]],
) -> None:
    rule_ids = {rule.id for rule in load_catalogue().rules}
    for name, rule in loaded_rules.items():
        query = rule["query"]
        for values in re.findall(r'\brule=~?"([^"]*)"', query):
            assert set(values.split("|")) <= rule_ids, f"{name}: unknown rule in {values!r}"
        for values in re.findall(r'\bseverity=~?"([^"]*)"', query):
            assert set(values.split("|")) <= ALERT_SEVERITIES, f"{name}: {values!r}"


def test_critical_violation_fires_on_the_real_exposition(tmp_path: Path) -> None:
    """Prometheus scrapes a real PipelineMetrics endpoint with the shipped config and rules."""
    metrics = PipelineMetrics()
    metrics_port = metrics.serve(0)
    web_port = free_port()
    config = PROMETHEUS_CONFIG.read_text()
    for old, new in [
        ("127.0.0.1:9464", f"127.0.0.1:{metrics_port}"),
        ("127.0.0.1:9090", f"127.0.0.1:{web_port}"),
        ("127.0.0.1:9093", f"127.0.0.1:{free_port()}"),  # no Alertmanager there
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("- alerts.yml", f"- {ALERTS}"),
    ]:
        assert old in config, f"prometheus.yml no longer contains {old!r}"
        config = config.replace(old, new)
    (tmp_path / "prometheus.yml").write_text(config)
    with prometheus(tmp_path / "prometheus.yml", tmp_path) as url:

        def query(promql: str) -> list[dict[str, Any]]:
            q = urllib.parse.urlencode({"query": promql})
            return get_json(f"{url}/api/v1/query?{q}")["data"]["result"]

        wait_for("the validator target to be up", lambda: query('up{job="faceaudit"} == 1'))
        shanghai = metrics.violations.labels("FR-PRIVATE-SPACE", "critical", "31")
        eventless = metrics.violations.labels("FR-MINOR-GUARDIAN", "critical", "")
        shanghai.inc()
        eventless.inc()
        wait_for(
            "the first violations to be scraped",
            lambda: len(query('faceaudit_violations_total{severity="critical"}')) == 2,
        )
        shanghai.inc()
        eventless.inc()

        def firing() -> dict[str, dict[str, str]] | None:
            alerts = get_json(f"{url}/api/v1/alerts")["data"]["alerts"]
            found = {
                a["labels"]["rule"]: a["labels"]
                for a in alerts
                if a["labels"]["alertname"] == "FaceauditCriticalViolation"
                and a["state"] == "firing"
            }
            return found if len(found) == 2 else None

        alerts = wait_for("FaceauditCriticalViolation to fire", firing)
    assert alerts["FR-PRIVATE-SPACE"] == {
        "alertname": "FaceauditCriticalViolation",
        "severity": "critical",
        "category": "violation",
        "rule": "FR-PRIVATE-SPACE",
        "province": "31",
    }
    assert "province" not in alerts["FR-MINOR-GUARDIAN"]


# -- Alertmanager -------------------------------------------------------------


def test_amtool_check_config() -> None:
    output = check(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert "SUCCESS" in output


ROUTES = [
    pytest.param(
        "alertname=FaceauditCriticalViolation severity=critical category=violation "
        "rule=FR-PRIVATE-SPACE province=31",
        "pager,regulator-shanghai",
        id="critical-shanghai",
    ),
    pytest.param(
        "alertname=FaceauditCriticalViolation severity=critical category=violation "
        "rule=FR-CONSENT-MISSING province=11",
        "pager,regulator-beijing",
        id="critical-beijing",
    ),
    pytest.param(
        "alertname=FaceauditCriticalViolation severity=critical category=violation "
        "rule=FR-MINOR-GUARDIAN",
        "pager,regulator-regional",
        id="critical-no-province",
    ),
    pytest.param(
        "alertname=FaceauditViolationRateSurge severity=high category=violation "
        "rule=FR-PUBLIC-SIGNAGE province=31",
        "regulator-shanghai",
        id="high-shanghai",
    ),
    pytest.param(
        "alertname=FaceauditAuditIntegrity severity=high category=integrity "
        "rule=AUDIT-SEQ-GAP province=44",
        "regulator-regional",
        id="high-other-province",
    ),
    pytest.param(
        "alertname=FaceauditViolationRateSurge severity=medium category=violation "
        "rule=FR-NOTICE province=31",
        "daily-digest",
        id="medium-digest",
    ),
    pytest.param(
        "alertname=FaceauditViolationRateSurge severity=advisory category=violation "
        "rule=FR-REMOTE-ID province=11",
        "daily-digest",
        id="advisory-digest",
    ),
    pytest.param(
        "alertname=FaceauditPipelineDown severity=critical category=pipeline "
        "job=faceaudit instance=127.0.0.1:9464",
        "pager,operations",
        id="pipeline-critical",
    ),
    pytest.param(
        "alertname=FaceauditInsertsFailing severity=high category=pipeline "
        "job=faceaudit instance=127.0.0.1:9464",
        "operations",
        id="pipeline-high",
    ),
    pytest.param(
        "alertname=FaceauditConsumerLagGrowing severity=medium category=pipeline",
        "operations",
        id="pipeline-medium",
    ),
]


@pytest.mark.parametrize(("labels", "receivers"), ROUTES)
def test_alertmanager_routes(labels: str, receivers: str) -> None:
    check(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receivers}",
        *labels.split(),
    )


def test_route_check_can_fail() -> None:
    """A wrong expectation makes `amtool config routes test` fail (the checks above mean it)."""
    with pytest.raises(AssertionError, match="failed"):
        check(
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            "--verify.receivers=daily-digest",
            "severity=critical",
            "province=31",
        )


def test_critical_alert_inhibits_lower_severity_of_same_rule_and_province(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        tool("prometheus-alertmanager", "alertmanager"),
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port
    ]

    def alert(name: str, severity: str, category: str, **labels: str) -> dict[str, Any]:
        return {
            "labels": {
                "alertname": name,
                "severity": severity,
                "category": category,
                **labels,
            }
        }

    chain_break = {"rule": "AUDIT-CHAIN-BREAK"}
    validator = {"job": "faceaudit", "instance": "127.0.0.1:9464"}
    sent = {
        "page": alert(
            "FaceauditCriticalViolation", "critical", "violation", **chain_break, province="31"
        ),
        "same": alert("FaceauditAuditIntegrity", "high", "integrity", **chain_break, province="31"),
        "other-province": alert(
            "FaceauditAuditIntegrity", "high", "integrity", **chain_break, province="11"
        ),
        "other-rule": alert(
            "FaceauditAuditIntegrity", "high", "integrity", rule="AUDIT-SEQ-GAP", province="31"
        ),
        "down": alert("FaceauditPipelineDown", "critical", "pipeline", **validator),
        "inserts": alert("FaceauditInsertsFailing", "high", "pipeline", **validator),
    }
    expected = {key: "active" for key in sent} | {"same": "suppressed"}
    with server(args, f"{url}/-/ready", tmp_path / "alertmanager.log"):
        get_json(f"{url}/api/v2/alerts", list(sent.values()))

        seen: dict[str, str] = {}

        def states() -> bool:
            seen.clear()
            for received in get_json(f"{url}/api/v2/alerts"):
                for key, alert_sent in sent.items():
                    if received["labels"] == alert_sent["labels"]:
                        seen[key] = received["status"]["state"]
            return seen == expected

        deadline = time.monotonic() + 15
        while not states() and time.monotonic() < deadline:
            time.sleep(0.1)
    # Only the high alert about the same rule and province as the page is held
    # back; the critical pipeline alert (no rule) silences nothing.
    assert seen == expected
