"""Faults against the real broker and the real engine: nothing lost, nothing doubled.

- the validator is SIGKILLed five times while 50,000 events stream in;
- the broker is stopped and restarted mid-stream;
- ClickHouse fails inserts for a while;
- one of two workers is killed and its partitions move to the other;
- the group rebalances after the last record, while a batch is unstored;
- the group rebalances as the quiet time of `--until-idle` runs out;
- the broker refuses the commit lookups of newly assigned partitions;
- the validator dies between publishing violations and committing.

Each run simulates its own fleet (ids carry the seed), so the assertions
count only that fleet's rows.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from helpers import (
    broker_environ,
    event_partitions,
    faceaudit,
    fleet_seed,
    fleet_violations,
    kafka_as,
    published_violations,
    scalar,
    start_faceaudit,
    start_group_at_end,
    store,
)
from kafka.errors import KafkaConnectionError
from signing import fleet_signing_keys

from consumers.batch import Batch
from consumers.pipeline import Validator
from consumers.published import decode_mark
from consumers.read import GROUP_TOPICS, group_consumer
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from consumers.trail.ledger import TableRoot
from core.clients import kafka_admin
from faceaudit.broker import LocalBroker, ensure_topics, free_port
from faceaudit.fleet_keys import register_fleet_keys
from producers.simulate import simulate

pytestmark = pytest.mark.integration


def assert_exactly_once(data: Path, seed: int, produced: int) -> dict[str, int]:
    """Every event of the fleet stored once; statistics and violations agree."""
    devices = f"cam-s{seed}-%"
    processors = f"%-s{seed}"
    with store(data) as client:
        counts = {
            "stored": scalar(
                client,
                "SELECT count() FROM faceaudit.events WHERE device_id LIKE {d:String}",
                d=devices,
            ),
            "unique": scalar(
                client,
                "SELECT uniqExact(event_id) FROM faceaudit.events WHERE device_id LIKE {d:String}",
                d=devices,
            ),
            "statistics": scalar(
                client,
                "SELECT sum(events) FROM faceaudit.event_stats_minute "
                "WHERE processor_id LIKE {p:String}",
                p=processors,
            ),
            "violations": scalar(
                client,
                "SELECT count() FROM faceaudit.violations WHERE device_id LIKE {d:String}",
                d=devices,
            ),
            "unique_violations": scalar(
                client,
                "SELECT uniqExact(violation_id) FROM faceaudit.violations "
                "WHERE device_id LIKE {d:String}",
                d=devices,
            ),
            "counted_violations": scalar(
                client,
                "SELECT sum(violations) FROM faceaudit.violation_stats_minute "
                "WHERE processor_id LIKE {p:String} AND rule_id != 'FR-DELETION-OVERDUE'",
                p=processors,
            ),
        }
    assert counts["stored"] == counts["unique"] == counts["statistics"] == produced, counts
    assert counts["violations"] == counts["unique_violations"] > 0, counts
    print(f"produced {produced}, stored {counts['stored']}, duplicates 0, lost 0, {counts}")
    return counts


def test_sigkill_the_validator_five_times_while_events_stream_in(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path, trusted_keys_file: Path
) -> None:
    seed, events, data = fleet_seed(), 50_000, tmp_path / "ch"
    start_group_at_end(kafka_bootstrap, unique_group)
    producer = start_faceaudit(
        "simulate",
        "--bootstrap",
        kafka_bootstrap,
        "--events",
        str(events),
        "--devices",
        "30",
        "--seed",
        str(seed),
        "--rate",
        "4000",
        "--no-progress",
    )
    consume = (
        "consume",
        "--bootstrap",
        kafka_bootstrap,
        "--clickhouse",
        f"chdb://{data}",
        "--group",
        unique_group,
    )
    # A killed member holds the group's next rebalance until its session
    # expires; a short session keeps each restart quick.
    session = {"FACEAUDIT_SESSION_TIMEOUT": "6"}
    rng = random.Random(seed)
    kills = 0
    while kills < 5:
        validator = start_faceaudit(*consume, **session)
        time.sleep(rng.uniform(4.0, 10.0))
        if validator.poll() is not None:
            pytest.fail(f"validator exited early: {validator.communicate()[1]}")
        validator.send_signal(signal.SIGKILL)
        validator.wait()
        kills += 1
    _, err = producer.communicate(timeout=300)
    assert producer.returncode == 0, err
    final = faceaudit(*consume, "--until-idle", "5", **session)
    assert final.returncode == 0, final.stderr
    counts = assert_exactly_once(data, seed, events)
    assert counts["counted_violations"] == counts["violations"]
    assert_published_once(kafka_bootstrap, data, seed)
    assert_digested_once(data, trusted_keys_file)


def assert_digested_once(data: Path, keys: Path) -> None:
    """The store verifies, every stored row is under a digest, and no batch under two."""
    verified = faceaudit(
        "verify", "--clickhouse", f"chdb://{data}", "--keys", str(keys), "--no-progress"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 rows stored since the last digest" in verified.stderr, verified.stderr
    with store(data) as client:
        listed, unique = client.query(
            "SELECT count(), uniqExact(chain, batch, `table`) FROM faceaudit.digest_batches"
        ).result_rows[0]
    assert listed == unique > 0, "a batch is covered by one digest only"


def assert_published_once(bootstrap: str, data: Path, seed: int) -> None:
    """Every violation of the fleet is on the violations topic exactly once."""
    stored = fleet_violations(data, seed)
    published = published_violations(bootstrap, stored)
    assert set(published) == stored, f"{len(stored - set(published))} never published"
    repeated = sum(n - 1 for n in published.values())
    print(f"violations published {sum(published.values())}, repeated {repeated}")
    assert repeated == 0, f"{repeated} violations published more than once"


def fleet_for_a_validator_in_process(
    bootstrap: str, group: str, events: int
) -> tuple[int, Settings]:
    """Send a new fleet's events past the group's position; the seed and validator settings."""
    seed = fleet_seed()
    start_group_at_end(bootstrap, group)
    simulate(
        kafka_as("producer"),
        events=events,
        devices=10,
        seed=seed,
        progress=False,
        signing_keys=fleet_signing_keys,
    )
    settings = Settings.resolve(
        {"bootstrap": bootstrap, "group": group, "until_idle": 3.0}, environ=broker_environ()
    )
    return seed, settings


class Crash(Exception):
    """Stands for the process dying at the worst moment."""


def crash_after_first_publication(validator: Validator) -> None:
    """Make the validator die once it has published violations, before it commits."""
    publish = validator._publisher.publish

    def publish_then_crash(due: dict) -> None:
        publish(due)
        if due["violations"]:
            raise Crash

    validator._publisher.publish = publish_then_crash


def test_a_crash_between_publishing_and_committing_publishes_nothing_twice(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    events, data = 3000, tmp_path / "ch"
    seed, settings = fleet_for_a_validator_in_process(kafka_bootstrap, unique_group, events)
    client = open_store(f"chdb://{data}")
    try:
        crashing = Validator(settings, ClickHouseGateway(client))
        crash_after_first_publication(crashing)
        with pytest.raises(Crash):
            crashing.run()
        Validator(settings, ClickHouseGateway(client)).run()
    finally:
        client.close()
    assert_exactly_once(data, seed, events)
    assert_published_once(kafka_bootstrap, data, seed)
    admin = kafka_admin(kafka_as("admin"))
    try:
        commits = admin.list_group_offsets(unique_group)[unique_group]
    finally:
        admin.close()
    marks = {meta.metadata for meta in commits.values()}
    assert len(marks) == 1 and decode_mark(marks.pop()) is not None, (
        "every partition's commit carries the latest mark"
    )


def test_broker_restart_mid_stream(tmp_path: Path, kafka_libs_dir: Path) -> None:
    broker = LocalBroker(
        tmp_path / "home", port=free_port(), controller_port=free_port(), libs_dir=kafka_libs_dir
    )
    bootstrap = broker.start()
    try:
        ensure_topics(broker.kafka("admin"))
        seed, events, data = fleet_seed(), 20_000, tmp_path / "ch"
        validator = start_faceaudit(
            "consume",
            "--bootstrap",
            bootstrap,
            "--clickhouse",
            f"chdb://{data}",
            "--until-idle",
            "30",
            FACEAUDIT_BROKER_HOME=str(broker.home),
        )
        result: dict = {}

        def produce() -> None:
            try:
                result["report"] = simulate(
                    broker.kafka("producer"),
                    events=events,
                    devices=20,
                    seed=seed,
                    rate=2000,
                    progress=False,
                    signing_keys=partial(register_fleet_keys, broker.kafka("operator")),
                )
            except Exception as exc:  # the test reports it below
                result["error"] = exc

        sender = threading.Thread(target=produce)
        sender.start()
        time.sleep(4)
        assert broker.stop() is True
        time.sleep(5)
        broker.start()
        sender.join(timeout=300)
        assert "error" not in result, result.get("error")
        assert result["report"].events_sent == events
        _, err = validator.communicate(timeout=300)
        assert validator.returncode == 0, err
    finally:
        broker.stop()
    assert_exactly_once(data, seed, events)


class FailingStore:
    """A gateway whose writes fail for the first `seconds`; records the group's commits."""

    def __init__(self, inner: ClickHouseGateway, seconds: float, committed) -> None:
        self._inner = inner
        self._until = time.monotonic() + seconds
        self._committed = committed
        self.failures = 0
        self.commits_during_failures: set[tuple] = set()

    def write(self, batch: Batch, chain: str | None = None) -> tuple[TableRoot, ...]:
        if time.monotonic() < self._until:
            self.failures += 1
            self.commits_during_failures.add(self._committed())
            raise OperationalError("injected: ClickHouse unavailable")
        return self._inner.write(batch, chain)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def test_clickhouse_failing_inserts_for_a_while(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    events = 5000
    seed, settings = fleet_for_a_validator_in_process(kafka_bootstrap, unique_group, events)
    admin = kafka_admin(kafka_as("admin"))

    def committed() -> tuple:
        offsets = admin.list_group_offsets(unique_group)[unique_group]
        return tuple(sorted((tp.topic, tp.partition, meta.offset) for tp, meta in offsets.items()))

    before = committed()
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        failing = FailingStore(ClickHouseGateway(client), seconds=6, committed=committed)
        Validator(settings, failing).run()
    finally:
        client.close()
        admin.close()
    assert failing.failures >= 3, "the outage must have been hit several times"
    assert failing.commits_during_failures == {before}, "nothing committed while unstored"
    assert_exactly_once(tmp_path / "ch", seed, events)


def worker_pids(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children) of the validator `pid`."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_killing_one_of_two_workers_moves_its_partitions(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    seed, events, data = fleet_seed(), 30_000, tmp_path / "ch"
    start_group_at_end(kafka_bootstrap, unique_group)
    producer = start_faceaudit(
        "simulate",
        "--bootstrap",
        kafka_bootstrap,
        "--events",
        str(events),
        "--devices",
        "30",
        "--seed",
        str(seed),
        "--rate",
        "3000",
        "--no-progress",
    )
    validator = start_faceaudit(
        "consume",
        "--bootstrap",
        kafka_bootstrap,
        "--clickhouse",
        f"chdb://{data}",
        "--group",
        unique_group,
        "--workers",
        "2",
        "--until-idle",
        "20",
        FACEAUDIT_SESSION_TIMEOUT="6",
    )
    deadline = time.monotonic() + 60
    while len(workers := worker_pids(validator.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) >= 2, "two worker processes expected"
    time.sleep(5)
    os.kill(workers[0], signal.SIGKILL)
    _, err = producer.communicate(timeout=300)
    assert producer.returncode == 0, err
    _, err = validator.communicate(timeout=300)
    assert validator.returncode == 1, "a dead worker must show in the exit code"
    assert "worker" in err and "died" in err, err
    assert_exactly_once(data, seed, events)
    assert_published_once(kafka_bootstrap, data, seed)


def rebalance_as_the_quiet_time_runs_out(validator: Validator) -> list[int]:
    """Revoke and reassign every partition, as another worker leaving the group would.

    It happens once, in the first batch that finds nothing when `until_idle`
    seconds have passed since the last record while events are held (the
    batch after which the validator checks whether it is drained). Returns
    a list that then holds the number of events held at that moment.
    """
    reader = validator._reader
    read, last_read, held = reader.read, [time.monotonic()], []

    def read_then_rebalance(*args, **kwargs) -> int:
        count = read(*args, **kwargs)
        now = time.monotonic()
        quiet = now - last_read[0] >= validator.settings.until_idle
        holding = validator.chain.next_step.held  # the judge step, after the decode step
        if count:
            last_read[0] = now
        elif not held and holding and quiet:
            partitions = list(reader._consumer.assignment())
            held.append(len(holding))
            reader.on_revoked(partitions)
            reader.on_assigned(partitions)
        return count

    reader.read = read_then_rebalance
    return held


def test_a_rebalance_as_the_quiet_time_runs_out_rereads_before_ending(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """`--until-idle` ends a run only once every partition is read to its end.

    The rebalance rewinds the partitions to their commits, which wait behind
    the events held for a registry record; those must be read and judged
    again before the run ends, and every partition committed to its end.
    """
    events, data = 3000, tmp_path / "ch"
    seed, settings = fleet_for_a_validator_in_process(kafka_bootstrap, unique_group, events)
    assert settings.until_idle == 3.0
    client = open_store(f"chdb://{data}")
    try:
        validator = Validator(settings, ClickHouseGateway(client))
        held = rebalance_as_the_quiet_time_runs_out(validator)
        validator.run()
    finally:
        client.close()
    assert held and held[0] > 0, "the rebalance came while events were held"
    assert_exactly_once(data, seed, events)
    consumer = group_consumer(settings)
    try:
        ends = consumer.end_offsets(event_partitions(consumer))
        behind = {tp: (consumer.committed(tp), end) for tp, end in ends.items()}
    finally:
        consumer.close()
    behind = {tp: pair for tp, pair in behind.items() if pair[0] != pair[1]}
    assert not behind, f"partitions not committed to their end (commit, end): {behind}"


def test_a_rebalance_after_the_last_record_rereads_the_dropped_rows(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """A rebalance revokes every partition and drops its unstored rows.

    The partitions the validator gets back must be read again from their
    commit, though no new record arrives on them: here the stream has ended
    before a second member joins and leaves the group.
    """
    seed, events, data = fleet_seed(), 3_000, tmp_path / "ch"
    start_group_at_end(kafka_bootstrap, unique_group)
    simulated = faceaudit(
        "simulate", "--bootstrap", kafka_bootstrap, "--events", str(events),
        "--devices", "30", "--seed", str(seed), "--no-progress",
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    # One long batch window: the rows are still unstored when the group rebalances.
    validator = start_faceaudit(
        "consume", "--bootstrap", kafka_bootstrap, "--clickhouse", f"chdb://{data}",
        "--group", unique_group, "--until-idle", "8",
        FACEAUDIT_BATCH_SECONDS="16",
    )  # fmt: skip
    time.sleep(5)
    intruder = group_consumer(
        Settings.resolve(
            {"bootstrap": kafka_bootstrap, "group": unique_group}, environ=broker_environ()
        )
    )
    intruder.subscribe(list(GROUP_TOPICS))
    deadline = time.monotonic() + 30
    while not intruder.assignment() and time.monotonic() < deadline:
        intruder.poll(timeout_ms=200, max_records=1)
    assert intruder.assignment(), "the second member never joined the group"
    intruder.close(autocommit=False)
    _, err = validator.communicate(timeout=120)
    assert validator.returncode == 0, err
    assert_exactly_once(data, seed, events)
    assert_published_once(kafka_bootstrap, data, seed)


def test_partitions_are_taken_once_the_broker_answers_again(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Taking assigned partitions asks the broker for their commits; a refusal is retried."""
    events, data = 2000, tmp_path / "ch"
    seed, settings = fleet_for_a_validator_in_process(kafka_bootstrap, unique_group, events)
    client = open_store(f"chdb://{data}")
    try:
        validator = Validator(settings, ClickHouseGateway(client))
        consumer = validator._reader._consumer
        committed, refusals = consumer.committed, []

        def refuse_three_times(tp, **kwargs):
            if len(refusals) < 3:
                refusals.append(tp)
                raise KafkaConnectionError("111 ECONNREFUSED")
            return committed(tp, **kwargs)

        consumer.committed = refuse_three_times
        with caplog.at_level("WARNING", logger="consumers.read"):
            validator.run()
    finally:
        client.close()
    assert len(refusals) == 3
    warnings = [r for r in caplog.records if "cannot take the assigned partitions" in r.message]
    assert len(warnings) == 1, "one warning per outage"
    assert_exactly_once(data, seed, events)
