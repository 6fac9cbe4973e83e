"""Dead letters: a message that cannot be judged is kept whole, with the reason.

Each dead letter goes to the `dead_letters` table and to the dead-letter
topic (`consumers.publisher`), so an operator can inspect it and, after a
fix, replay it. A
limit stops the validator when dead letters pile up, so a bad producer
deploy halts the pipeline instead of sending the whole stream aside.
"""

from __future__ import annotations

import base64
import itertools
from collections import deque
from collections.abc import Mapping

from kafka.consumer.fetcher import ConsumerRecord

from consumers.batch import Position, Row, now_utc
from core.errors import FaceauditError
from schemas.signatures import SIGNATURE_HEADER


class DeadLetterLimitExceeded(FaceauditError):
    """Too many dead letters: something upstream is broken, stop rather than divert."""


class DeadLetterPolicy:
    """Counts dead letters among messages and raises past either limit.

    `max_consecutive` dead letters in a row, or more than `max_ratio` of the
    last `window` messages, stop the validator.
    """

    def __init__(self, max_consecutive: int, max_ratio: float, window: int = 1000) -> None:
        self._max_consecutive = max_consecutive
        self._max_ratio = max_ratio
        self._recent: deque[bool] = deque(maxlen=window)
        self._dead_in_window = 0
        self._consecutive = 0

    def record_clean(self, count: int) -> None:
        """`count` messages in a row that were all good: what `record` does for each, at once."""
        if count <= 0:
            return
        dropped = max(0, len(self._recent) + count - self._recent.maxlen)
        self._dead_in_window -= sum(itertools.islice(self._recent, dropped))
        self._recent.extend(itertools.repeat(False, min(count, self._recent.maxlen)))
        self._consecutive = 0

    def record(self, dead: bool, position: Position) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._dead_in_window -= self._recent[0]
        self._recent.append(dead)
        self._dead_in_window += dead
        self._consecutive = self._consecutive + 1 if dead else 0
        if self._consecutive >= self._max_consecutive:
            raise DeadLetterLimitExceeded(
                f"{self._consecutive} dead letters in a row (limit {self._max_consecutive}), "
                f"the last at {_where(position)}; stopping without storing this batch"
            )
        full = len(self._recent) == self._recent.maxlen
        if full and self._dead_in_window > self._max_ratio * len(self._recent):
            raise DeadLetterLimitExceeded(
                f"{self._dead_in_window} of the last {len(self._recent)} messages were dead "
                f"letters (limit {self._max_ratio:.0%}), the last at {_where(position)}; "
                "stopping without storing this batch"
            )


def _where(position: Position) -> str:
    return f"{position.topic}[{position.partition}]@{position.offset}"


def dead_letter_row(message: ConsumerRecord, reason: str, detail: str) -> Row:
    """A `dead_letters` row holding the message's original bytes, key and headers.

    The detail starts with where the message was read: topic[partition]@offset.
    """
    return {
        "message_key": message.key,
        "raw": message.value or b"",
        "headers": {name: _header(name, value) for name, value in (message.headers or [])},
        "reason": reason,
        "detail": f"{message.topic}[{message.partition}]@{message.offset}: {detail}",
        "received_at": now_utc(),
    }


def original_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """A dead letter's headers as its message carried them (`_header` undone), to replay it
    signed as it came. A header that was not UTF-8 comes back with its bytes escaped."""
    return [
        (name, base64.b64decode(value) if name == SIGNATURE_HEADER else value.encode())
        for name, value in headers.items()
    ]


def _header(name: str, value: bytes | None) -> str:
    """A header as text; the signature's raw bytes in standard base64, so they are kept."""
    if name == SIGNATURE_HEADER and value is not None:
        return base64.b64encode(value).decode("ascii")
    return _text(value) or ""


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="backslashreplace")
