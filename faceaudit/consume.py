"""`faceaudit consume`: open the store, run the validator (or its workers), print the summary."""

from __future__ import annotations

import signal
import sys

from clickhouse_connect.driver.client import Client

from consumers.keyring import trust_line
from consumers.pipeline import Validator
from consumers.process import prepare_engine_process
from consumers.runs import record_run
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from consumers.summary import RunSummary, print_summary
from consumers.workers import run_workers
from core.clients import redact
from core.errors import FaceauditError


def consume(settings: Settings) -> int:
    """Validate until stopped or idle; exit code 0, or FaceauditError if a worker failed."""
    prepare_engine_process()
    client = open_store(settings.clickhouse)
    record_run(client, settings)
    print(
        f"validating {settings.bootstrap} into {redact(settings.clickhouse)} (profile "
        f"{settings.profile}, group {settings.group}, {settings.workers} worker(s), "
        f"{trust_line(settings.trust)})",
        file=sys.stderr,
    )
    try:
        if settings.workers > 1:
            summary, problems = run_workers(settings, settings.workers, client)
        else:
            summary, problems = _in_process(settings, client), []
        print_summary(summary, client)
    finally:
        client.close()
    if problems:
        raise FaceauditError("; ".join(problems))
    return 0


def _in_process(settings: Settings, client: Client) -> RunSummary:
    validator = Validator(settings, ClickHouseGateway(client))
    if settings.metrics_port:
        port = validator.metrics.serve(settings.metrics_port, settings.metrics_host)
        print(f"metrics on http://{settings.metrics_host}:{port}/metrics", file=sys.stderr)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: validator.stop())
    return validator.run()
