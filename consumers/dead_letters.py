"""Dead letters: a message that cannot be judged is kept whole, with the reason."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from consumers.batch import Row, now_utc


def dead_letter_row(message: ConsumerRecord, reason: str, detail: str) -> Row:
    """A `dead_letters` row holding the message's original bytes, key and headers."""
    return {
        "message_key": _text(message.key),
        "raw": message.value or b"",
        "headers": {name: _text(value) or "" for name, value in (message.headers or [])},
        "reason": reason,
        "detail": detail,
        "received_at": now_utc(),
    }


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="backslashreplace")
