"""Items made on a thread of their own, a few ahead of the one taking them.

The native readers leave the interpreter free while they parse a chunk, so
reading the next chunks on a thread overlaps with judging this one (two
cores: one reads, one judges). What the thread raises is raised where the
items are taken, and closing the iterator early stops the thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Final, Generic, TypeVar

T = TypeVar("T")

DEPTH: Final = 2
"""Items made ahead at most: memory for a couple of chunks, enough to keep both cores busy."""
_POLL: Final = 0.1  # seconds between looks at whether the taker has gone


class _End:
    """What the thread puts last: nothing more, or what it raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Ahead(Generic[T]):
    """Iterates ``items`` on a thread started at once, up to ``depth`` items ahead."""

    def __init__(self, items: Iterable[T], depth: int = DEPTH) -> None:
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._make, args=(items,), daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread (after the item it is making) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL)  # let a waiting put go through
        self._thread.join()

    def _make(self, items: Iterable[T]) -> None:
        end = _End(None)
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the taker, which raises it
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> bool:
        """Queue ``item``; False once the taker has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                pass
        return False
