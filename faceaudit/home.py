"""The command line's state dir: the local broker's jars and data, the dashboard's tokens, keys."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import FaceauditError

HOME = Path(".faceaudit")


def home() -> Path:
    """FACEAUDIT_HOME, or .faceaudit in the working directory."""
    return Path(os.environ.get("FACEAUDIT_HOME", str(HOME)))


KEYS_DIR = "keys"
"""Under the state dir: the private keys `faceaudit keys generate` makes."""


def local_auditor_key() -> Path | None:
    """The one auditor key under the state dir's keys, None if there is none.

    FaceauditError if there are several: which one signs is not to be guessed.
    """
    found = sorted((home() / KEYS_DIR).glob("auditor-*.pem"))
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise FaceauditError(f"several auditor keys ({names}): choose one with --auditor-key")
    return found[0] if found else None
