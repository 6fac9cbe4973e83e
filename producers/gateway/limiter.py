"""Per-device request limits: a token bucket each, so one flooding device cannot starve the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """`rate` requests per second per device, bursts up to `burst`."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, not {rate}, {burst}")
        self._rate, self._burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # device: (tokens, when)
        self._lock = threading.Lock()

    def admit(self, device_id: str) -> float:
        """0 if the device may send now (and it is counted), else the seconds to wait."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(device_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1:
                self._buckets[device_id] = (tokens - 1, now)
                return 0.0
            self._buckets[device_id] = (tokens, now)
            return (1 - tokens) / self._rate
