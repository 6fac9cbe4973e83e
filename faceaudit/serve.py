"""`faceaudit serve`: the validator, the dashboard and /metrics in one process over one store.

An embedded chDB store can be open in one process only, so the live system on
the default store has to be one process: the validator writes through its own
client, and the dashboard reads through a read-only one on the same store
(`open_reader`), in a thread of its own. With a ClickHouse server the same
command works, and the parts can still run apart (`consume`, `dashboard`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Final

from consumers.keyring import trust_line
from consumers.pipeline import Validator
from consumers.process import prepare_engine_process
from consumers.runs import record_run
from consumers.settings import Settings
from consumers.store import open_reader, open_store
from consumers.store_gateway import ClickHouseGateway
from consumers.summary import print_summary
from core.clients import redact
from dashboard.auth import TokenFile
from dashboard.db import Database
from faceaudit.commands_dashboard import dashboard_server, server_url, tokens_path

DEFAULT_METRICS_PORT: Final = 9464
"""Where Prometheus scrapes a validator (deploy/prometheus)."""
REFRESH_SECONDS: Final = 10


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Validate until stopped (or idle), serving the dashboard and /metrics meanwhile."""
    prepare_engine_process()
    path = tokens_path(args)
    tokens = TokenFile(path)  # a bad token file stops us before the store is taken
    client = open_store(settings.clickhouse)
    db = Database(open_reader(settings.clickhouse))
    try:
        record_run(client, settings)
        validator = Validator(settings, ClickHouseGateway(client))
        metrics_port = validator.metrics.serve(
            settings.metrics_port or DEFAULT_METRICS_PORT, settings.metrics_host
        )
        server = dashboard_server(db, tokens, settings.profile, args, REFRESH_SECONDS)
        web = threading.Thread(target=server.run, name="dashboard", daemon=True)
        web.start()
        print(
            f"serving {settings.bootstrap} into {redact(settings.clickhouse)} (profile "
            f"{settings.profile}, group {settings.group}, {trust_line(settings.trust)}); "
            f"dashboard {server_url(server, args.host)} ({len(tokens)} "
            f"token{'s' if len(tokens) != 1 else ''} from {path}); "
            f"metrics http://{settings.metrics_host}:{metrics_port}/metrics; "
            "Ctrl-C or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: validator.stop())
        try:
            summary = validator.run()
        finally:
            server.close()
        print_summary(summary, client)
    finally:
        db.close()
        client.close()
    return 0
