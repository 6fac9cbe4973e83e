"""A request body as the messages to produce, or the reasons its records are refused.

Two forms: ``application/vnd.faceaudit.records`` is a run of wire messages
(single-object encoded records), each after its length as 4 bytes, big
endian; ``application/json`` is ``{"events": [...]}`` in the event
contract's JSON form, where a checkpoint carries its ``key_id`` and
``signature`` (standard base64) as ``faceaudit check`` reads them. Captures
and matches come in either form, checkpoints only as JSON. Every record must
name the device the token belongs to, and its processor.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from producers.gateway.devices import Device
from schemas import codec
from schemas.topics import EVENT_KINDS

BINARY: Final = "application/vnd.faceaudit.records"
JSON: Final = "application/json"
RELAYED_KINDS: Final = (*EVENT_KINDS, "checkpoint")
_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Message:
    """One record to produce: its kind, id, wire bytes and signature headers."""

    kind: str
    record_id: str
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason}


class BodyError(ValueError):
    """The body as a whole cannot be read (HTTP 400), or is of no known form (415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse(
    body: bytes, content_type: str, device: Device, *, max_records: int, max_message_bytes: int
) -> tuple[list[Message], list[Refusal]]:
    """The body's records as messages, and a refusal for each that may not go through."""
    media = content_type.split(";")[0].strip().lower()
    if media == BINARY:
        items = [(i, "wire", frame) for i, frame in enumerate(_frames(body))]
    elif media == JSON:
        items = [(i, "json", obj) for i, obj in enumerate(_json_records(body))]
    else:
        raise BodyError(f"Content-Type must be {BINARY} or {JSON}, not {media or 'none'}", 415)
    if not items:
        raise BodyError("the body holds no record")
    if len(items) > max_records:
        raise BodyError(f"{len(items)} records in one request; at most {max_records}", 413)
    messages, refused = [], []
    for index, form, item in items:
        try:
            message, record = _wire(item) if form == "wire" else _from_json(item)
            _check(message, record, device, max_message_bytes)
        except (codec.DecodeError, codec.EncodeError, _Refused) as exc:
            refused.append(Refusal(index, str(exc)))
            continue
        messages.append(message)
    return messages, refused


class _Refused(ValueError):
    pass


def _frames(body: bytes) -> list[bytes]:
    frames, at = [], 0
    while at < len(body):
        if len(body) - at < _LENGTH.size:
            raise BodyError(f"at byte {at}: {len(body) - at} bytes left, less than a length")
        (size,) = _LENGTH.unpack_from(body, at)
        at += _LENGTH.size
        if size > len(body) - at:
            raise BodyError(f"at byte {at - 4}: a record of {size} bytes, {len(body) - at} left")
        frames.append(body[at : at + size])
        at += size
    return frames


def _json_records(body: bytes) -> list[Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise BodyError('a JSON body is {"events": [...]}')
    return document["events"]


def _wire(frame: bytes) -> tuple[Message, dict[str, Any]]:
    decoded = codec.decode(frame)
    if decoded.kind not in EVENT_KINDS:
        raise _Refused(f"a {decoded.kind} record goes as JSON with its signature, if at all")
    return Message(decoded.kind, decoded.record["event_id"], frame, []), decoded.record


def _from_json(obj: Any) -> tuple[Message, dict[str, Any]]:
    kind, record, signature = codec.from_signed_json(obj)
    if kind not in RELAYED_KINDS:
        raise _Refused(f"the gateway takes {', '.join(RELAYED_KINDS)}, not {kind}")
    if kind == "checkpoint" and signature is None:
        raise _Refused("a checkpoint needs its key_id and signature")
    record_id = record["checkpoint_id" if kind == "checkpoint" else "event_id"]
    headers = signature.headers() if signature is not None else []
    return Message(kind, record_id, codec.encode(kind, record), headers), record


def _check(
    message: Message, record: dict[str, Any], device: Device, max_message_bytes: int
) -> None:
    if record["device_id"] != device.device_id:
        raise _Refused(f"device_id {record['device_id']!r} is not this token's device")
    if record["processor_id"] != device.processor_id:
        raise _Refused(f"processor_id {record['processor_id']!r} is not this device's processor")
    if len(message.value) > max_message_bytes:
        raise _Refused(f"{len(message.value)} bytes, more than {max_message_bytes}")
