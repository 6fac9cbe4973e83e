"""`consume --workers 2` finds and stores exactly what one process does.

The workers share the partitions of one consumer group and hand their
batches to the process that owns the chDB store. Splitting the work must not
change the result: the same events stored once each, the same violations.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helpers import (
    consume,
    fleet_events,
    fleet_seed,
    fleet_violation_rules,
    kafka_as,
    start_group_at_end,
)
from signing import fleet_signing_keys

from producers.simulate import simulate

pytestmark = pytest.mark.integration


def rules_of(violations: dict[str, str], ids: set[str]) -> Counter[str]:
    return Counter(violations[i] for i in ids)


def test_two_workers_store_and_find_what_one_process_does(
    kafka_bootstrap: str, unique_group: str, tmp_path: Path
) -> None:
    seed, events = fleet_seed(), 8_000
    one, two = f"{unique_group}-one", f"{unique_group}-two"
    for group in (one, two):
        start_group_at_end(kafka_bootstrap, group)
    simulate(
        kafka_as("producer"),
        events=events,
        devices=30,
        seed=seed,
        progress=False,
        signing_keys=fleet_signing_keys,
    )

    single = consume(kafka_bootstrap, tmp_path / "one", one)
    assert single.returncode == 0, single.stderr
    split = consume(kafka_bootstrap, tmp_path / "two", two, "--workers", "2")
    assert split.returncode == 0, split.stderr

    assert fleet_events(tmp_path / "one", seed) == (events, events)
    assert fleet_events(tmp_path / "two", seed) == (events, events)
    by_one = fleet_violation_rules(tmp_path / "one", seed)
    by_two = fleet_violation_rules(tmp_path / "two", seed)
    assert by_one, "the fleet breaks rules, so one process must find violations"
    only_one, only_two = by_one.keys() - by_two.keys(), by_two.keys() - by_one.keys()
    assert not only_one and not only_two, (
        f"found by one process only: {rules_of(by_one, only_one)}; "
        f"by two workers only: {rules_of(by_two, only_two)}; two workers said:\n"
        f"{split.stderr[-3000:]}"
    )
    assert by_two == by_one
