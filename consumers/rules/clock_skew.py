"""Event times that disagree with the broker's (AUDIT-CLOCK-SKEW), and the times to trust.

The events topic stamps each message with the broker's time on arrival
(LogAppendTime); the decode step carries it as the `broker_time` column. An
event dated well after it, or long before it, comes from a clock that is off
(or lies). Such an event is still judged by every rule, but its time must not
move the stream's watermark: one event dated 9999-12-31 would make every
withdrawn consent look overdue. Offline inputs have no `broker_time`: nothing
is skewed there.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import BROKER_TIME

AHEAD: Final = timedelta(minutes=5)
"""How far after the broker's time an event may be dated."""
BEHIND: Final = timedelta(days=7)
"""How far before the broker's time an event may be dated."""

_MICROS: Final = pa.timestamp("us", "UTC")


def skewed(table: pa.Table | pa.RecordBatch) -> pa.Array:
    """Per row, whether its event time is off the broker's time (False without one)."""
    if BROKER_TIME not in table.schema.names:
        return pa.repeat(False, table.num_rows)
    fires = skewed_times(table.column("event_time"), table.column(BROKER_TIME))
    return fires.combine_chunks() if isinstance(fires, pa.ChunkedArray) else fires


def skewed_times(event_time: pa.Array, broker_time: pa.Array) -> pa.Array:
    """Row by row, whether `event_time` is off `broker_time` (False where that is null)."""
    event = pc.cast(event_time, _MICROS).cast(pa.int64())
    broker = pc.cast(broker_time, _MICROS).cast(pa.int64())
    ahead = pc.greater(pc.subtract(event, broker), _micros(AHEAD))
    behind = pc.greater(pc.subtract(broker, event), _micros(BEHIND))
    return pc.fill_null(pc.or_(ahead, behind), False)


def trusted_times(table: pa.Table) -> pa.Array:
    """The event times that may move a watermark: null where the event is skewed."""
    times = table.column("event_time")
    return pc.if_else(skewed(table), pa.scalar(None, times.type), times)


def skew_words(event_time: datetime, broker_time: datetime) -> str:
    """``"3 days, 4:00:00 before"`` or ``"0:06:00 after"``: how far off, for a message."""
    gap = event_time - broker_time
    return f"{gap} after" if gap >= timedelta(0) else f"{-gap} before"


def _micros(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)
