"""CPU time of a process and its descendants, read from /proc (Linux).

On a shared machine another tenant's load slows a run's wall-clock rate, but
not the CPU time the validator itself spends per event: a cost measured both
ways says more than either alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.memory import process_tree

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User plus system CPU seconds of `root` and its live descendants, all threads."""
    return sum(_own_cpu_seconds(pid) for pid in process_tree(root))


def _own_cpu_seconds(pid: int) -> float:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # The fields after the command name, which is in parentheses and may hold spaces:
    # utime and stime are the 14th and 15th of the line.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
