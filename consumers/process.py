"""Process-wide settings of a process that runs the engine (the validator, or
`faceaudit check`), made before it judges anything.

- pandas is kept out. pyarrow imports it (about 40 MiB resident) the first
  time it turns a Python value into an array or a scalar, only to check
  whether the value is a pandas object; chDB would import it only for its
  DataFrame formats. The engine uses neither, so its processes refuse the
  import, and pyarrow records pandas as absent, as if it were not installed.
- Arrow allocates with the C library's allocator rather than its default
  (mimalloc), which keeps the buffers of past batches for reuse: a batch's
  columns are freed whole once it is stored, and the bench's one-process
  peak fell from 567 to 539 MiB with it, at the same drain rate.
- Once the embedded engine is open, the pages of its library that only its
  start-up touched go back to the kernel (`release_engine_startup_pages`).
  chDB's library is a 555 MB file; loading it runs the static initialisers
  of the whole of ClickHouse, which leaves about 250 MiB of its code and
  constants resident that nothing reads again. The kernel is asked to
  reclaim them (madvise MADV_PAGEOUT); the pages the engine goes on using
  come back on first touch, about 90 MiB after a run.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pyarrow as pa

_REFUSED = "pandas"


class _RefusePandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses pandas and its submodules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == _REFUSED or fullname.startswith(f"{_REFUSED}."):
            raise ModuleNotFoundError(f"{fullname} is not used by the engine", name=fullname)
        return None


def prepare_engine_process() -> None:
    """Both settings above, for this process from now on."""
    keep_pandas_out()
    pa.set_memory_pool(pa.system_memory_pool())


def keep_pandas_out() -> None:
    """Refuse pandas in this process from now on, unless it is already imported."""
    if _REFUSED in sys.modules:
        return
    if not any(isinstance(finder, _RefusePandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefusePandas())


_MADV_PAGEOUT = 21  # Linux 5.4 and later; other kernels refuse it, and nothing changes
_ENGINE_LIBRARY = "/chdb/_chdb"


def release_engine_startup_pages() -> None:
    """Ask the kernel to reclaim the resident pages of chDB's read-only mappings.

    Safe for any mapping: a reclaimed file page is read again when next
    touched, and the kernel keeps a page it cannot reclaim (one written, as
    the relocated constants are) where it is. Nothing is done where there is
    no /proc or no such advice.
    """
    try:
        with open("/proc/self/maps") as maps:
            ranges = [_read_only_range(line) for line in maps if _ENGINE_LIBRARY in line]
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, end in filter(None, ranges):
        if libc.madvise(start, end - start, _MADV_PAGEOUT) != 0:
            return  # the kernel does not take this advice


def _read_only_range(maps_line: str) -> tuple[int, int] | None:
    """A /proc/self/maps line's address range, if the mapping cannot be written."""
    addresses, permissions = maps_line.split()[:2]
    if "w" in permissions:
        return None
    start, end = addresses.split("-")
    return int(start, 16), int(end, 16)
