"""The validator's settings: command-line flags override FACEAUDIT_* variables override defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from consumers.keyring import TRUST_MODES
from consumers.rules.catalogue import PROFILES
from core.clients import KafkaConfig, read_password_file
from core.errors import FaceauditError
from core.local_kafka import local_credentials


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the consumer needs to run; built by `Settings.resolve`."""

    bootstrap: str = "127.0.0.1:9092"
    # In the command line's state dir (`faceaudit.home.HOME`), which git ignores.
    clickhouse: str = "chdb://.faceaudit/clickhouse"
    # The key of the hashes that replace real identifiers in stored events; made if missing.
    mask_key_file: str = ".faceaudit/mask.key"
    # "signatures": a registry record counts only if signed (consumers.keyring); "none" opts out.
    trust: str = "signatures"
    group: str = "faceaudit-validator"
    profile: str = "cac-2025"
    metrics_port: int = 0
    # Loopback unless Prometheus scrapes from elsewhere (a container, a pod): then 0.0.0.0.
    metrics_host: str = "127.0.0.1"
    until_idle: float | None = None
    workers: int = 1
    batch_size: int = 20_000
    batch_seconds: float = 0.25
    registry_grace: float = 30.0
    max_held: int = 100_000
    max_message_bytes: int = 1024 * 1024
    dead_letter_max_consecutive: int = 1000
    dead_letter_max_ratio: float = 0.5
    insert_backoff_max: float = 30.0
    max_poll_interval: float = 900.0
    session_timeout: float = 45.0
    kafka_timeout: float = 15.0
    # Signed, chained digests of what is stored (consumers.trail.digests): "on" or "off".
    digests: str = "on"
    digest_interval: float = 60.0
    auditor_key: str | None = None  # default: the one auditor key under $FACEAUDIT_HOME/keys
    chain: str | None = None  # default: the group
    # Who the clients are to Kafka (core.clients.KafkaConfig): SASL_SSL when a user
    # is given; the password from its file or FACEAUDIT_KAFKA_PASSWORD, never a flag.
    kafka_security_protocol: str | None = None
    kafka_user: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    kafka_password_file: str | None = None
    kafka_ca_file: str | None = None
    kafka_cert_file: str | None = None
    kafka_key_file: str | None = None

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        role: str = "validator",
    ) -> Settings:
        """Merge flags (None means not given), then FACEAUDIT_<NAME> variables, then defaults.

        Given no Kafka credentials, and no bootstrap or the local broker's own,
        the clients are `role`'s user of the local broker (core.local_kafka),
        if there is one.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            flag = flags.get(item.name)
            if flag is not None:
                values[item.name] = flag
                continue
            raw = environ.get(f"FACEAUDIT_{item.name.upper()}")
            if raw is not None and raw != "":
                values[item.name] = _convert(item.name, raw, item.default, item.type)
        values |= _local_broker(values, environ, role)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def kafka(self) -> KafkaConfig:
        """What every Kafka client the validator makes is built from."""
        password = self.kafka_password
        if password is None and self.kafka_password_file:
            password = read_password_file(self.kafka_password_file)
        return KafkaConfig(
            self.bootstrap,
            self.kafka_timeout,
            security_protocol=self.kafka_security_protocol,
            user=self.kafka_user,
            password=password,
            ca_file=self.kafka_ca_file,
            cert_file=self.kafka_cert_file,
            key_file=self.kafka_key_file,
        )

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise FaceauditError(
                f"unknown profile {self.profile!r}: choose one of {', '.join(PROFILES)}"
            )
        if self.trust not in TRUST_MODES:
            raise FaceauditError(
                f"unknown trust {self.trust!r}: choose one of {', '.join(TRUST_MODES)}"
            )
        if self.batch_size < 1:
            raise FaceauditError(f"batch size must be at least 1, not {self.batch_size}")
        if self.batch_seconds <= 0:
            raise FaceauditError(f"--batch-seconds must be positive, not {self.batch_seconds:g}")
        if self.until_idle is not None and self.until_idle <= 0:
            raise FaceauditError(f"--until-idle must be positive, not {self.until_idle}")
        if self.digests not in ("on", "off"):
            raise FaceauditError(f"--digests is on or off, not {self.digests!r}")
        if self.digest_interval <= 0:
            raise FaceauditError(
                f"--digest-interval must be positive, not {self.digest_interval:g}"
            )

    @property
    def chain_name(self) -> str:
        """The digest chain this process writes."""
        return self.chain or self.group


def _local_broker(
    values: Mapping[str, Any], environ: Mapping[str, str], role: str
) -> dict[str, Any]:
    """The local broker's bootstrap and `role`'s credentials, unless others were given."""
    if any(values.get(name) for name in _KAFKA_IDENTITY):
        return {}
    found = local_credentials(role, environ)
    if found is None or values.get("bootstrap", found.bootstrap) != found.bootstrap:
        return {}
    return {
        "bootstrap": found.bootstrap,
        "kafka_user": found.user,
        "kafka_password_file": found.password_file,
        "kafka_ca_file": found.ca_file,
    }


_KAFKA_IDENTITY = (
    "kafka_security_protocol",
    "kafka_user",
    "kafka_password",
    "kafka_password_file",
    "kafka_cert_file",
)


def _convert(name: str, raw: str, default: Any, annotation: Any = None) -> Any:
    """Convert an environment string to the type of the field's default."""
    optional = str if "str" in str(annotation) else float
    kind = type(default) if default is not None else optional
    try:
        return kind(raw)
    except ValueError:
        raise FaceauditError(
            f"FACEAUDIT_{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None
