"""The real dashboard server, driven by headless Chromium: login, chart, tables, filter, CSV.

The server runs as ``python -m faceaudit.cli dashboard`` on a free port over
an embedded store this test fills and then closes (chDB lets one process
open a store). Every number read off a page is compared with what the JSON
API returns for the same token. Screenshots go to $FACEAUDIT_SCREENSHOTS
(docs/img for the docs) or a temporary folder.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from test_dashboard import populate

from consumers.store import open_store
from dashboard.auth import add_token
from dashboard.scope import Scope
from faceaudit.broker import free_port

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
# FACEAUDIT_SCREENSHOTS=docs/img refreshes the documentation's pictures;
# otherwise a test run leaves the tree as it was.
SCREENSHOTS: Final = Path(
    os.environ.get("FACEAUDIT_SCREENSHOTS") or tempfile.mkdtemp(prefix="faceaudit-shots-")
)
CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    access_log: Path
    dsn: str

    def api(self, path: str, **args: Any) -> Any:
        """The JSON the API returns to the same token the browser logged in with."""
        query = f"?{urllib.parse.urlencode(args)}" if args else ""
        request = urllib.request.Request(
            f"{self.url}{path}{query}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("dashboard-browser")
    dsn = f"chdb://{base / 'store'}"
    client = open_store(dsn)
    try:
        populate(client)
    finally:
        client.close()  # the server process opens the store next; chDB allows one process
    tokens = base / "tokens.jsonl"
    token = add_token(tokens, "national-regulator", Scope())
    access_log = base / "access.log"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceaudit.cli",
            "dashboard",
            "--clickhouse",
            dsn,
            "--port",
            str(port),
            "--tokens",
            str(tokens),
            "--access-log",
            str(access_log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield Server(url, token, access_log, dsn)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: `make test` installs it "
            "(apt-get install -y chromium); Playwright's own browser download cannot be used"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A logged-in page: the token typed into the login form, as a person would."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.goto(f"{server.url}/login")
    tab.fill("input[name=token]", server.token)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{server.url}/")
    try:
        yield tab
    finally:
        context.close()


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail(f"the dashboard did not answer /healthz within {START_TIMEOUT:.0f} s")


def _number(text: str) -> int:
    return int(text.replace(",", "").strip())


def _table(page: Page, selector: str) -> list[list[str]]:
    """The body cells of a table, as text."""
    return page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))",
    )


def test_overview_renders_the_api_numbers(page: Page, server: Server) -> None:
    data = server.api("/api/overview")
    page.goto(f"{server.url}/")
    assert _number(page.text_content("#events-total")) == data["events"]["total"]
    assert _number(page.text_content("#violations-total")) == data["violations"]["total"]
    for severity, count in data["violations"]["by_severity"].items():
        assert _number(page.text_content(f"#severity-{severity}")) == count

    bars = page.eval_on_selector_all(
        "#rate-chart rect.bar",
        "bars => bars.map(b => [b.dataset.bucket, Number(b.dataset.value), "
        "b.getBoundingClientRect().height])",
    )
    assert [(bucket, value) for bucket, value, _ in bars] == [
        (p["bucket"], p["per_100_events"] or 0) for p in data["series"]
    ]
    assert len(bars) > 1
    assert max(height for _, _, height in bars) > 50  # drawn, not just present

    assert _table(page, "#top-rules") == [
        [r["rule_id"], r["title"], f"{r['violations']:,}"] for r in data["top_rules"]
    ]
    assert _table(page, "#regions") == [
        [
            r["region_code"] or "none",
            r["province"] or "no event: shown in its processor's regions",
            f"{r['events']:,}",
            f"{r['violations']:,}",
            f"{r['critical']:,}",
            "\N{EN DASH}" if r["per_100_events"] is None else f"{r['per_100_events']:.2f}",
        ]
        for r in data["regions"]
    ]
    assert data["regions"][0]["region_code"] == "", "the violations of no event have a row"
    shown = [row[0] for row in _table(page, "#top-processors")]
    assert shown == [r["processor_id"] for r in data["top_processors"]]
    page.screenshot(path=SCREENSHOTS / "dashboard-overview.png", full_page=True)


def test_violations_filter_and_csv(page: Page, server: Server, tmp_path: Path) -> None:
    page.goto(f"{server.url}/violations")
    page.fill("input[name=region]", "11")
    page.select_option("select[name=severity]", "critical")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/violations?*severity=critical*")
    data = server.api("/api/violations", region="11", severity="critical", limit=1000)
    assert data["total"] > 0
    assert _number(page.text_content("#violations-total")) == data["total"]
    rows = _table(page, "#violations")
    assert rows and all(r[2] == "critical" and r[3].startswith("11") for r in rows)
    assert [r[3] for r in rows] == [v["region_code"] for v in data["violations"][: len(rows)]]
    page.screenshot(path=SCREENSHOTS / "dashboard-violations.png")  # the first screenful

    with page.expect_download() as download:
        page.click("#csv-link")
    saved = tmp_path / "violations.csv"
    download.value.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert [r["violation_id"] for r in exported] == [v["violation_id"] for v in data["violations"]]
    assert all(r["severity"] == "critical" and r["region_code"].startswith("11") for r in exported)


def test_drill_down_from_the_list(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/violations?region=31")
    page.click("#violations tbody tr:first-child td:first-child a")
    page.wait_for_url("**/violations/*")
    violation_id = page.url.rsplit("/", 1)[1]
    data = server.api(f"/api/violations/{violation_id}")
    fields = dict(_table(page, "#event-fields"))
    assert fields["event_id"] == data["event"]["event_id"] == data["violation"]["event_id"]
    assert fields["device_id"] == data["event"]["device_id"]
    assert fields["region_code"].startswith("31")
    page.screenshot(path=SCREENSHOTS / "dashboard-violation.png", full_page=True)


def test_processor_page(page: Page, server: Server) -> None:
    processor_id = server.api("/api/overview")["top_processors"][0]["processor_id"]
    data = server.api(f"/api/processors/{processor_id}")
    page.goto(f"{server.url}/processors/{processor_id}")
    assert _number(page.text_content("#filing-subjects")) == data["filing"]["distinct_subjects"]
    assert _number(page.text_content("#filing-threshold")) == data["filing"]["threshold"]
    assert page.text_content("#filing-status") == data["filing"]["status"]
    coverage = data["consent"]["coverage_percent"]
    assert page.text_content("#consent-coverage") == (
        f"{coverage:.2f}" if coverage is not None else "\N{EN DASH}"
    )
    deployments = _table(page, "#deployments")
    assert [row[0].split()[0] for row in deployments] == [
        d["deployment_id"] for d in data["deployments"]
    ]
    page.screenshot(path=SCREENSHOTS / "dashboard-processor.png", full_page=True)


def test_the_server_logged_every_request(page: Page, server: Server) -> None:
    entries = [json.loads(line) for line in server.access_log.read_text().splitlines()]
    assert {"/login", "/", "/violations", "/violations.csv", "/api/overview"} <= {
        e["path"] for e in entries
    }
    assert all(e["who"] == "national-regulator" for e in entries if e["path"] == "/api/overview")
    assert server.token not in server.access_log.read_text()


def test_a_second_process_on_the_store_is_told_why(server: Server, tmp_path: Path) -> None:
    """chDB lets one process open a store: a second dashboard stops with a clear message."""
    tokens = tmp_path / "tokens.jsonl"
    add_token(tokens, "second", Scope())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "faceaudit.cli",
            "dashboard",
            "--clickhouse",
            server.dsn,
            "--port",
            str(free_port()),
            "--tokens",
            str(tokens),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "already open in another process" in result.stderr
    assert "Traceback" not in result.stderr
