"""Real identifiers are judged as sent and stored masked (AUDIT-RAW-IDENTIFIER)."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import broker_environ, kafka_as, start_group_at_end
from samples import sample, streamed_at
from signing import TEST_SIGNERS

from consumers.masking import MASK_PREFIX, IdentifierMask, load_mask_key
from consumers.pipeline import Validator
from consumers.settings import Settings
from consumers.store import open_store
from consumers.store_gateway import ClickHouseGateway
from core.errors import FaceauditError
from producers.event_producer import EventProducer

RESIDENT_ID = "11010519491231002X"
MOBILE = "13800138000"
KEY = bytes(range(32))


def test_only_identifier_like_values_are_masked_and_alike() -> None:
    table = pa.table(
        {
            "subject_ref": [RESIDENT_ID, "s-1", None, RESIDENT_ID, "110105194912310021"],
            "operator_id": ["op-1", MOBILE, None, None, "12800138000"],
            "purpose": ["payment"] * 5,
        }
    )
    masked = IdentifierMask(KEY).table(table).to_pydict()
    subjects, operators = masked["subject_ref"], masked["operator_id"]
    assert subjects[0].startswith(MASK_PREFIX) and len(subjects[0]) == len(MASK_PREFIX) + 32
    assert subjects[0] == subjects[3], "the same value, the same mask"
    assert subjects[1:3] == ["s-1", None] and subjects[4] == "110105194912310021"
    assert operators[1].startswith(MASK_PREFIX) and operators[1] != subjects[0]
    assert [operators[0], operators[2], operators[4]] == ["op-1", None, "12800138000"]
    assert masked["purpose"] == table.column("purpose").to_pylist()
    assert RESIDENT_ID not in json.dumps(masked) and MOBILE not in json.dumps(masked)


def test_another_key_gives_another_mask_and_a_table_without_the_fields_is_left_alone() -> None:
    first, second = IdentifierMask(KEY), IdentifierMask(bytes(32))
    assert first.value(RESIDENT_ID) != second.value(RESIDENT_ID)
    captures = pa.table({"subject_ref": [MOBILE]})  # a capture has no operator_id
    assert first.table(captures).column("subject_ref")[0].as_py() == first.value(MOBILE)
    other = pa.table({"purpose": ["payment"]})
    assert first.table(other) is other
    with pytest.raises(ValueError, match="16 bytes"):
        IdentifierMask(b"short")


def test_the_key_file_is_made_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "mask.key"
    key = load_mask_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_mask_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["mask.key"], "no draft left behind"


def test_a_key_file_others_can_read_or_too_short_is_refused(tmp_path: Path) -> None:
    open_key = tmp_path / "open.key"
    open_key.write_bytes(KEY)
    open_key.chmod(0o644)
    with pytest.raises(FaceauditError, match=f"can be read by others.*chmod 600 {open_key}"):
        load_mask_key(open_key)
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    short.chmod(0o600)
    with pytest.raises(FaceauditError, match="holds 3 bytes"):
        load_mask_key(short)


@pytest.mark.integration
def test_the_validator_stores_a_real_identifier_masked_and_reports_it(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    ids = {"processor_id": f"p-{tag}", "deployment_id": f"d-{tag}"}
    consent = sample(
        "consent", consent_id=f"c-{tag}", subject_ref=RESIDENT_ID, processor_id=ids["processor_id"]
    )
    event_id = str(uuid.uuid4())
    capture = sample(
        "capture",
        event_id=event_id,
        event_time=streamed_at(),
        device_id=f"dev-{tag}",
        subject_ref=RESIDENT_ID,
        consent_id=f"c-{tag}",
        **ids,
    )
    start_group_at_end(kafka_bootstrap, unique_group)
    with EventProducer(kafka_as("producer"), signers=TEST_SIGNERS) as producer:
        producer.send_registry("deployment", sample("deployment", **ids))
        producer.send_registry("consent", consent)
        producer.send_event("capture", capture)
        producer.flush(timeout=60)
    key_file = tmp_path / "mask.key"
    client = open_store(f"chdb://{tmp_path / 'ch'}")
    try:
        settings = Settings.resolve(
            {
                "bootstrap": kafka_bootstrap,
                "group": unique_group,
                "until_idle": 2.0,
                "mask_key_file": str(key_file),
            },
            environ=broker_environ(),
        )
        Validator(settings, ClickHouseGateway(client)).run()
        [(stored,)] = client.query(
            "SELECT subject_ref FROM faceaudit.events WHERE event_id = {e:String}",
            parameters={"e": event_id},
        ).result_rows
        found = client.query(
            "SELECT rule_id, details FROM faceaudit.violations WHERE event_id = {e:String}",
            parameters={"e": event_id},
        ).result_rows
    finally:
        client.close()
    assert stored == IdentifierMask(load_mask_key(key_file)).value(RESIDENT_ID)
    assert [rule for rule, _ in found] == ["AUDIT-RAW-IDENTIFIER"], "its consent matched as sent"
    details = json.loads(found[0][1])
    assert details == {"fields": ["subject_ref"], "identifiers": ["resident identity number"]}
