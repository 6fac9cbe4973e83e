"""Keep pandas out of a validator process.

pyarrow imports pandas (about 40 MiB resident) the first time it turns a
Python value into an array or a scalar, only to check whether the value is a
pandas object; chDB would import it only for its DataFrame formats. The
validator uses neither, so its processes refuse the import, and pyarrow
records pandas as absent, as if it were not installed.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

_REFUSED = "pandas"


class _RefusePandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses pandas and its submodules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == _REFUSED or fullname.startswith(f"{_REFUSED}."):
            raise ModuleNotFoundError(f"{fullname} is not used by the validator", name=fullname)
        return None


def keep_pandas_out() -> None:
    """Refuse pandas in this process from now on, unless it is already imported."""
    if _REFUSED in sys.modules:
        return
    if not any(isinstance(finder, _RefusePandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefusePandas())
