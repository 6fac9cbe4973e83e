"""Real identifiers masked before events are stored (AUDIT-RAW-IDENTIFIER).

The audit must not itself become a register of identity numbers: an event
whose ``subject_ref`` or ``operator_id`` looks like a real identifier is
judged as sent, and stored with that value replaced by a keyed hash. The
same value under the same key always gives the same mask, so counts of
distinct subjects in the store stay right; without the key a mask cannot be
turned back into the number, nor found by hashing every possible number.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers.rules.identifiers import IDENTIFIER_FIELDS, looks_like_identifier
from core.errors import FaceauditError
from core.private_files import private_dir, write_private

MASK_PREFIX: Final = "masked:"
KEY_BYTES: Final = 32


class IdentifierMask:
    """Replaces identifier-like values of event tables by their keyed hashes."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a masking key needs at least 16 bytes")
        self._key = key

    def value(self, raw: str) -> str:
        """``masked:`` and 32 hex digits of HMAC-SHA256 over the value."""
        digest = hmac.new(self._key, raw.encode(), hashlib.sha256).hexdigest()
        return MASK_PREFIX + digest[:32]

    def table(self, table: pa.Table) -> pa.Table:
        """``table`` with every identifier-like value of IDENTIFIER_FIELDS masked."""
        for name in IDENTIFIER_FIELDS:
            if name not in table.column_names:
                continue
            column = table.column(name)
            looks = looks_like_identifier(column)
            if not pc.any(looks).as_py():
                continue
            values = column.to_pylist()
            for row in pc.indices_nonzero(looks).to_pylist():
                values[row] = self.value(values[row])
            index = table.schema.get_field_index(name)
            table = table.set_column(index, table.field(index), pa.array(values, column.type))
        return table


def load_mask_key(path: str | os.PathLike[str]) -> bytes:
    """The masking key in ``path``, made (random, readable by its owner only) if missing.

    FaceauditError if the file can be read by anyone but its owner, or is too short.
    """
    path = Path(path)
    if not path.exists():
        _create_key(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FaceauditError(
            f"the masking key {path} can be read by others (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {path}"
        )
    key = path.read_bytes()
    if len(key) < 16:
        raise FaceauditError(f"the masking key {path} holds {len(key)} bytes; it needs 16 or more")
    return key


def _create_key(path: Path) -> None:
    """Write a new random key; atomically, so processes starting together agree on one."""
    private_dir(path.parent)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    write_private(draft, secrets.token_bytes(KEY_BYTES), exclusive=True)
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(draft, path)
    finally:
        draft.unlink()
