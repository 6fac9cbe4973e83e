"""The filtered violations list as CSV, streamed chunk by chunk."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any, Final

from dashboard.queries import VIOLATION_COLUMNS

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def violations_csv(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A header line, then one line per violation; lists (articles, regions) joined with ``; ``.

    A cell that a spreadsheet would run as a formula gets a leading ``'``
    (messages carry values producers sent).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VIOLATION_COLUMNS)
    yield _drain(buffer)
    for chunk in chunks:
        for row in chunk:
            writer.writerow([_cell(row[name]) for name in VIOLATION_COLUMNS])
        yield _drain(buffer)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = "; ".join(value) if isinstance(value, list) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
