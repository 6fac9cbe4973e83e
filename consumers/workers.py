"""`faceaudit consume --workers N`: N validator processes in one consumer group.

Each worker is a full validator (its own Kafka consumer, registry and rule
engine) and shares the CPU work. Only the store differs:

- an embedded chDB store can be opened by one process only, so the parent
  owns it. Every worker writes its batches to files (ClickHouse's Native
  format, and Arrow for the events), hands their names (and its few start-up queries) to the parent
  over a pipe, and commits only after the parent has confirmed the insert;
- a ClickHouse server is reached by each worker directly.

Either way a worker runs the same `Validator` behind a `StoreGateway`.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from consumers.batch import Batch
from consumers.settings import Settings
from consumers.sink import ClickHouseSink, digested_columns, write_files
from consumers.store_gateway import ClickHouseGateway, StoreGateway
from consumers.stored_tail import CheckpointState, StoredTail
from consumers.summary import RunSummary
from consumers.trail.digests import ChainState, Digest
from consumers.trail.ledger import TableRoot
from core.errors import FaceauditError

CHDB_SCHEME = "chdb://"


class RemoteGateway:
    """A worker's gateway to the store owned by the parent process."""

    def __init__(self, conn: Connection, spool: Path) -> None:
        """`spool`: the directory for the batch files the parent inserts."""
        self._conn = conn
        self._spool = spool
        self._layout = self._call("layout")

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        status, value = self._conn.recv()
        if status == "error":
            # Retried by the validator like any failing insert or query.
            raise OperationalError(f"store owner: {value}")
        return value

    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        # Encoded (and hashed) here, so the store owner only hands the files to the engine.
        files = write_files(batch, self._layout, self._spool, chain)
        try:
            self._call("insert", files)
        finally:
            files.remove()
        return files.roots

    def digested_columns(self) -> dict[str, tuple[str, ...]]:
        return digested_columns(self._layout)

    def write_digest(self, digest: Digest) -> None:
        self._call("write_digest", digest)

    def chain_state(self, chain: str) -> ChainState:
        return self._call("chain_state", chain)

    def stored_tail(self, topic: str, partition: int, start: int) -> StoredTail:
        return self._call("stored_tail", topic, partition, start)

    def device_states(self, partition: int) -> list[tuple[str, str, int, str]]:
        return self._call("device_states", partition)

    def checkpoint_state(self, partition: int) -> CheckpointState:
        return self._call("checkpoint_state", partition)

    def registry_offsets(self) -> dict[tuple[str, int], int]:
        return self._call("registry_offsets")

    def eventless_violations(self) -> frozenset[str]:
        return self._call("eventless_violations")

    def processor_regions(self) -> dict[str, list[str]]:
        return self._call("processor_regions")

    def deletions(self) -> list[dict]:
        return self._call("deletions")


def run_workers(settings: Settings, workers: int, client: Client) -> tuple[RunSummary, list[str]]:
    """Start `workers` validator processes, serve their store calls, and sum their runs.

    Returns the combined summary of the workers that finished, and a line for
    each that failed or died (its partitions went to the others).
    """
    embedded = settings.clickhouse.startswith(CHDB_SCHEME)
    owner = _StoreOwner(client) if embedded else None
    with tempfile.TemporaryDirectory(prefix="faceaudit-batches-") as spool:
        # A batch file of a worker killed mid-hand-over goes with the directory.
        results = _run(settings, workers, owner, Path(spool) if embedded else None)
    return _combine(results, workers)


def _run(
    settings: Settings, workers: int, owner: _StoreOwner | None, spool: Path | None
) -> dict[int, tuple[str, Any]]:
    """Start the workers and serve their store calls; each one's report, by index."""
    context = multiprocessing.get_context("spawn")
    processes, servers, results = [], [], {}
    for index in range(workers):
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(settings, index, child_end, spool),
            name=f"faceaudit-worker-{index}",
        )
        process.start()
        child_end.close()
        server = threading.Thread(
            target=_serve, args=(parent_end, owner, results, index), daemon=True
        )
        server.start()
        processes.append(process)
        servers.append(server)
    _forward_stop_signals(lambda: [p.terminate() for p in processes if p.is_alive()])
    for process, server in zip(processes, servers, strict=True):
        process.join()
        server.join()
    return results


class _StoreOwner:
    """The parent's side: runs the workers' calls against the one store, one at a time."""

    def __init__(self, client: Client) -> None:
        self._gateway = ClickHouseGateway(client)
        self._sink = ClickHouseSink(client)
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple) -> Any:
        with self._lock:
            if method == "layout":
                return self._sink.layout
            if method == "insert":
                return self._sink.insert_files(*args)
            return getattr(self._gateway, method)(*args)


def _serve(conn: Connection, owner: _StoreOwner | None, results: dict, index: int) -> None:
    """Answer one worker until it reports its end or its pipe closes (the worker died)."""
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            results.setdefault(index, ("died", "the worker exited without a report"))
            return
        if method in ("done", "failed"):
            results[index] = (method, args[0])
            return
        try:
            conn.send(("ok", owner.call(method, args)))
        except (ClickHouseError, OSError) as exc:
            conn.send(("error", str(exc)))


def _worker_main(settings: Settings, index: int, conn: Connection, spool: Path | None) -> None:
    """A worker process: one validator, its store reached through the parent or directly.

    `spool`: the directory for batch files when the parent owns an embedded
    store; None when the worker reaches a ClickHouse server itself.
    """
    from consumers.pipeline import Validator
    from consumers.process import prepare_engine_process
    from consumers.store import open_store

    prepare_engine_process()

    logging.basicConfig(level=logging.WARNING, format=f"faceaudit[w{index}]: %(message)s")
    client = None
    try:
        if spool is not None:
            gateway: StoreGateway = RemoteGateway(conn, spool)
        else:
            client = open_store(settings.clickhouse)
            gateway = ClickHouseGateway(client)
        # Each worker chains its own digests.
        own = dataclasses.replace(settings, chain=f"{settings.chain_name}/{index}")
        validator = Validator(own, gateway)
        if settings.metrics_port:
            validator.metrics.serve(settings.metrics_port + index, settings.metrics_host)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: validator.stop())
        summary = validator.run()
        conn.send(("done", (summary,)))
    except FaceauditError as exc:
        conn.send(("failed", (str(exc),)))
    except Exception as exc:  # report any crash to the parent, then let it show
        conn.send(("failed", (f"{type(exc).__name__}: {exc}",)))
        raise
    finally:
        if client is not None:
            client.close()
        conn.close()


def _forward_stop_signals(stop_workers: Callable[[], object]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_workers())


def _combine(results: dict[int, tuple[str, Any]], workers: int) -> tuple[RunSummary, list[str]]:
    total = RunSummary()
    problems = []
    for index in range(workers):
        status, value = results.get(index, ("died", "no report"))
        if status != "done":
            problems.append(f"worker {index} {status}: {value}")
            continue
        total.add(value)
    return total, problems
