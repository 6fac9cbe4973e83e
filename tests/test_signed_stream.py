"""Signed registry records on the secured broker: what counts, what is refused, and the opt-out."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import broker_environ, fleet_seed, kafka_as, start_group_at_end
from samples import sample, streamed_at
from signing import TEST_SIGNERS, fleet_signing_keys, key_record, signer, signers

from consumers.batch import Batch
from consumers.judge import Judge
from consumers.key_feed import KeyFeed
from consumers.keyring import KeyRing
from consumers.metrics import PipelineMetrics
from consumers.pipeline import Validator
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.replay import Selection, dead_letters_to_replay, replay_to_kafka
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from faceaudit.keys import publish
from producers.event_producer import EventProducer
from producers.simulate import simulate
from schemas.signatures import SIGNATURE_HEADER, Signer
from schemas.topics import TOPICS

pytestmark = pytest.mark.integration


class Run:
    """One test's processor, deployment, device and the validator's findings about them."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.processor_id = f"p-{tag}"
        self.ids = {"processor_id": self.processor_id, "deployment_id": f"d-{tag}"}
        self.consent = sample("consent", consent_id=f"c-{tag}", processor_id=self.processor_id)
        # A quarter of an hour ago: a test that lets time pass dates events up to 12
        # minutes later, still before the broker's time (AUDIT-CLOCK-SKEW).
        self.event = (
            sample(
                "capture",
                event_id=str(uuid.uuid4()),
                device_id=f"dev-{tag}",
                consent_id=f"c-{tag}",
                event_time=streamed_at() - timedelta(minutes=15),
            )
            | self.ids
        )
        self.rules: list[str] = []
        self.refused: list[dict[str, Any]] = []
        self.dead_letters: list[tuple[str, str, dict[str, str]]] = []
        self.metrics = PipelineMetrics()

    def validate(self, bootstrap: str, group: str, store: Path, **flags: Any) -> None:
        client = open_store(f"chdb://{store}")
        try:
            settings = Settings.resolve(
                {"bootstrap": bootstrap, "group": group, "until_idle": 2.0, **flags},
                environ=broker_environ(),
            )
            Validator(settings, ClickHouseGateway(client), self.metrics).run()
            self.rules = [
                rule
                for (rule,) in client.query(
                    "SELECT rule_id FROM faceaudit.violations WHERE event_id = {e:String}",
                    parameters={"e": self.event["event_id"]},
                ).result_rows
            ]
            self.refused = [
                json.loads(details)
                for (details,) in client.query(
                    "SELECT details FROM faceaudit.violations "
                    "WHERE rule_id = 'REG-UNSIGNED-RECORD' AND processor_id = {p:String}",
                    parameters={"p": self.processor_id},
                ).result_rows
            ]
            self.dead_letters = client.query(
                "SELECT reason, detail, headers FROM faceaudit.dead_letters "
                "WHERE message_key = {k:String}",
                parameters={"k": self.consent["consent_id"]},
            ).result_rows
        finally:
            client.close()


@pytest.fixture
def run(kafka_bootstrap: str, unique_group: str) -> Iterator[Run]:
    start_group_at_end(kafka_bootstrap, unique_group)
    yield Run()


def send(run: Run, consent_sent: Any) -> None:
    """The deployment (signed), the consent as `consent_sent` sends it, then the event."""
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        producer.send_registry("deployment", sample("deployment", **run.ids))
        consent_sent(producer)
        producer.flush(timeout=60)
        producer.send_event("capture", run.event)


def test_a_signed_consent_counts(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    send(run, lambda producer: producer.send_registry("consent", run.consent))
    run.validate(kafka_bootstrap, unique_group, tmp_path / "ch")
    assert (run.rules, run.refused, run.dead_letters) == ([], [], [])
    assert run.metrics.signatures_required._value.get() == 1


def test_an_unsigned_consent_is_refused_kept_and_reported(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    send(run, lambda producer: producer.send_registry("consent", run.consent, signed=False))
    run.validate(kafka_bootstrap, unique_group, tmp_path / "ch")
    assert "FR-CONSENT-MISSING" in run.rules, "the consent was not applied"
    [(reason, detail, _)] = run.dead_letters
    assert reason == "unsigned" and detail.startswith(f"{TOPICS['consent']}[")
    [refused] = run.refused
    assert (refused["record_id"], refused["reason"]) == (run.consent["consent_id"], "unsigned")


def test_a_consent_forged_by_another_processors_principal_is_refused(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Another processor's producer, with its own registered key, grants a consent for p."""
    other = f"{run.processor_id}-other"
    forger = signers([other])[other]

    def forge(producer: EventProducer) -> None:
        producer.send_signed("consent", run.consent, forger)

    send(run, forge)
    run.validate(kafka_bootstrap, unique_group, tmp_path / "ch")
    assert "FR-CONSENT-MISSING" in run.rules
    [(reason, detail, headers)] = run.dead_letters
    assert reason == "bad_signature"
    assert f"key {forger.key_id} is not a processor key of {run.processor_id}" in detail
    assert len(headers[SIGNATURE_HEADER]) == 88, "the signature is kept, in base64"
    [refused] = run.refused
    assert refused["key_id"] == forger.key_id


def test_a_key_registered_after_the_catch_up_is_read_before_the_records_it_signs(
    kafka_bootstrap: str,
) -> None:
    """The feed caught up knowing no key of p; p's key, then its consent, come later."""
    processor_id = f"p-{uuid.uuid4().hex[:10]}"
    consent = sample("consent", consent_id=f"c-{processor_id}", processor_id=processor_id)
    keys = KeyFeed(kafka_as("validator"), KeyRing())
    judge = Judge("cac-2025", Registry())
    feed = RegistryFeed(kafka_as("validator"), judge, PipelineMetrics(), keys=keys)
    try:
        feed.catch_up(lambda batch: None)
        assert signer(processor_id).key_id not in keys.keyring
        publish(kafka_as("operator"), key_record(processor_id))
        with EventProducer(kafka_as("producer"), signers={processor_id: signer(processor_id)}) as p:
            p.send_registry("consent", consent)
        deadline = time.monotonic() + 30
        batch = Batch()
        while judge.registry.consent(consent["consent_id"]) is None:
            if batch.rows["dead_letters"]:
                break
            assert time.monotonic() < deadline, "the consent never arrived"
            feed.apply(feed.fetch(timeout_ms=500), batch)
    finally:
        feed.close()
    assert judge.registry.consent(consent["consent_id"]) == consent
    assert batch.rows["dead_letters"] == [] and batch.rows["violations"] == []


def test_a_replayed_checkpoint_keeps_its_signature(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Sent aside by a size limit far too small, then replayed after the fix: the
    checkpoint comes back with its signature headers, and verifies."""
    store, device = tmp_path / "ch", run.event["device_id"]
    pid = run.processor_id
    with EventProducer(
        kafka_as("producer"), signers=signers([pid]), checkpoint_every=None
    ) as producer:
        producer.send_registry("deployment", sample("deployment", **run.ids))
        producer.send_registry("consent", run.consent)
        producer.flush(timeout=60)
        producer.send_event("capture", run.event)
        producer.send_checkpoint(device, pid)
    run.validate(kafka_bootstrap, unique_group, store, max_message_bytes=64)
    assert stored_checkpoints(store, device) == []
    client = open_store(f"chdb://{store}")
    try:
        letters = [
            letter
            for letter in dead_letters_to_replay(client, Selection(reason="oversized"))
            if letter.key == device.encode()
        ]
    finally:
        client.close()
    assert len(letters) == 2, "the event and its checkpoint"
    assert replay_to_kafka(kafka_as("producer"), letters) == {TOPICS["capture"]: 2}
    run.validate(kafka_bootstrap, unique_group, store)
    [(seq, _, key_id, valid, _)] = stored_checkpoints(store, device)
    assert (seq, key_id, valid) == (0, signer(pid).key_id, True)
    assert run.rules == []


def test_trust_none_applies_unsigned_records(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    send(run, lambda producer: producer.send_registry("consent", run.consent, signed=False))
    run.validate(kafka_bootstrap, unique_group, tmp_path / "ch", trust="none")
    assert (run.rules, run.refused, run.dead_letters) == ([], [], [])
    assert run.metrics.signatures_required._value.get() == 0


# -- checkpoints ------------------------------------------------------------------------


def stored_checkpoints(store: Path, device_id: str) -> list[tuple[Any, ...]]:
    client = open_store(f"chdb://{store}")
    try:
        return client.query(
            "SELECT device_seq, head_hash, key_id, valid, problem FROM faceaudit.checkpoints "
            "WHERE device_id = {d:String} ORDER BY offset",
            parameters={"d": device_id},
        ).result_rows
    finally:
        client.close()


def test_checkpoints_are_stored_with_their_verdicts(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Signed by the processor, by the device, by another device, and not at all."""
    device = run.event["device_id"]
    own, other = key_record(run.processor_id), key_record(f"{run.processor_id}-cam")
    device_key = own | {"key_id": f"{own['key_id']}-dev", "owner": "device", "device_id": device}
    wrong_device = other | {
        "key_id": f"{other['key_id']}-dev",
        "owner": "device",
        "processor_id": run.processor_id,
        "device_id": f"{device}-b",
    }
    publish(kafka_as("operator"), own, device_key, wrong_device)
    as_processor = signer(run.processor_id)
    as_device = Signer(device_key["key_id"], as_processor.private_key)
    as_other_device = Signer(wrong_device["key_id"], signer(f"{run.processor_id}-cam").private_key)
    with EventProducer(kafka_as("producer"), signers={run.processor_id: as_processor}) as producer:
        producer.send_registry("deployment", sample("deployment", **run.ids))
        producer.send_registry("consent", run.consent)
        producer.flush(timeout=60)
        producer.send_event("capture", run.event)
        producer.send_checkpoint(device, run.processor_id)
        head = producer.chain(device)
        for signed_by in (as_device, as_other_device, None):
            checkpoint = sample(
                "checkpoint",
                checkpoint_id=str(uuid.uuid4()),
                processor_id=run.processor_id,
                device_id=device,
                device_seq=0,
                head_hash=head.last_payload_sha256,
            )
            producer.send_signed("checkpoint", checkpoint, signed_by)
    store = tmp_path / "ch"
    run.validate(kafka_bootstrap, unique_group, store)
    rows = stored_checkpoints(store, device)
    assert [(seq, digest) for seq, digest, *_ in rows] == [(0, head.last_payload_sha256)] * 5
    assert [(key_id, valid) for _, _, key_id, valid, _ in rows] == [
        (as_processor.key_id, True),
        (as_device.key_id, True),
        (as_other_device.key_id, False),
        (None, False),
        (as_processor.key_id, True),  # the producer's own at close
    ]
    assert "is not a processor key of" in rows[2][4] and "must be signed" in rows[3][4]
    bad = [
        json.loads(details)
        for (details,) in open_store(f"chdb://{store}")
        .query(
            "SELECT details FROM faceaudit.violations WHERE rule_id = 'AUDIT-CHECKPOINT-BAD' "
            "AND device_id = {d:String} ORDER BY offset",
            parameters={"d": device},
        )
        .result_rows
    ]
    assert [(b["reason"], b["key_id"]) for b in bad] == [
        ("bad_signature", as_other_device.key_id),
        ("unsigned", None),
    ]
    assert run.rules == [], "checkpoints are not events"


def test_the_stream_reports_an_altered_head_and_a_device_that_stopped_signing(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Three devices of one processor: one checkpoints as it should; one's checkpoint
    vouches for another head than the event sent; one sends events over more than the
    window with no checkpoint."""
    pid, t0 = run.processor_id, run.event["event_time"]
    ok, altered, silent = (f"{run.event['device_id']}-{name}" for name in ("ok", "alt", "mute"))

    def event(device: str, seconds: float) -> dict[str, Any]:
        return run.event | {
            "event_id": str(uuid.uuid4()),
            "device_id": device,
            "event_time": t0 + timedelta(seconds=seconds),
        }

    sent: dict[str, list[dict[str, Any]]] = {ok: [], altered: [], silent: []}
    with EventProducer(kafka_as("producer")) as unsigned:  # it stopped signing checkpoints
        for seconds in (0, 1, 11 * 60):
            sent[silent].append(event(silent, seconds))
            unsigned.send_event("capture", sent[silent][-1])
    with EventProducer(
        kafka_as("producer"), signers=signers([pid]), checkpoint_every=3
    ) as producer:
        producer.send_registry("deployment", sample("deployment", **run.ids))
        producer.send_registry("consent", run.consent)
        producer.flush(timeout=60)
        for n in range(2):
            sent[altered].append(event(altered, n))
            producer.send_event("capture", sent[altered][-1])
        claimed = sample(
            "checkpoint",
            checkpoint_id=str(uuid.uuid4()),
            processor_id=pid,
            device_id=altered,
            device_seq=1,
            head_hash="e" * 64,
        )
        producer.send_signed("checkpoint", claimed, signer(pid))
        for seconds in (*range(6), 11 * 60):
            sent[ok].append(event(ok, seconds))
            producer.send_event("capture", sent[ok][-1])
    store = tmp_path / "ch"
    run.validate(kafka_bootstrap, unique_group, store)
    client = open_store(f"chdb://{store}")
    try:
        found = client.query(
            "SELECT rule_id, event_id, details FROM faceaudit.violations "
            "WHERE processor_id = {p:String} ORDER BY rule_id",
            parameters={"p": pid},
        ).result_rows
        checkpoints = client.query(
            "SELECT device_id, device_seq, valid FROM faceaudit.checkpoints "
            "WHERE processor_id = {p:String} ORDER BY device_id, offset",
            parameters={"p": pid},
        ).result_rows
    finally:
        client.close()
    assert [(rule, event_id) for rule, event_id, _ in found] == [
        ("AUDIT-CHECKPOINT-MISMATCH", sent[altered][1]["event_id"]),
        ("AUDIT-UNCHECKPOINTED", sent[silent][0]["event_id"]),
    ]
    assert json.loads(found[0][2])["head_hash"] == "e" * 64
    assert json.loads(found[1][2])["first_device_seq"] == 0
    assert checkpoints == [
        (altered, 1, True),  # the claimed head: validly signed, wrong
        (altered, 1, True),  # the producer's own, at close: already covered
        (ok, 2, True),
        (ok, 5, True),
        (ok, 6, True),  # at close
    ]


def test_a_restart_resumes_the_uncovered_runs_from_the_store(
    run: Run, kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    """Uncovered events stored by one run are held against the window by the next,
    and a run reported once is not reported again after a restart."""
    device, t0 = f"{run.event['device_id']}-resume", run.event["event_time"]
    store = tmp_path / "ch"

    def send(producer: EventProducer, seconds: float) -> dict[str, Any]:
        record = run.event | {
            "event_id": str(uuid.uuid4()),
            "device_id": device,
            "event_time": t0 + timedelta(seconds=seconds),
        }
        producer.send_event("capture", record)
        return record

    def unchecked() -> list[dict[str, Any]]:
        client = open_store(f"chdb://{store}")
        try:
            rows = client.query(
                "SELECT event_id, details FROM faceaudit.violations "
                "WHERE rule_id = 'AUDIT-UNCHECKPOINTED' AND device_id = {d:String}",
                parameters={"d": device},
            ).result_rows
        finally:
            client.close()
        return [{"event_id": event_id, **json.loads(details)} for event_id, details in rows]

    with EventProducer(kafka_as("producer"), signers=signers([run.processor_id])) as producer:
        producer.send_registry("deployment", sample("deployment", **run.ids))
        producer.send_registry("consent", run.consent)
    producer = EventProducer(kafka_as("producer"))  # this device signs no checkpoints
    try:
        first = send(producer, 0)
        send(producer, 1)
        producer.flush(timeout=60)
        run.validate(kafka_bootstrap, unique_group, store)
        assert unchecked() == [], "the window has not ended"
        send(producer, 11 * 60)
        producer.flush(timeout=60)
        run.validate(kafka_bootstrap, unique_group, store)
        [reported] = unchecked()
        assert (reported["event_id"], reported["first_device_seq"]) == (first["event_id"], 0)
        assert reported["uncovered_events"] == 3, "the two stored before the restart count"
        send(producer, 12 * 60)
        producer.flush(timeout=60)
        run.validate(kafka_bootstrap, unique_group, store)
        assert len(unchecked()) == 1, "reported once, restart or not"
    finally:
        producer.close()


def fleet_findings(bootstrap: str, group: str, store: Path, seed: int) -> Counter[str]:
    """What a validator reading to the end finds about the fleet of `seed`, by rule."""
    client = open_store(f"chdb://{store}")
    try:
        settings = Settings.resolve(
            {"bootstrap": bootstrap, "group": group, "until_idle": 3.0},
            environ=broker_environ(),
        )
        Validator(settings, ClickHouseGateway(client)).run()
        return Counter(
            dict(
                client.query(
                    "SELECT rule_id, count() FROM faceaudit.violations "
                    "WHERE processor_id LIKE {p:String} GROUP BY rule_id",
                    parameters={"p": f"%-s{seed}"},
                ).result_rows
            )
        )
    finally:
        client.close()


SOME = -1
"""In `intended`: at least one."""


@pytest.mark.parametrize(
    ("events", "devices", "faults", "intended"),
    [
        pytest.param(
            3_000,
            20,
            {"tamper_rate": 0.01, "registry_faults": True},
            {
                "AUDIT-CHECKPOINT-MISMATCH": SOME,
                "REG-UNSIGNED-RECORD": 1,
                "REG-CONSENT-REWRITTEN": 1,
            },
            id="tampered-heads-and-registry-faults",
        ),
        # Three devices: each sends well over 1,000 events after a quarter of the stream.
        pytest.param(
            6_000,
            3,
            {"skew_rate": 0.002, "stop_signing": True},
            {"AUDIT-CLOCK-SKEW": SOME, "AUDIT-UNCHECKPOINTED": 1},
            id="a-skewed-clock-and-a-device-that-stops-signing",
        ),
    ],
)
def test_the_simulated_fleets_trust_faults_are_found_exactly(
    kafka_bootstrap: str,
    unique_group: str,
    tmp_path: Path,
    events: int,
    devices: int,
    faults: dict[str, Any],
    intended: dict[str, int],
) -> None:
    """The trust faults a signing fleet was made to commit, and no other finding."""
    seed = fleet_seed()
    start_group_at_end(kafka_bootstrap, unique_group)
    report = simulate(
        kafka_as("producer"),
        events=events,
        devices=devices,
        seed=seed,
        violation_rate=0.0,
        progress=False,
        signing_keys=fleet_signing_keys,
        **faults,
    )
    found = fleet_findings(kafka_bootstrap, unique_group, tmp_path / "ch", seed)
    for rule, count in intended.items():
        made = report.intended_violations[rule]
        assert made > 0 if count == SOME else made == count, (rule, made)
    assert found == report.intended_violations
