"""Event times with a daily rhythm: quiet nights, a morning and an evening peak (China time).

`rhythm_times` spreads n events over a span so that each minute gets a share
of them in proportion to how busy that time of day is, the way a fleet of
gates, tills and check-in desks is busy.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Final

CHINA_UTC_OFFSET: Final = timedelta(hours=8)
_MINUTE: Final = timedelta(minutes=1)


def busyness(local_hour: float) -> float:
    """How busy an hour of the local day is (night 0.1, peaks near 1.3 at 09:00 and 18:30)."""
    morning = math.exp(-(((local_hour - 9.0) / 1.5) ** 2))
    evening = 0.8 * math.exp(-(((local_hour - 18.5) / 2.0) ** 2))
    daytime = 0.35 if 8 <= local_hour < 21 else 0.0
    return 0.1 + morning + evening + daytime


def rhythm_times(n: int, start: datetime, end: datetime) -> Iterator[datetime]:
    """`n` ascending times in [start, end), dense where the day is busy."""
    if end <= start:
        raise ValueError(f"the span must end after it starts: {start} to {end}")
    minutes = max(1, int((end - start) / _MINUTE))
    weights = []
    for m in range(minutes):
        local = start + m * _MINUTE + CHINA_UTC_OFFSET
        weights.append(busyness(local.hour + local.minute / 60))
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    for i in range(n):
        target = (i + 0.5) / n * total
        minute = bisect.bisect_left(cumulative, target)
        before = cumulative[minute - 1] if minute else 0.0
        fraction = (target - before) / weights[minute]
        yield start + (minute + fraction) * _MINUTE
