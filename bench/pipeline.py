"""The validator end to end: `faceaudit consume` as a subprocess, timed by the rows it stored.

The validator counts every event it has stored (`faceaudit_events_total` on
`--metrics-port`, one port per worker). Sampled every 0.2 s, that count gives
the drain rate from the first stored batch to the last, without the start-up
(imports, store, registry, group join) and without the `--until-idle` wait.
The group's committed offsets would not do: the validator holds its commit
back behind events waiting for a consent or deployment record (the registry
grace), which a fleet with faults always has.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import BenchError
from bench.cluster import Cluster
from bench.cpu import cpu_seconds
from bench.memory import PeakMemory
from bench.raw import Drain
from faceaudit.broker import free_port

IDLE_SECONDS = 5
SAMPLE_SECONDS = 0.2
_SUMMARY = re.compile(r"This run: (\d+) events in ([\d.]+) s")
_STORED = re.compile(r"^faceaudit_events_total\{[^}]*\} ([\d.e+]+)$", re.MULTILINE)


class StoredWatch:
    """Events stored so far by a validator (and its workers), read from their metrics."""

    def __init__(self, workers: int) -> None:
        self.port = _free_ports(workers)
        self._last = dict.fromkeys(range(self.port, self.port + workers), 0)

    def stored(self) -> int:
        for port in self._last:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:  # not serving yet, or gone: keep its last count
                continue
            self._last[port] = int(sum(float(n) for n in _STORED.findall(text)))
        return sum(self._last.values())

    def wait_for(
        self, target: int, alive: Callable[[], bool], progress: Callable[[int], None]
    ) -> Iterator[tuple[float, int]]:
        """(time, stored) samples until `target` events are stored; raises if `alive()` fails."""
        while True:
            stored = self.stored()
            now = time.monotonic()
            yield now, stored
            progress(stored)
            if stored >= target:
                return
            if not alive():
                raise BenchError(f"the validator exited at {stored:,} of {target:,} events")
            time.sleep(SAMPLE_SECONDS)


def run_pipeline(
    cluster: Cluster,
    name: str,
    expected: int,
    workers: int = 1,
    profile_to: Path | None = None,
    batch_size: int | None = None,
    trust: str | None = None,
    digests: str | None = None,
) -> dict:
    """Drain `expected` events with `consume --workers N --until-idle 5` (new group, new store).

    `profile_to`: run the validator under pyinstrument and write its text report there.
    `batch_size`: `--batch-size` (default: the validator's). `trust`: `--trust`.
    `digests`: `--digests`.
    """
    watch = StoredWatch(workers)
    args = ["consume", "--bootstrap", cluster.bootstrap, "--clickhouse", cluster.store(name)]
    args += ["--group", cluster.group(name), "--until-idle", str(IDLE_SECONDS)]
    args += ["--workers", str(workers), "--metrics-port", str(watch.port)]
    if batch_size is not None:
        args += ["--batch-size", str(batch_size)]
    if trust is not None:
        args += ["--trust", trust]
    if digests is not None:
        args += ["--digests", digests]
    started = time.monotonic()
    child = cluster.faceaudit(*args, log_name=name, profile_to=profile_to)
    memory = PeakMemory(child.pid)
    try:
        alive = lambda: child.poll() is None  # noqa: E731
        samples = [
            (at, stored, cpu_seconds(child.pid))
            for at, stored in watch.wait_for(expected, alive, _Progress(name, expected))
        ]
        child.wait(IDLE_SECONDS + 120)
    except Exception as exc:
        raise BenchError(f"{name}: {exc}; its log:\n{cluster.output(name)[1][-2000:]}") from exc
    finally:
        peaks = memory.stop()
    out, err = cluster.output(name)
    if child.returncode != 0:
        raise BenchError(f"{name}: consume exited with {child.returncode}:\n{err[-2000:]}")
    drain = _drain([(at, stored) for at, stored, _ in samples], started)
    summary = _SUMMARY.search(out)
    return {
        "events_per_s": round(drain.events_per_second),
        "cpu_us_per_event": _cpu_per_event(samples),
        "drain_seconds": round(drain.seconds, 2),
        "wall_seconds": round(drain.wall_seconds, 2),
        "stored_events": int(summary[1]) if summary else None,
        "summary_seconds": float(summary[2]) if summary else None,
        "peak_rss_mib": peaks,
    }


def _drain(samples: list[tuple[float, int]], started: float) -> Drain:
    """The rate between the first sample with stored events and the first with all stored."""
    first_at, first = next((t, n) for t, n in samples if n > 0)
    last_at, last = samples[-1]
    if last_at == first_at:  # one batch: only the wall time says anything
        return Drain(last, last_at - started, last_at - started)
    return Drain(last - first, last_at - first_at, last_at - started)


def _cpu_per_event(samples: list[tuple[float, int, float]]) -> float:
    """CPU µs per event over what `_drain` times: from the first sample with stored events
    to the last, or (one batch) from the process start."""
    _, first, first_cpu = next(sample for sample in samples if sample[1] > 0)
    _, last, last_cpu = samples[-1]
    if last == first:
        return round(last_cpu / last * 1e6, 2)
    return round((last_cpu - first_cpu) / (last - first) * 1e6, 2)


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a worker serves on port + its index)."""
    while True:
        port = free_port()
        if all(_is_free(port + i) for i in range(1, count)):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Progress:
    """A progress line on stderr every 10 s."""

    def __init__(self, name: str, expected: int) -> None:
        self._name, self._expected = name, expected
        self._next = time.monotonic() + 10

    def __call__(self, stored: int) -> None:
        if time.monotonic() >= self._next:
            self._next += 10
            print(f"  {self._name}: {stored:,} of {self._expected:,} stored", file=sys.stderr)
