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
"""

from __future__ import annotations

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
