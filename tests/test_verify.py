"""The verifiable store: signed digests over what the validator stored, and `faceaudit verify`.

A fleet (violations, dead letters) goes through the real broker to a real
validator writing a digest every second; its store is then checked as it is,
and copies of it are tampered with, one way each: every change must be found
and located to its table, row, batch and digest. chDB opens one store per
process and a copy's tables carry the original's ids, so everything after
the validator's run happens in processes of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from helpers import (
    consume,
    faceaudit,
    fleet_seed,
    kafka_as,
    start_group_at_end,
)
from signing import auditor_key_record, fleet_signing_keys

from core.clients import kafka_consumer
from producers.event_producer import EventProducer
from producers.simulate import simulate
from schemas import codec
from schemas.topics import DIGESTS_TOPIC, EVENTS_TOPIC, TOPICS

pytestmark = pytest.mark.integration

_SQL = """
import json, sys
from consumers.store import open_store
client = open_store(sys.argv[1])
for statement in json.loads(sys.argv[2]):
    client.command(statement, settings={"mutations_sync": 2})
query = json.loads(sys.argv[3])
print(json.dumps(client.query(query).result_rows[0][0] if query else None))
client.close()
"""


def send_fleet(bootstrap: str, group: str, **fleet: Any) -> None:
    """A new signing fleet's events, past where `group` stands."""
    start_group_at_end(bootstrap, group)
    simulate(
        kafka_as("producer"),
        seed=fleet_seed(),
        progress=False,
        signing_keys=fleet_signing_keys,
        **fleet,
    )


@pytest.fixture(scope="module")
def validated(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store filled by a validator from a fleet with violations and dead letters."""
    group = f"faceaudit-test-verify-{fleet_seed()}"
    send_fleet(kafka_bootstrap, group, events=4_000, devices=12, violation_rate=0.2)
    with EventProducer(kafka_as("producer")) as producer:
        for n in range(3):
            producer.send_raw(EVENTS_TOPIC, f"not a record {n}".encode(), b"dev-garbage")
        producer.send_raw(EVENTS_TOPIC, b"\xff\xfe not UTF-8", b"dev-garbage")
    store = tmp_path_factory.mktemp("verified") / "ch"
    run = consume(kafka_bootstrap, store, group, "--digest-interval", "1", "--batch-size", "500")
    assert run.returncode == 0, run.stderr
    return store


@pytest.fixture
def copy(validated: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ch"
    shutil.copytree(validated, target, symlinks=True)  # the store links its tables relatively
    return target


def in_store(store: Path, *statements: str, query: str | None = None) -> object:
    """Run `statements` on the store, then return `query`'s first value."""
    done = subprocess.run(
        [sys.executable, "-c", _SQL, f"chdb://{store}", json.dumps(statements), json.dumps(query)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def verify(store: Path, keys: Path) -> tuple[int, list[dict], str]:
    """`faceaudit verify` on the store: its exit status, findings and summary line."""
    result = faceaudit(
        "verify", "--clickhouse", f"chdb://{store}", "--keys", str(keys),
        "--format", "jsonl", "--no-progress",
    )  # fmt: skip
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, findings, result.stderr


def first(store: Path, table: str, column: str) -> object:
    return in_store(store, query=f"SELECT {column} FROM faceaudit.{table} ORDER BY {column}")


def kinds(findings: list[dict]) -> set[str]:
    return {finding["kind"] for finding in findings}


def test_the_stored_trail_verifies_and_every_row_is_covered(
    validated: Path, trusted_keys_file: Path
) -> None:
    status, findings, summary = verify(validated, trusted_keys_file)
    assert (status, findings) == (0, []), summary
    assert "no tampering" in summary and "0 rows stored since the last digest" in summary
    digests = in_store(validated, query="SELECT count() FROM faceaudit.digests")
    assert digests >= 2, "a digest a second, and a last one at the stop"
    assert f"{digests} digests" in summary
    for table in ("events", "violations", "dead_letters"):
        stored = in_store(validated, query=f"SELECT count() FROM faceaudit.{table}")
        assert stored > 0, table
        assert f"{stored:,} {table}" in summary, summary


@pytest.mark.parametrize("table", ["events", "violations", "dead_letters"])
def test_an_updated_row_is_found_and_located(
    copy: Path, trusted_keys_file: Path, table: str
) -> None:
    column = {"events": "purpose", "violations": "severity", "dead_letters": "reason"}[table]
    offset = first(copy, table, "offset")
    in_store(copy, f"ALTER TABLE faceaudit.{table} UPDATE {column} = 'x' WHERE offset = {offset}")
    status, findings, _ = verify(copy, trusted_keys_file)
    assert status == 1 and kinds(findings) == {"changed"}, findings
    assert all(f["table"] == table and f["batch"] and f["digest"] for f in findings)


@pytest.mark.parametrize("table", ["events", "violations", "dead_letters"])
def test_a_deleted_row_is_found_and_located(
    copy: Path, trusted_keys_file: Path, table: str
) -> None:
    offset = first(copy, table, "offset")
    in_store(copy, f"ALTER TABLE faceaudit.{table} DELETE WHERE offset = {offset}")
    status, findings, _ = verify(copy, trusted_keys_file)
    assert status == 1 and kinds(findings) == {"deleted"}, findings
    assert all(f["table"] == table and f["batch"] and f["digest"] for f in findings)


def test_an_inserted_row_is_found(copy: Path, trusted_keys_file: Path) -> None:
    in_store(
        copy,
        "INSERT INTO faceaudit.violations SELECT * REPLACE ('forged-' || violation_id AS "
        "violation_id) FROM faceaudit.violations LIMIT 1",
    )
    status, findings, _ = verify(copy, trusted_keys_file)
    [added] = findings
    assert (status, added["kind"], added["table"]) == (1, "added", "violations")
    assert added["row_key"].startswith("forged-")


def test_a_deleted_digest_is_found(copy: Path, trusted_keys_file: Path) -> None:
    in_store(copy, "ALTER TABLE faceaudit.digests DELETE WHERE seq = 1")
    status, findings, _ = verify(copy, trusted_keys_file)
    assert status == 1, findings
    assert any(f["kind"] == "digest" and "#1" in f["detail"] for f in findings), findings


def test_a_rewritten_ledger_is_found(copy: Path, trusted_keys_file: Path) -> None:
    """Whoever edits a row's ledger hash to match an edit still breaks the signed root."""
    in_store(
        copy,
        "ALTER TABLE faceaudit.batch_ledgers UPDATE row_hashes = arrayMap((h, i) -> "
        "if(i = 1, toFixedString(unhex(repeat('00', 32)), 32), h), row_hashes, "
        "arrayEnumerate(row_hashes)) WHERE `table` = 'events' AND batch = "
        "(SELECT min(batch) FROM faceaudit.batch_ledgers WHERE `table` = 'events')",
    )
    status, findings, _ = verify(copy, trusted_keys_file)
    assert status == 1 and "ledger" in kinds(findings), findings


def test_a_ledger_kept_a_row_per_stored_row_still_verifies(
    copy: Path, trusted_keys_file: Path
) -> None:
    """Stores from before migration 0012 keep their ledgers in `stored_rows`, a row each."""
    moved = in_store(
        copy,
        "INSERT INTO faceaudit.stored_rows SELECT chain, batch, `table`, row_key, row_hash "
        "FROM faceaudit.batch_ledgers ARRAY JOIN row_keys AS row_key, row_hashes AS row_hash",
        "TRUNCATE TABLE faceaudit.batch_ledgers",
        query="SELECT count() FROM faceaudit.stored_rows",
    )
    status, findings, summary = verify(copy, trusted_keys_file)
    assert moved > 0 and (status, findings) == (0, []), summary
    assert "0 rows stored since the last digest" in summary
    in_store(copy, "ALTER TABLE faceaudit.stored_rows DELETE WHERE `table` = 'violations'")
    status, findings, _ = verify(copy, trusted_keys_file)
    assert status == 1 and kinds(findings) == {"ledger", "added"}, findings
    assert {f["table"] for f in findings} == {"violations"}, "the old form is read too"


def test_digests_signed_by_a_key_that_is_not_the_auditors_are_refused(
    validated: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.jsonl"
    wrong = auditor_key_record() | {"owner": "processor", "processor_id": "p-1"}
    keys.write_text(json.dumps(codec.to_json("key", wrong)) + "\n")
    status, findings, _ = verify(validated, keys)
    assert status == 1 and kinds(findings) >= {"digest"}, findings
    assert "not the auditor's" in findings[0]["detail"]


def test_keys_that_cannot_be_read_are_bad_input(validated: Path, tmp_path: Path) -> None:
    bad = tmp_path / "keys.jsonl"
    bad.write_text("{not json\n")
    status, findings, summary = verify(validated, bad)
    assert (status, findings) == (2, [])
    assert f"{bad}:1: not a key record" in summary


def digest_messages() -> Iterator[dict]:
    """The digests on the digests topic: a third party's copy."""
    consumer = kafka_consumer(
        kafka_as("admin"), auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    consumer.subscribe([DIGESTS_TOPIC])
    try:
        for message in consumer:
            yield json.loads(message.value)
    finally:
        consumer.close()


def test_every_stored_digest_is_on_the_digests_topic(validated: Path) -> None:
    stored = in_store(validated, query="SELECT groupArray(body) FROM faceaudit.digests")
    published = {message["body"] for message in digest_messages()}
    assert stored and set(stored) <= published


def test_an_events_inclusion_proof_checks_without_the_store(
    validated: Path, trusted_keys_file: Path, tmp_path: Path
) -> None:
    event_id = first(validated, "events", "event_id")
    printed = faceaudit("verify", "--clickhouse", f"chdb://{validated}", "--event", event_id)
    assert printed.returncode == 0, printed.stderr
    proof = json.loads(printed.stdout)
    assert proof["event_id"] == event_id and proof["digest"]["key_id"] == "auditor-test"
    kept = tmp_path / "proof.json"
    kept.write_text(printed.stdout)
    checked = faceaudit("verify", "--proof", str(kept), "--keys", str(trusted_keys_file))
    assert checked.returncode == 0, checked.stderr
    assert f"event {event_id} is in batch {proof['batch']}" in checked.stderr
    forged = proof | {"row_hash": "00" * 32}
    kept.write_text(json.dumps(forged))
    refused = faceaudit("verify", "--proof", str(kept), "--keys", str(trusted_keys_file))
    assert refused.returncode == 1
    assert "does not lead to the root the digest signed" in refused.stderr


def test_a_proof_of_an_unknown_event_is_bad_input(validated: Path) -> None:
    result = faceaudit("verify", "--clickhouse", f"chdb://{validated}", "--event", "no-such")
    assert result.returncode == 2 and "no event no-such in the store" in result.stderr


def test_two_workers_each_chain_their_own_digests(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path, trusted_keys_file: Path
) -> None:
    send_fleet(kafka_bootstrap, unique_group, events=6_000, devices=20, violation_rate=0.1)
    # Every worker reads the registry and sets this aside at its own time; the store keeps
    # one row, and each chain's ledger its own.
    with EventProducer(kafka_as("producer")) as producer:
        producer.send_raw(TOPICS["consent"], b"\xff not a consent", b"c-garbage")
    store = tmp_path / "ch"
    run = consume(kafka_bootstrap, store, unique_group, "--workers", "2", "--digest-interval", "1")
    assert run.returncode == 0, run.stderr
    status, findings, summary = verify(store, trusted_keys_file)
    assert (status, findings) == (0, []), summary
    assert "0 rows stored since the last digest" in summary
    chains = in_store(store, query="SELECT groupUniqArray(chain) FROM faceaudit.digests")
    assert sorted(chains) == [f"{unique_group}/0", f"{unique_group}/1"]


def test_rows_stored_before_the_store_had_a_ledger_are_counted_apart(
    copy: Path, trusted_keys_file: Path
) -> None:
    """A store upgraded to the ledger holds rows nothing can verify: said, not hidden."""
    in_store(
        copy,
        "INSERT INTO faceaudit.events SELECT * REPLACE (offset + 1000000 AS offset, "
        "toDateTime64('2020-01-01 00:00:00', 6, 'UTC') AS stored_at) FROM faceaudit.events "
        "LIMIT 2",
    )
    status, findings, summary = verify(copy, trusted_keys_file)
    assert (status, findings) == (0, []), summary
    assert "2 rows were stored before the store had a ledger" in summary
