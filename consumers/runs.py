"""The record of each validator start in the store (`validator_runs`)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from consumers.batch import now_utc
from consumers.rules.catalogue import load_catalogue
from consumers.settings import Settings
from schemas.ddl import DATABASE

COLUMNS = ("started_at", "trust", "profile", "catalogue_version", "consumer_group", "workers")


def record_run(client: Client, settings: Settings) -> None:
    """Note that a validator starts now with `settings`: the dashboard warns of runs
    that did not check signatures."""
    row = (
        now_utc(),
        settings.trust,
        settings.profile,
        load_catalogue().version,
        settings.group,
        settings.workers,
    )
    client.insert(f"{DATABASE}.validator_runs", [row], column_names=list(COLUMNS))
