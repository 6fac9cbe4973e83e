"""`faceaudit dead-letters list|replay`, and the queries and resend behind them.

A store seeded through the validator's own sink answers the listing and
selection tests (in process, then through the command line: chDB lets one
process open a store at a time, so each test closes it before the next
opens it). The replay test runs the whole loop on the real broker: events
dead-lettered by a too-small size limit are replayed after the "fix" and
stored; a message that is still bad becomes a dead letter again; no row is
ever deleted.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import consume, faceaudit, kafka_as, start_group_at_end, store
from kafka.consumer.fetcher import ConsumerRecord
from samples import sample
from signing import TEST_SIGNERS, signer
from test_poison import assert_one_clear_error, dead_letter_rows

from consumers.batch import Batch, Row
from consumers.dead_letters import dead_letter_row, original_headers
from consumers.replay import (
    DeadLetter,
    Selection,
    dead_letters_to_replay,
    list_dead_letters,
    replay,
    replay_to_kafka,
)
from consumers.sink import ClickHouseSink
from consumers.store import open_store
from core.errors import FaceauditError
from faceaudit.broker import free_port
from producers.event_producer import EventProducer
from schemas import codec
from schemas.signatures import SIGNATURE_HEADER
from schemas.topics import TOPICS

EVENTS, CONSENTS = TOPICS["capture"], TOPICS["consent"]
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def letter_row(
    topic: str, partition: int, offset: int, key: bytes | None, raw: bytes, reason: str, minute: int
) -> Row:
    """A dead-letters row as the validator builds it, received `minute` minutes after T0."""
    record = ConsumerRecord(
        topic, partition, 0, offset, 0, 0, key, raw, [("trace", b"t-1")], None, 0, len(raw), 0
    )
    row = dead_letter_row(record, reason, f"{topic}[{partition}]@{offset}: seeded\nsecond line")
    row["received_at"] = T0 + timedelta(minutes=minute)
    return row


# Positions (topic, partition, offset) -> (key, raw, reason, minute received).
SEEDED = {
    (EVENTS, 0, 5): (b"dev-a", b"\x00junk", "bad_magic", 1),
    (EVENTS, 1, 7): (None, codec.MAGIC + bytes(8) + b"\xff\xfe", "unknown_fingerprint", 2),
    (CONSENTS, 0, 3): (b"\xff\xfe", b"\x80\x81", "bad_magic", 3),
    (EVENTS, 0, 9): (b"dev-a\n", b"\xc3\x01" + bytes(30), "trailing_bytes", 5),
}
DUPLICATE = (EVENTS, 0, 5)  # stored a second time, at minute 4, in another batch


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding SEEDED, written by the validator's sink, plus one duplicate row."""
    path = tmp_path_factory.mktemp("dead-letters") / "clickhouse"
    client = open_store(f"chdb://{path}")
    try:
        sink = ClickHouseSink(client)
        first, second = Batch(), Batch()
        for position, (key, raw, reason, minute) in SEEDED.items():
            target = second if position == (EVENTS, 0, 9) else first
            target.add("dead_letters", letter_row(*position, key, raw, reason, minute), *position)
        key, raw, reason, _ = SEEDED[DUPLICATE]
        second.add("dead_letters", letter_row(*DUPLICATE, key, raw, reason, 4), *DUPLICATE)
        sink.write(first)
        sink.write(second)
    finally:
        client.close()
    return path


def positions(letters: list[DeadLetter]) -> list[tuple[str, int, int]]:
    return [(letter.topic, letter.partition, letter.offset) for letter in letters]


# -- queries, in process -----------------------------------------------------------------


def test_listing_is_newest_first_with_sizes_and_keys_as_bytes(seeded: Path) -> None:
    with store(seeded) as client:
        letters = list_dead_letters(client, Selection(), limit=10)
    assert positions(letters) == [
        (EVENTS, 0, 9),
        DUPLICATE,
        (CONSENTS, 0, 3),
        (EVENTS, 1, 7),
        DUPLICATE,
    ]
    for letter in letters:
        key, raw, reason, _ = SEEDED[(letter.topic, letter.partition, letter.offset)]
        assert (letter.key, letter.size, letter.reason, letter.raw) == (key, len(raw), reason, None)
    assert letters[0].received_at == T0 + timedelta(minutes=5)


def test_listing_with_bytes_limit_and_filters(seeded: Path) -> None:
    with store(seeded) as client:
        newest = list_dead_letters(client, Selection(), limit=1, with_raw=True)
        bad_magic = list_dead_letters(client, Selection(reason="bad_magic"), limit=10)
        on_match = list_dead_letters(client, Selection(topic=CONSENTS), limit=10)
        since = list_dead_letters(client, Selection(since=T0 + timedelta(minutes=3)), limit=10)
    assert [letter.raw for letter in newest] == [SEEDED[(EVENTS, 0, 9)][1]]
    assert positions(bad_magic) == [DUPLICATE, (CONSENTS, 0, 3), DUPLICATE]
    assert positions(on_match) == [(CONSENTS, 0, 3)]
    # --since is inclusive: the row received at exactly minute 3 is in.
    assert positions(since) == [(EVENTS, 0, 9), DUPLICATE, (CONSENTS, 0, 3)]


def test_replay_selection_is_in_offset_order_once_per_position_with_bytes(seeded: Path) -> None:
    with store(seeded) as client:
        letters = list(dead_letters_to_replay(client, Selection()))
        capture_only = list(dead_letters_to_replay(client, Selection(topic=EVENTS)))
        later = list(dead_letters_to_replay(client, Selection(since=T0 + timedelta(minutes=4))))
    assert positions(letters) == sorted(SEEDED)
    for letter in letters:
        key, raw, _, _ = SEEDED[(letter.topic, letter.partition, letter.offset)]
        assert (letter.key, letter.raw) == (key, raw)
    assert positions(capture_only) == sorted(p for p in SEEDED if p[0] == EVENTS)
    assert positions(later) == [DUPLICATE, (EVENTS, 0, 9)]


def test_replay_sends_topic_bytes_key_and_headers_and_counts_by_topic(seeded: Path) -> None:
    sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
    with store(seeded) as client:
        counts = replay(
            dead_letters_to_replay(client, Selection()), lambda *message: sent.append(message)
        )
    headers = [("trace", b"t-1")]
    assert sent == [(p[0], SEEDED[p][1], SEEDED[p][0], headers) for p in sorted(SEEDED)]
    assert counts == {EVENTS: 3, CONSENTS: 1}


def test_a_dead_letters_signature_comes_back_byte_for_byte() -> None:
    """The table keeps a signature in base64; a replay sends the bytes the producer sent."""
    signed = signer("p-1").sign(b"\xc3\x01record").headers()
    record = ConsumerRecord(EVENTS, 0, 0, 1, 0, 0, b"k", b"\x00", signed, None, 0, 1, 0)
    row = dead_letter_row(record, "bad_signature", "seeded")
    assert (
        row["headers"][SIGNATURE_HEADER]
        == base64.b64encode(dict(signed)[SIGNATURE_HEADER]).decode()
    )
    assert original_headers(row["headers"]) == signed


def test_replay_refuses_a_letter_listed_without_its_bytes(seeded: Path) -> None:
    with store(seeded) as client:
        letters = list_dead_letters(client, Selection(), limit=1)
    with pytest.raises(ValueError, match="without its bytes"):
        replay(letters, lambda *_: None)


# -- the command line --------------------------------------------------------------------


def test_list_table(seeded: Path) -> None:
    result = faceaudit("dead-letters", "list", "--clickhouse", f"chdb://{seeded}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["POSITION", "REASON", "KEY", "SIZE", "RECEIVED_AT", "DETAIL"]
    # One line per row although a key and every detail hold a newline; newest first.
    assert len(lines) == 1 + len(SEEDED) + 1
    newest = lines[1].split()
    assert newest[:5] == [
        f"{EVENTS}[0]@9",
        "trailing_bytes",
        "dev-a\\n",
        "32",
        "2026-03-01T08:05:00Z",
    ]
    assert lines[3].split()[:3] == [f"{CONSENTS}[0]@3", "bad_magic", "\\xff\\xfe"]
    assert lines[4].split()[2] == "-"  # no key


def test_list_jsonl_carries_the_exact_bytes(seeded: Path) -> None:
    result = faceaudit(
        "dead-letters",
        "list",
        "--clickhouse",
        f"chdb://{seeded}",
        "--format",
        "jsonl",
        "--topic",
        EVENTS,
        "--limit",
        "2",
    )
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["position"] for o in objects] == [f"{EVENTS}[0]@9", f"{EVENTS}[0]@5"]
    for obj in objects:
        key, raw, reason, _ = SEEDED[(obj["topic"], obj["partition"], obj["offset"])]
        assert base64.b64decode(obj["raw_base64"]) == raw
        assert (obj["key"], obj["reason"], obj["size"]) == (key.decode(), reason, len(raw))
        assert obj["detail"].endswith("seeded\nsecond line")


def test_list_with_nothing_matching(seeded: Path) -> None:
    result = faceaudit(
        "dead-letters", "list", "--clickhouse", f"chdb://{seeded}", "--reason", "no_such_reason"
    )
    assert (result.returncode, result.stdout) == (0, "")
    assert "no dead letters match" in result.stderr


def test_replay_dry_run_counts_each_position_once(seeded: Path) -> None:
    result = faceaudit(
        "dead-letters",
        "replay",
        "--clickhouse",
        f"chdb://{seeded}",
        "--reason",
        "bad_magic",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"would replay 2 dead letters ({CONSENTS} 1, {EVENTS} 1); dry run, nothing sent"
    )


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        # 08:04 UTC: the duplicate row (minute 4) and the newest (minute 5).
        ("2026-03-01T16:04:00+08:00", f"would replay 2 dead letters ({EVENTS} 2)"),
        ("2026-03-01T08:05:00", f"would replay 1 dead letter ({EVENTS} 1)"),  # no zone: UTC
        ("2026-03-01T08:05:00.000001Z", "no dead letters match"),
    ],
)
def test_replay_since_reads_the_zone(seeded: Path, since: str, expected: str) -> None:
    result = faceaudit(
        "dead-letters", "replay", "--clickhouse", f"chdb://{seeded}", "--since", since, "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected), result.stdout


def test_bad_since_is_a_usage_error(seeded: Path) -> None:
    result = faceaudit("dead-letters", "list", "--since", "yesterday-ish")
    assert result.returncode == 2
    assert "not an ISO-8601 time" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_to_an_unreachable_broker_is_one_clear_error(seeded: Path) -> None:
    port = free_port()
    result = faceaudit(
        "dead-letters",
        "replay",
        "--clickhouse",
        f"chdb://{seeded}",
        "--bootstrap",
        f"127.0.0.1:{port}",
        FACEAUDIT_KAFKA_TIMEOUT="3",
        FACEAUDIT_KAFKA_USER="producer",
        FACEAUDIT_KAFKA_PASSWORD="not-used",
    )
    assert_one_clear_error(result, "cannot reach Kafka", f"127.0.0.1:{port}")
    assert "not-used" not in result.stderr


# -- replay on the real broker -------------------------------------------------------------


def send_events(bootstrap: str, tag: str, device: str, count: int) -> dict[str, str]:
    """Registry records, `count` captures, then one garbage message; payload hashes by event id."""
    ids = {"deployment_id": f"d-{tag}", "processor_id": f"p-{tag}"}
    consent = sample("consent", consent_id=f"c-{tag}", processor_id=f"p-{tag}")
    sent: dict[str, str] = {}
    # No checkpoints: the test counts the messages of the events topic.
    with EventProducer(
        kafka_as("producer"), signers=TEST_SIGNERS, checkpoint_every=None
    ) as producer:
        producer.send_registry("deployment", sample("deployment", **ids))
        producer.send_registry("consent", consent)
        for _ in range(count):
            record = sample(
                "capture",
                event_id=str(uuid.uuid4()),
                device_id=device,
                consent_id=f"c-{tag}",
                **ids,
            )
            producer.send_event("capture", record)
            sent[record["event_id"]] = producer.chain(device).last_payload_sha256
        producer.send_raw(EVENTS, f"garbage-{tag}".encode(), device.encode())
    return sent


def test_replay_after_a_fix_stores_the_events_and_keeps_the_rows(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    data, device = tmp_path / "clickhouse", f"replay-dev-{tag}"
    dsn = f"chdb://{data}"
    start_group_at_end(kafka_bootstrap, unique_group)
    digests = send_events(kafka_bootstrap, tag, device, count=3)

    # A limit far too small sends every event aside ("the bug"); the garbage is just bad.
    broken = consume(kafka_bootstrap, data, unique_group, FACEAUDIT_MAX_MESSAGE_BYTES="64")
    assert broken.returncode == 0, broken.stderr
    with store(data) as client:
        before = dead_letter_rows(client, EVENTS)
        assert client.query("SELECT count() FROM faceaudit.events").result_rows == [(0,)]
    reasons = sorted(rows[0][2] for rows in before.values())
    assert reasons == ["bad_magic", "oversized", "oversized", "oversized"]

    replayed = faceaudit(
        "dead-letters",
        "replay",
        "--clickhouse",
        dsn,
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        EVENTS,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"replayed 4 dead letters to {kafka_bootstrap} ({EVENTS} 4)")

    fixed = consume(kafka_bootstrap, data, unique_group)  # the default limit: "the fix"
    assert fixed.returncode == 0, fixed.stderr
    with store(data) as client:
        events = client.query(
            "SELECT event_id, payload_sha256, offset FROM faceaudit.events"
        ).result_rows
        after = dead_letter_rows(client, EVENTS)
    # The same bytes came back: same events, same payload hashes, at new offsets.
    assert {event_id: digest for event_id, digest, _ in events} == digests
    assert len(events) == len(digests)
    assert min(offset for *_, offset in events) > max(offset for _, _, offset in before)
    # Nothing was deleted; the garbage is a dead letter twice now, at two offsets.
    assert {p: rows for p, rows in after.items() if p in before} == before
    again = [rows for p, rows in after.items() if p not in before]
    assert [[(raw, reason) for raw, _, reason in rows] for rows in again] == [
        [(f"garbage-{tag}".encode(), "bad_magic")]
    ]


def oversized_letter(size: int) -> DeadLetter:
    return DeadLetter(EVENTS, 0, 1, b"dev-big", size, "oversized", "", T0, bytes(size))


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(13 * 1024 * 1024, id="refused-by-the-broker-after-the-send"),  # over 12 MiB
        pytest.param(17 * 1024 * 1024, id="refused-by-the-producer-at-the-send"),  # over 16 MiB
    ],
)
def test_a_refused_replay_reports_how_many_sends_failed_and_the_first_error(
    kafka_bootstrap: str, size: int
) -> None:
    with pytest.raises(FaceauditError) as raised:
        replay_to_kafka(kafka_as("producer"), [oversized_letter(size)])
    message = str(raised.value)
    assert message.startswith("replay incomplete: 1 send(s) to Kafka failed; first error: ")
    assert "MessageSizeTooLargeError" in message
    assert message.endswith("the dead letters are still in the table")
