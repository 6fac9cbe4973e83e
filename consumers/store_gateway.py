"""What the validator needs from the store, behind one interface.

The validator loop talks to a `StoreGateway`. `ClickHouseGateway` calls
ClickHouse directly (a server, or the chDB store this process owns); the
`--workers` mode gives each worker a gateway that hands the same calls to the
one process that owns an embedded store.
"""

from __future__ import annotations

from typing import Protocol

from clickhouse_connect.driver.client import Client

from consumers import stored_tail
from consumers.batch import Batch
from consumers.sink import ClickHouseSink, digested_columns
from consumers.stored_tail import CheckpointState, StoredTail
from consumers.trail import digest_store
from consumers.trail.digests import ChainState, Digest
from consumers.trail.ledger import TableRoot


class StoreGateway(Protocol):
    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        """Store every table of the batch (deduplicated on retry); with `chain`, its ledger
        rows first, and return their roots."""

    def digested_columns(self) -> dict[str, tuple[str, ...]]:
        """The columns each digested table's rows are hashed over."""

    def write_digest(self, digest: Digest) -> None:
        """Store a digest (deduplicated by its chain and seq)."""

    def chain_state(self, chain: str) -> ChainState:
        """Where the digest chain `chain` stands in the store."""

    def stored_tail(self, topic: str, partition: int, start: int) -> StoredTail:
        """Rows already stored from `partition` of `topic` at offsets >= `start`.

        Also brings the statistics up to what those rows should have counted.
        """

    def device_states(self, partition: int) -> list[tuple[str, str, int, str]]:
        """(processor, device, highest device_seq, its payload hash) of devices on `partition`."""

    def checkpoint_state(self, partition: int) -> CheckpointState:
        """Where the checkpoints of the devices on `partition` stand."""

    def registry_offsets(self) -> dict[tuple[str, int], int]:
        """Highest stored offset of each registry partition."""

    def eventless_violations(self) -> frozenset[str]:
        """Ids of stored violations that belong to no event."""

    def processor_regions(self) -> dict[str, list[str]]:
        """The regions each processor's stored events came from."""

    def deletions(self) -> list[dict]:
        """Every deletion stored."""


class ClickHouseGateway:
    """The gateway over a clickhouse-connect client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._sink = ClickHouseSink(client)

    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        return self._sink.write(batch, chain)

    def digested_columns(self) -> dict[str, tuple[str, ...]]:
        return digested_columns(self._sink.layout)

    def write_digest(self, digest: Digest) -> None:
        digest_store.write_digest(self._client, digest)

    def chain_state(self, chain: str) -> ChainState:
        return digest_store.chain_state(self._client, chain)

    def stored_tail(self, topic: str, partition: int, start: int) -> StoredTail:
        stored_tail.heal_statistics(self._client, topic, partition, start)
        return stored_tail.load_stored_tail(self._client, topic, partition, start)

    def device_states(self, partition: int) -> list[tuple[str, str, int, str]]:
        return stored_tail.device_states(self._client, partition)

    def checkpoint_state(self, partition: int) -> CheckpointState:
        return stored_tail.checkpoint_state(self._client, partition)

    def registry_offsets(self) -> dict[tuple[str, int], int]:
        return stored_tail.stored_registry_offsets(self._client)

    def eventless_violations(self) -> frozenset[str]:
        return stored_tail.stored_eventless_violations(self._client)

    def processor_regions(self) -> dict[str, list[str]]:
        return stored_tail.processor_regions(self._client)

    def deletions(self) -> list[dict]:
        return stored_tail.stored_deletions(self._client)
