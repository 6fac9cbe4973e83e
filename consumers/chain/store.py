"""The store step: one insert per table, retried while the store fails, never doubled.

A partition re-read after a crash or a rebalance holds rows the store
already has (stored, then not committed): the step leaves those out of the
insert, and they still go on to be published. A retried insert keeps its
batch's deduplication token, so ClickHouse drops what a failed attempt had
stored already.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka.structs import TopicPartition

from consumers.batch import Batch, Row, now_utc
from consumers.chain.step import Forwarding, Step
from consumers.metrics import PipelineMetrics
from consumers.processor_regions import ProcessorRegions
from consumers.store_gateway import StoreGateway
from consumers.stored_tail import StoredTail
from consumers.summary import RunSummary, RunTimer
from consumers.trail.digests import DigestChain
from core.errors import FaceauditError

log = logging.getLogger(__name__)

_NOTHING_STORED = StoredTail()


class StoreStep(Forwarding):
    """Writes each batch to the store, then counts what it stored."""

    def __init__(
        self,
        next_step: Step,
        store: StoreGateway,
        tails: Mapping[TopicPartition, StoredTail],
        *,
        metrics: PipelineMetrics,
        summary: RunSummary,
        timer: RunTimer,
        stop: threading.Event,
        backoff_max: float,
        regions: ProcessorRegions,
        digests: DigestChain | None = None,
    ) -> None:
        """`tails`: what the store holds of each assigned partition past its commit;
        `regions`: what gives a violation with no event its processor's regions;
        `digests`: the chain each stored batch's ledger roots go to."""
        super().__init__(next_step)
        self._regions = regions
        self._digests = digests
        self._store = store
        self._tails = {tp: tail for tp, tail in tails.items() if tail}  # the usual case: none
        self._metrics = metrics
        self._summary = summary
        self._timer = timer
        self._stop = stop
        self._backoff_max = backoff_max

    def submit(self, batch: Batch) -> None:
        started = time.monotonic()
        self._regions.observe(batch.event_tables)
        self._regions.attribute(batch.rows["violations"])
        self._leave_out_stored(batch)
        stored = len(batch)
        if stored:
            self._write_with_retry(batch)
            self._count(batch)
            batch.free_rows()
        self.next_step.submit(batch)
        if stored:
            self._metrics.batch_seconds.observe(time.monotonic() - started)

    def _leave_out_stored(self, batch: Batch) -> None:
        """Take out of the insert the rows the store already holds (the outbox keeps them)."""
        if not self._tails:
            return
        rows = batch.rows

        def tail(row: Row) -> StoredTail:
            return self._tails.get(TopicPartition(row["topic"], row["partition"]), _NOTHING_STORED)

        batch.event_tables = [self._unstored_events(table) for table in batch.event_tables]
        rows["dead_letters"] = [
            r for r in rows["dead_letters"] if r["offset"] not in tail(r).dead_letters
        ]
        rows["violations"] = [
            r for r in rows["violations"] if r["violation_id"] not in tail(r).violations
        ]
        rows["checkpoints"] = [
            r for r in rows["checkpoints"] if r["offset"] not in tail(r).checkpoints
        ]

    def _unstored_events(self, table: pa.Table) -> pa.Table:
        """The rows of an event table whose offsets the store does not hold.

        FaceauditError if the store holds another event at one of them.
        """
        stored = None
        for tp, tail in self._tails.items():
            if not tail.events:
                continue
            here = pc.and_(
                pc.and_(
                    pc.equal(table["topic"], tp.topic), pc.equal(table["partition"], tp.partition)
                ),
                pc.is_in(table["offset"], value_set=pa.array(sorted(tail.events), pa.uint64())),
            )
            _same_events(table.filter(here), tp, tail)
            stored = here if stored is None else pc.or_(stored, here)
        return table if stored is None else table.filter(pc.invert(stored))

    def _write_with_retry(self, batch: Batch) -> None:
        """Insert the batch, retrying with backoff while the store is failing.

        Nothing is read meanwhile (no unbounded buffering) and nothing is
        committed. A stop request ends the wait: the batch stays uncommitted
        and is read again next time.
        """
        delay = 0.5
        digests = self._digests
        while True:
            try:
                if digests is None:
                    self._store.write(batch)
                    return
                digests.stored(self._store.write(batch, digests.chain))
                if digests.due():
                    digests.flush()
                return
            except (ClickHouseError, OSError) as exc:
                self._metrics.insert_failures.inc()
                if self._stop.is_set():
                    raise FaceauditError(
                        f"stopped while ClickHouse was failing ({exc}); "
                        "the last batch was not committed and will be read again"
                    ) from exc
                log.warning("insert failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)

    def poll(self) -> None:
        """A digest due by time is written even while nothing arrives."""
        if self._digests is not None and self._digests.due():
            self._digests.flush()
        self.next_step.poll()

    def _count(self, batch: Batch) -> None:
        """Metrics and the run summary, from what the batch stored."""
        rows = batch.rows
        events: Counter[str] = Counter()
        for table in batch.event_tables:
            if table.num_rows:
                events[table.column("kind")[0].as_py()] += table.num_rows
        violations = Counter(
            (r["rule_id"], r["severity"], r["region_code"][:2]) for r in rows["violations"]
        )
        dead_letters = Counter(row["reason"] for row in rows["dead_letters"])
        self._observe_latency(batch.event_tables, now_utc())
        for kind, n in events.items():
            self._metrics.events.labels(kind).inc(n)
        for (rule, severity, province), n in violations.items():
            self._metrics.violations.labels(rule, severity, province).inc(n)
        for reason, n in dead_letters.items():
            self._metrics.dead_letters.labels(reason).inc(n)
        by_rule: Counter[tuple[str, str]] = Counter()
        for (rule, severity, _), n in violations.items():
            by_rule[(rule, severity)] += n
        registry = sum(len(rows[t]) for t in ("consents", "deployments", "deletions"))
        self._summary.add(RunSummary(events, by_rule, dead_letters, registry))
        if events:
            self._timer.stored()

    def _observe_latency(self, tables: list[pa.Table], stored_at: datetime) -> None:
        stored_at_us = int(stored_at.timestamp() * 1_000_000)
        for table in tables:
            event_us = pc.cast(table.column("event_time"), pa.int64())
            seconds = pc.divide(pc.subtract(stored_at_us, event_us), 1e6)
            self._metrics.latency.observe_many(seconds)


def _same_events(read: pa.Table, tp: TopicPartition, tail: StoredTail) -> None:
    """The events read at stored offsets are those stored: the same payload hashes."""
    offsets = read.column("offset").to_pylist()
    hashes = read.column("payload_sha256").to_pylist()
    for offset, digest in zip(offsets, hashes, strict=True):
        if tail.events[offset] != digest:
            raise FaceauditError(
                f"the store holds another event at {tp.topic}[{tp.partition}]@{offset} than "
                "the topic does: the topic was created anew, or this is another cluster; "
                "the stored rows are left as they are: validate into another store "
                "(--clickhouse)"
            )
