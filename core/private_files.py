"""Files that hold secrets (keys, passwords): readable by their owner alone, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> None:
    """Make `path` (and parents) and leave it readable by its owner alone."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def write_private(path: Path, data: str | bytes, *, exclusive: bool = False) -> None:
    """Write `path` readable by its owner alone (0600).

    `exclusive`: FileExistsError rather than replace a file already there.
    """
    raw = data.encode() if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, raw)
    finally:
        os.close(fd)
