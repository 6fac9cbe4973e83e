"""The client's ceiling: a group consumer configured as the validator's that only counts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import BenchError
from consumers.read import GROUP_TOPICS, group_consumer
from consumers.settings import Settings
from core.clients import KafkaConfig

STALL_SECONDS = 60


@dataclass
class Drain:
    """How fast a consumer (group) worked through `events` messages."""

    events: int
    seconds: float  # from the first poll (or stored batch) that brought messages to the last
    wall_seconds: float  # from the start, including joining the group and the first fetch

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def raw_consume(kafka: KafkaConfig, group: str, expected: int) -> Drain:
    """Poll and discard until `expected` messages were read (fresh group, from the earliest).

    The consumer is the validator's (`group_consumer`), reaching the broker as `kafka` says:
    through TLS or not, for the cost of TLS.
    """
    settings = Settings.resolve(
        {
            "bootstrap": kafka.bootstrap,
            "group": group,
            "kafka_security_protocol": kafka.security_protocol,
            "kafka_user": kafka.user,
            "kafka_password": kafka.password,
            "kafka_ca_file": kafka.ca_file,
        }
    )
    consumer = group_consumer(settings)
    try:
        started = time.monotonic()
        consumer.subscribe(list(GROUP_TOPICS))
        read, first, first_at, last_at = 0, 0, None, started
        while read < expected:
            polled = consumer.poll(timeout_ms=1000, max_records=settings.batch_size)
            now = time.monotonic()
            n = sum(len(messages) for messages in polled.values())
            if n:
                read += n
                last_at = now
                if first_at is None:
                    first, first_at = n, now
            elif now - last_at > STALL_SECONDS:
                raise BenchError(f"raw consumer stalled at {read:,} of {expected:,} messages")
    finally:
        consumer.close(autocommit=False)
    if read == first:  # all in one poll: only the wall time says anything
        return Drain(read, last_at - started, last_at - started)
    return Drain(read - first, last_at - first_at, last_at - started)
