"""Peak resident memory of a process and its descendants, read from /proc (Linux).

Each process's own peak (VmHWM) is sampled while it runs, so a worker that
exits before the parent is still counted with the largest value seen.
"""

from __future__ import annotations

import threading
from pathlib import Path

_PROC = Path("/proc")


class PeakMemory:
    """Samples the tree under `pid` every `interval` s until `stop()`; peaks in MiB."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self._root = pid
        self._interval = interval
        self._peaks: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Stop sampling; per process (`main`, `worker-N`, `tracker-N`, `other-N`) and `total`."""
        self._done.set()
        self._thread.join()
        return self.result()

    def result(self) -> dict[str, float]:
        named: dict[str, float] = {}
        counters = dict.fromkeys(("worker", "tracker", "other"), 0)
        for pid, (role, mib) in sorted(self._peaks.items()):
            if pid == self._root:
                named["main"] = mib
                continue
            counters[role] += 1
            named[f"{role}-{counters[role]}"] = mib
        named["total"] = round(sum(named.values()), 1)
        return named

    def _run(self) -> None:
        while True:
            for pid in process_tree(self._root):
                mib = _peak_mib(pid)
                if mib is not None:
                    role = _role(_cmdline(pid))
                    old = self._peaks.get(pid, (role, 0.0))[1]
                    self._peaks[pid] = (role, max(old, mib))
            if self._done.wait(self._interval):
                return


def _role(cmdline: bytes) -> str:
    """A multiprocessing worker, its resource tracker, or anything else."""
    if b"resource_tracker" in cmdline:
        return "tracker"
    return "worker" if b"spawn_main" in cmdline else "other"


def process_tree(root: int) -> list[int]:
    """`root` and every descendant still alive."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in (_PROC / str(pid) / "task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def _peak_mib(pid: int) -> float | None:
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""
