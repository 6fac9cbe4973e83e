"""Items made ahead on a thread: all of them in order, errors raised, an early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from consumers.prefetch import Ahead


def test_every_item_comes_in_order() -> None:
    assert list(Ahead(range(100), depth=3)) == list(range(100))


def test_what_the_thread_raises_is_raised_where_the_items_are_taken() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise OSError("gone")

    taken = []
    with pytest.raises(OSError, match="gone"):
        for item in Ahead(items()):
            taken.append(item)
    assert taken == [1]


def test_stopping_early_stops_the_thread() -> None:
    made = []

    def items() -> Iterator[int]:
        for n in range(1_000_000):
            made.append(n)
            yield n

    ahead = Ahead(items(), depth=2)
    for item in ahead:
        if item == 5:
            break
    assert not any(t.name == ahead._thread.name for t in threading.enumerate())
    assert len(made) <= 5 + 1 + 2 + 1  # taken, in hand, queued, one more made


def test_closing_without_taking_anything_stops_the_thread() -> None:
    ahead = Ahead(iter(range(10)), depth=1)
    ahead.close()
    assert not ahead._thread.is_alive()
