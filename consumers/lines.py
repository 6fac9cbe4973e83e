"""One JSON-lines record judged on its own: ``orjson.loads``, then ``codec.from_json``.

This is the reference for a line of the offline checker's input: what it
accepts is a good record, and what it refuses is reported with its message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from schemas import codec
from schemas.signatures import Signature
from schemas.topics import KINDS

OnBad = Callable[[str], None]
"""Receives one ``where: what is wrong`` line per bad record."""


class BadRecord(ValueError):
    """One record that cannot be used; the message says what is wrong with it."""


def parse_line(line: bytes) -> tuple[str, dict[str, Any]]:
    """One JSON-lines record as ``(kind, record)``; raises BadRecord saying what is wrong."""
    kind, record, _ = parse_signed_line(line)
    return kind, record


def parse_signed_line(line: bytes) -> tuple[str, dict[str, Any], Signature | None]:
    """`parse_line`, and the signature the record carries (None if none)."""
    try:
        obj = orjson.loads(line)  # several times faster than json.loads: parsing dominated
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    try:
        return codec.from_signed_json(obj)
    except codec.EncodeError as exc:
        if isinstance(obj, dict) and "type" not in obj:
            raise BadRecord(f'no "type" field (one of {", ".join(KINDS)})') from None
        raise BadRecord(str(exc)) from None
