"""The command line's state dir: the local broker's jars and data, the dashboard's tokens."""

from __future__ import annotations

import os
from pathlib import Path

HOME = Path(".faceaudit")


def home() -> Path:
    """FACEAUDIT_HOME, or .faceaudit in the working directory."""
    return Path(os.environ.get("FACEAUDIT_HOME", str(HOME)))
