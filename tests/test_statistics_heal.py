"""Statistics healed after a crash between a table insert and its view's insert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from arrow_events import event_table
from samples import sample

from consumers.batch import Batch
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from consumers.stored_tail import heal_statistics

pytestmark = pytest.mark.integration


def test_rows_the_view_missed_are_counted_once(tmp_path: Path) -> None:
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        batch = Batch()
        start = sample("capture")["event_time"]
        records = [
            sample(
                "capture",
                event_id=f"e{offset}",
                device_seq=offset,
                event_time=start + timedelta(seconds=offset * 7),
            )
            for offset in range(40)
        ]
        batch.add_events(event_table("capture", records, "faceaudit.events.v1", 3, range(40)))
        ClickHouseGateway(client).write(batch)

        def counted() -> int:
            return client.query("SELECT sum(events) FROM faceaudit.event_stats_minute").result_rows[
                0
            ][0]

        assert counted() == 40
        heal_statistics(client, "faceaudit.events.v1", 3, 0)
        assert counted() == 40, "nothing missing: nothing added"
        # What a crash after the table insert and before the view's looks like:
        client.command("TRUNCATE TABLE faceaudit.event_stats_minute")
        heal_statistics(client, "faceaudit.events.v1", 3, 20)
        # Every minute the tail (offsets 20-39) touches is complete again; the
        # minutes only the committed rows fall in are not the tail's to heal.
        tail_minutes = client.query(
            "SELECT count() FROM faceaudit.events WHERE toStartOfMinute(event_time) IN "
            "(SELECT toStartOfMinute(event_time) FROM faceaudit.events WHERE offset >= 20)"
        ).result_rows[0][0]
        assert counted() == tail_minutes
        heal_statistics(client, "faceaudit.events.v1", 3, 20)
        assert counted() == tail_minutes, "healing twice adds nothing"
    finally:
        client.close()
