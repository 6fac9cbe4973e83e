"""Secured Kafka: the clients' security settings, and the local broker's refusals.

The session broker (conftest.py) is `faceaudit broker start`'s: SASL_SSL with
SCRAM users, ACLs, no access where no ACL is found. Each refusal must reach
the user as one clear line naming who was refused what, never the password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from helpers import faceaudit, kafka_as

from consumers.settings import Settings
from core.clients import KafkaConfig, kafka_consumer, kafka_producer, refusal
from core.errors import FaceauditError
from core.local_kafka import CLIENT_FILE
from producers.event_producer import EventProducer, ProducerError
from schemas.topics import EVENTS_TOPIC, KEYS_TOPIC, VIOLATION_TOPIC

SECRET = "s3cret-Pa55word"

# ------------------------------------------------------------ configuration


def test_a_user_means_sasl_ssl_with_scram_and_the_password_stays_out_of_the_repr() -> None:
    config = KafkaConfig("h:9093", user="validator", password=SECRET, ca_file=None)
    options = config.security_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "validator"
    assert options["ssl_check_hostname"] is True
    assert SECRET not in repr(config)


def test_mutual_tls_passes_the_client_certificate(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("c.pem", "k.pem", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("x")
    config = KafkaConfig("h:9093", ca_file=str(ca), cert_file=str(cert), key_file=str(key))
    options = config.security_options()
    assert options["security_protocol"] == "SSL"
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (str(cert), str(key))


def test_no_credentials_builds_no_client_and_says_how_to_give_them() -> None:
    with pytest.raises(FaceauditError, match="no Kafka credentials for h:9093") as raised:
        KafkaConfig("h:9093").security_options()
    assert "--kafka-security-protocol PLAINTEXT" in str(raised.value)
    assert KafkaConfig("h:9093", security_protocol="plaintext").security_options() == {
        "security_protocol": "PLAINTEXT"
    }


def test_settings_take_the_kafka_variables_and_never_show_the_password(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET + "\n")
    environ = {
        "FACEAUDIT_BROKER_HOME": str(tmp_path),
        "FACEAUDIT_BOOTSTRAP": "kafka.example:9093",
        "FACEAUDIT_KAFKA_USER": "auditor",
        "FACEAUDIT_KAFKA_PASSWORD_FILE": str(password_file),
        "FACEAUDIT_KAFKA_CA_FILE": "/etc/ssl/company-ca.pem",
    }
    settings = Settings.resolve({}, environ)
    kafka = settings.kafka
    assert (kafka.protocol, kafka.user, kafka.password) == ("SASL_SSL", "auditor", SECRET)
    assert kafka.ca_file == "/etc/ssl/company-ca.pem"
    from_env = Settings.resolve({}, {**environ, "FACEAUDIT_KAFKA_PASSWORD": SECRET})
    assert SECRET not in repr(settings) + repr(from_env) + repr(from_env.kafka)


def test_the_local_broker_is_found_only_when_nothing_else_is_given(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "pw").write_text(SECRET)
    description = {
        "bootstrap": "127.0.0.1:19092",
        "ca_file": str(tmp_path / "ca.pem"),
        "users": {
            name: {"role": name, "password_file": str(tmp_path / "kafka" / "pw")}
            for name in ("validator", "producer")
        },
    }
    (tmp_path / CLIENT_FILE).write_text(json.dumps(description))
    environ = {"FACEAUDIT_BROKER_HOME": str(tmp_path)}

    found = Settings.resolve({}, environ, role="producer")
    assert (found.bootstrap, found.kafka_user, found.kafka.password) == (
        "127.0.0.1:19092",
        "producer",
        SECRET,
    )
    assert Settings.resolve({"bootstrap": "127.0.0.1:19092"}, environ).kafka_user == "validator"
    assert Settings.resolve({"bootstrap": "elsewhere:9093"}, environ).kafka_user is None
    assert Settings.resolve({"kafka_user": "me"}, environ).kafka_password_file is None


# ------------------------------------------------------------- the broker


def test_a_client_without_credentials_is_refused_with_a_clear_message(
    kafka_bootstrap: str,
) -> None:
    anonymous = KafkaConfig(kafka_bootstrap, timeout=2, security_protocol="PLAINTEXT")
    with pytest.raises(FaceauditError) as raised:
        kafka_producer(anonymous)
    assert str(raised.value).startswith(f"cannot reach Kafka at {kafka_bootstrap}")
    assert "connected with PLAINTEXT" in str(raised.value)

    run = faceaudit(
        "simulate", "--bootstrap", kafka_bootstrap, "--events", "1", "--no-progress",
        FACEAUDIT_KAFKA_SECURITY_PROTOCOL="PLAINTEXT", FACEAUDIT_KAFKA_TIMEOUT="2",
    )  # fmt: skip
    assert run.returncode == 1
    assert "faceaudit: error: cannot reach Kafka" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_wrong_password_is_refused_naming_the_user_not_the_password(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    wrong = dataclasses.replace(kafka_as("validator", timeout=3), password=SECRET)
    with pytest.raises(FaceauditError) as raised:
        kafka_consumer(wrong)
    message = str(raised.value)
    assert message.startswith(f"Kafka at {kafka_bootstrap} refused user 'validator': ")
    assert message.endswith("(unknown user or wrong password)")
    assert SECRET not in message

    run = faceaudit(
        "consume", "--bootstrap", kafka_bootstrap, "--clickhouse", f"chdb://{tmp_path / 'ch'}",
        "--group", unique_group, "--until-idle", "1", "--kafka-user", "validator",
        "--kafka-ca-file", wrong.ca_file or "",
        FACEAUDIT_KAFKA_PASSWORD=SECRET, FACEAUDIT_KAFKA_TIMEOUT="3",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert f"error: Kafka at {kafka_bootstrap} refused user 'validator'" in run.stderr
    assert SECRET not in run.stderr + run.stdout


def test_a_producer_writing_the_violations_topic_is_refused(kafka_bootstrap: str) -> None:
    producer = EventProducer(kafka_as(user="producer-bank"))
    try:
        with pytest.raises(ProducerError) as raised:
            producer.send_raw(VIOLATION_TOPIC, b"a forged finding", key=b"v-1")
            producer.flush(timeout=30)
    finally:
        with contextlib.suppress(ProducerError):
            producer.close(timeout=10)
    message = str(raised.value)
    assert (
        f"Kafka at {kafka_bootstrap} refused user 'producer-bank' to write "
        f"{VIOLATION_TOPIC}: no ACL allows it"
    ) in message
    assert kafka_as(user="producer-bank").password not in message


def test_only_the_validator_reads_the_events_and_only_the_operator_writes_keys(
    kafka_bootstrap: str, unique_group: str
) -> None:
    producer = kafka_as("producer")
    consumer = kafka_consumer(producer, group_id=unique_group, auto_offset_reset="earliest")
    try:
        consumer.subscribe([EVENTS_TOPIC])
        with pytest.raises(Exception) as raised:
            consumer.poll(timeout_ms=5000)
        message = refusal(producer, raised.value)
    finally:
        consumer.close()
    assert message is not None and "refused user 'producer'" in message

    for role, allowed in (("producer", False), ("validator", False), ("operator", True)):
        sender = EventProducer(kafka_as(role))
        try:
            sender.send_raw(KEYS_TOPIC, b"key record", key=f"k-{uuid.uuid4()}".encode())
            sender.flush(timeout=30)
            wrote = True
        except ProducerError as exc:
            assert f"to write {KEYS_TOPIC}" in str(exc)
            wrote = False
        finally:
            with contextlib.suppress(ProducerError):
                sender.close(timeout=10)
        assert wrote is allowed, role


def test_keys_and_passwords_are_readable_by_their_owner_only(kafka_bootstrap: str) -> None:
    kafka_dir = Path(os.environ["FACEAUDIT_BROKER_HOME"]) / "kafka"
    secrets = [
        kafka_dir / "tls" / "ca.key",
        kafka_dir / "tls" / "broker.key",
        kafka_dir / "server.properties",  # holds the broker's key and password
        *sorted((kafka_dir / "users").glob("*.password")),
    ]
    assert len(secrets) > 5
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in secrets}
    assert modes == dict.fromkeys(modes, 0o600)
    dirs = [kafka_dir, kafka_dir / "tls", kafka_dir / "users"]
    assert {stat.S_IMODE(d.stat().st_mode) for d in dirs} == {0o700}
    log = (kafka_dir / "broker.log").read_text()
    for path in secrets[3:]:
        assert path.read_text().strip() not in log


def test_broker_user_add_makes_a_reader_of_the_violations(kafka_bootstrap: str) -> None:
    home = os.environ["FACEAUDIT_BROKER_HOME"]
    name = f"siem-{uuid.uuid4().hex[:8]}"
    port = kafka_bootstrap.rsplit(":", 1)[1]
    added = faceaudit(
        "broker", "user", "add", name, "--role", "reader", "--port", port, FACEAUDIT_HOME=home
    )
    assert added.returncode == 0, added.stderr
    password_file = Path(home) / "kafka" / "users" / f"{name}.password"
    assert str(password_file) in added.stdout
    assert password_file.read_text().strip() not in added.stdout + added.stderr
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    reader = kafka_as(user=name)
    consumer = kafka_consumer(reader, group_id=None)
    try:
        assert consumer.partitions_for_topic(VIOLATION_TOPIC)
        assert not consumer.partitions_for_topic(EVENTS_TOPIC)
    finally:
        consumer.close()
    again = faceaudit(
        "broker", "user", "add", name, "--role", "reader", "--port", port, FACEAUDIT_HOME=home
    )
    assert again.returncode == 1 and "exists already" in again.stderr


def test_broker_prepare_grants_a_users_role_on_any_broker(kafka_bootstrap: str) -> None:
    """`broker prepare` (for compose or a cluster) gives an existing SCRAM user its role's
    ACLs, connecting as an admin; before it the user may read nothing."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    from core.clients import kafka_admin

    name, password = f"prep-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = kafka_admin(kafka_as("admin"))
    try:
        admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, ScramMechanism.SCRAM_SHA_512, password, 8192)]
        )
    finally:
        admin.close()
    user = dataclasses.replace(kafka_as("admin"), user=name, password=password)

    def sees_violations() -> bool:
        consumer = kafka_consumer(user, group_id=None)
        try:
            return bool(consumer.partitions_for_topic(VIOLATION_TOPIC))
        finally:
            consumer.close()

    assert not sees_violations()
    prepared = faceaudit("broker", "prepare", "--bootstrap", kafka_bootstrap, "--user",
                         f"{name}:reader")  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    assert f"{name} (reader)" in prepared.stdout
    assert sees_violations()
    wrong = faceaudit("broker", "prepare", "--user", f"{name}:root")
    assert wrong.returncode == 2 and "NAME:ROLE" in wrong.stderr
