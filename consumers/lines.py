"""One JSON-lines record judged on its own: ``orjson.loads``, then ``codec.from_json``.

This is the reference for a line of the offline checker's input: what it
accepts is a good record, and what it refuses is reported with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Final

import orjson

from schemas import codec
from schemas.signatures import Signature
from schemas.topics import KINDS

_BLOCK: Final = 1 << 18
"""Bytes read at a time by ``lines_holding``: small enough for the searches to stay in cache."""

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


def lines_holding(
    stream: BinaryIO, markers: tuple[bytes, ...], block_bytes: int = _BLOCK
) -> Iterator[bytes]:
    """The lines of ``stream`` that hold any of ``markers``, in order, as iterating the
    stream gives them (the newline kept); found by searching blocks, not line by line."""
    rest = b""
    while block := stream.read(block_bytes):
        data = rest + block
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        yield from _holding(data, end, markers)
    yield from _holding(rest, len(rest), markers)


def _holding(data: bytes, end: int, markers: tuple[bytes, ...]) -> Iterator[bytes]:
    """The lines of ``data[:end]`` (whole lines) that hold a marker."""
    starts: set[int] = set()
    for marker in markers:
        at = data.find(marker, 0, end)
        while at != -1:
            starts.add(data.rfind(b"\n", 0, at) + 1)
            stop = data.find(b"\n", at, end)
            at = -1 if stop == -1 else data.find(marker, stop + 1, end)
    for start in sorted(starts):
        stop = data.find(b"\n", start, end)
        yield data[start : end if stop == -1 else stop + 1]
