"""The devices a gateway admits: one token per device, kept only as its SHA-256.

The file holds JSON lines ``{"device_id", "processor_id", "sha256"}``, readable
by its owner alone. A token says which device it is, so a device can send
only its own records: the gateway refuses a record naming another device or
another processor.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core.errors import FaceauditError
from core.private_files import write_private

TOKEN_PREFIX: Final = "fd_"


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    processor_id: str


class DeviceTokensError(FaceauditError):
    """The device token file is unreadable or malformed."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceTokens:
    """The admitted devices, by token hash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_hash = {digest: device for digest, device in _read(path).items()}

    def lookup(self, token: str) -> Device | None:
        return self._by_hash.get(hash_token(token))

    def __len__(self) -> int:
        return len(self._by_hash)


def add_device(path: Path, device_id: str, processor_id: str, *, replace: bool = False) -> str:
    """Admit a device: return its new token (shown once); the file keeps only the hash."""
    if not device_id or not processor_id:
        raise DeviceTokensError("a device needs a device id and a processor id")
    entries = _read(path) if path.exists() else {}
    same = [digest for digest, device in entries.items() if device.device_id == device_id]
    if same and not replace:
        raise DeviceTokensError(f"device {device_id!r} has a token already (--replace)")
    for digest in same:
        del entries[digest]
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entries[hash_token(token)] = Device(device_id, processor_id)
    lines = [
        json.dumps({"device_id": d.device_id, "processor_id": d.processor_id, "sha256": h})
        for h, d in entries.items()
    ]
    write_private(path, "".join(line + "\n" for line in lines))
    return token


def _read(path: Path) -> dict[str, Device]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeviceTokensError(
            f"no device token file at {path}: admit a device first "
            "(faceaudit gateway --make-token DEVICE --processor ID)"
        ) from None
    except OSError as exc:
        raise DeviceTokensError(f"cannot read {path}: {exc.strerror}") from None
    entries = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            entries[entry["sha256"]] = Device(entry["device_id"], entry["processor_id"])
        except (ValueError, KeyError, TypeError):
            raise DeviceTokensError(
                f"{path}:{number}: not a device entry (device_id, processor_id, sha256)"
            ) from None
    return entries
