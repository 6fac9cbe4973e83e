"""The validator's settings: command-line flags override FACEAUDIT_* variables override defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from consumers.rules.catalogue import PROFILES
from core.clients import KafkaConfig
from core.errors import FaceauditError


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the consumer needs to run; built by `Settings.resolve`."""

    bootstrap: str = "127.0.0.1:9092"
    # In the command line's state dir (`faceaudit.home.HOME`), which git ignores.
    clickhouse: str = "chdb://.faceaudit/clickhouse"
    group: str = "faceaudit-validator"
    profile: str = "cac-2025"
    metrics_port: int = 0
    until_idle: float | None = None
    workers: int = 1
    batch_size: int = 20_000
    batch_seconds: float = 0.5
    registry_grace: float = 30.0
    max_held: int = 100_000
    max_message_bytes: int = 1024 * 1024
    dead_letter_max_consecutive: int = 1000
    dead_letter_max_ratio: float = 0.5
    insert_backoff_max: float = 30.0
    max_poll_interval: float = 900.0
    session_timeout: float = 45.0
    kafka_timeout: float = 15.0

    @classmethod
    def resolve(
        cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Merge flags (None means not given), then FACEAUDIT_<NAME> variables, then defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            flag = flags.get(field.name)
            if flag is not None:
                values[field.name] = flag
                continue
            raw = environ.get(f"FACEAUDIT_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = _convert(field.name, raw, field.default)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def kafka(self) -> KafkaConfig:
        """What every Kafka client the validator makes is built from."""
        return KafkaConfig(self.bootstrap, self.kafka_timeout)

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise FaceauditError(
                f"unknown profile {self.profile!r}: choose one of {', '.join(PROFILES)}"
            )
        if self.batch_size < 1:
            raise FaceauditError(f"batch size must be at least 1, not {self.batch_size}")
        if self.batch_seconds <= 0:
            raise FaceauditError(f"--batch-seconds must be positive, not {self.batch_seconds:g}")
        if self.until_idle is not None and self.until_idle <= 0:
            raise FaceauditError(f"--until-idle must be positive, not {self.until_idle}")


def _convert(name: str, raw: str, default: Any) -> Any:
    """Convert an environment string to the type of the field's default."""
    kind = type(default) if default is not None else float
    try:
        return kind(raw)
    except ValueError:
        raise FaceauditError(
            f"FACEAUDIT_{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None
