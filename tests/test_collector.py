"""Memory of the validator: batches are freed when stored, and the collector runs in large steps."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import broker_environ, kafka_as
from signing import fleet_signing_keys

from consumers import read
from consumers.batch import Batch
from consumers.collector import BATCH_THRESHOLDS, collecting_in_batches
from consumers.pipeline import Validator
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from consumers.trail.ledger import TableRoot
from producers.simulate import simulate


def test_the_previous_thresholds_come_back_after_the_block_even_on_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collecting_in_batches():
        assert gc.get_threshold() == BATCH_THRESHOLDS
        raise RuntimeError("boom")
    assert gc.get_threshold() == before


class _TrackedBatch(Batch):
    """A batch that can be watched by weak reference (a subclass gains `__weakref__`)."""

    made: ClassVar[list[weakref.ref]] = []

    def __init__(self, **fields: object) -> None:
        super().__init__(**fields)
        _TrackedBatch.made.append(weakref.ref(self))


class _WatchingGateway(ClickHouseGateway):
    """Records the collector's thresholds while each batch is stored."""

    def __init__(self, client) -> None:
        super().__init__(client)
        self.thresholds: set[tuple[int, int, int]] = set()

    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        self.thresholds.add(gc.get_threshold())
        return super().write(batch, chain)


@pytest.mark.integration
def test_stored_rows_are_freed_without_the_cycle_collector(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka-python keeps the stack of a poll that timed out in a reference cycle.

    A batch on that stack would wait for the cycle collector (and reach its
    oldest generation on the way). With the collector off, no batch may hold
    a row once the run is over: the store step lets go of the rows once
    stored, and the publish step of the findings once the outbox has them.
    """
    simulate(
        kafka_as("producer"),
        events=3000,
        devices=6,
        seed=5,
        violation_rate=0.1,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    monkeypatch.setattr(read, "Batch", _TrackedBatch)
    _TrackedBatch.made.clear()
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    settings = Settings.resolve(
        {"bootstrap": kafka_bootstrap, "group": unique_group, "until_idle": 2.0, "batch_size": 500},
        environ=broker_environ(),
    )
    gc.collect()
    gc.disable()
    try:
        gateway = _WatchingGateway(client)
        validator = Validator(settings, gateway)
        summary = validator.run()
        alive = [ref() for ref in _TrackedBatch.made if ref() is not None]
    finally:
        gc.enable()
        client.close()

    assert sum(summary.events.values()) >= 3000
    assert len(_TrackedBatch.made) > 6, "the run must have filled several batches"
    holding = [batch for batch in alive if len(batch) or any(batch.outbox.values())]
    assert not holding, f"{len(holding)} stored batches keep their rows alive in reference cycles"
    assert gateway.thresholds == {BATCH_THRESHOLDS}
