"""Failed Kafka deliveries, counted as the producer's sender thread reports them."""

from __future__ import annotations

import threading

from kafka.errors import TopicAuthorizationFailedError

from core.clients import KafkaConfig, refusal


class DeliveryFailures:
    """Pass `record` as every send's errback; `take` says what failed since the last take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._first: BaseException | None = None

    def record(self, error: BaseException) -> None:
        with self._lock:
            self._count += 1
            if self._first is None:
                self._first = error

    def take(self) -> tuple[int, BaseException | None]:
        """How many sends failed and the earliest error (None: none failed), then forget them."""
        with self._lock:
            taken = self._count, self._first
            self._count, self._first = 0, None
        return taken


def describe_failure(kafka: KafkaConfig, error: BaseException) -> str:
    """A failed send in words: who was refused what if it was an ACL or login refusal."""
    if isinstance(error, TopicAuthorizationFailedError):
        topics = ", ".join(sorted(str(name) for arg in error.args for name in _iterable(arg)))
        return refusal(kafka, error, f"write {topics or 'the topic'}") or repr(error)
    return refusal(kafka, error) or repr(error)


def _iterable(arg: object) -> tuple[object, ...]:
    if isinstance(arg, set | frozenset | list | tuple):
        return tuple(arg)
    return (arg,)
