"""The columnar rules judge each row on its own, whatever batch it comes in.

test_rules pins what each rule finds at one event. Here ``ColumnarRules``
must give, for a whole batch the native decoder makes, exactly what it gives
for each of its rows as a batch of its own: the same (row, rule id, details)
in the same order, also when the enums come as plain strings in several
chunks (tables built from JSON). Events come from the simulated fleet, from
the per-rule cases of test_rules (every rule firing and just missing, every
consent reason), and from hypothesis; registries change between batches,
and the registry's chunk compaction must not change any result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import sample
from test_rules import CASES, Case, hit, miss

from consumers.event_columns import BROKER_TIME
from consumers.registry import Registry
from consumers.registry_columns import MAX_CHUNKS
from consumers.rules.catalogue import PROFILES, load_catalogue
from consumers.rules.columnar import ColumnarRules
from consumers.rules.columns import REASONS
from producers.fleet import Fleet
from schemas import codec
from schemas.native import contract_decoder
from schemas.topics import EVENT_KINDS

DECODER = contract_decoder()
CATALOGUE = load_catalogue()
T = sample("capture")["event_time"]
US = timedelta(microseconds=1)
Events = list[tuple[str, dict[str, Any]]]
EVERY_PROBLEM = {
    "consent_type": "bundled",
    "processor_id": "p-2",
    "purposes": [],
    "granted_at": T + US,
    "expires_at": T,
    "withdrawn_at": T,
}
GUARDIAN_OTHER = {"grantor": "guardian", "processor_id": "p-2"}
Finding = tuple[int, str, dict[str, Any]]
BrokerTimes = list[datetime | None] | None
"""Per event, when the broker received it (None: read from a file)."""


def decoded_batches(events: Events, broker_times: BrokerTimes = None) -> dict[str, pa.RecordBatch]:
    """The native decoder's batches of ``events``, with the broker's time of each if given."""
    messages = [codec.encode(kind, record) for kind, record in events]
    batches, failures = DECODER.decode_batch(messages, 1 << 20)
    assert failures == []
    if broker_times is not None:
        times = pa.array(broker_times, pa.timestamp("ms", "UTC"))
        batches = {
            kind: batch.append_column(BROKER_TIME, times.take(batch.column("message_index")))
            for kind, batch in batches.items()
        }
    return batches


def row_by_row(rules: ColumnarRules, kind: str, batch: pa.RecordBatch) -> list[Finding]:
    """What the rules find on each row of ``batch`` given alone."""
    return [
        (row, rule_id, details)
        for row in range(batch.num_rows)
        for _, rule_id, details in rules.evaluate(kind, batch.slice(row, 1))
    ]


def assert_alike(
    registry: Registry,
    events: Events,
    profiles: Iterable[str] = PROFILES,
    broker_times: BrokerTimes = None,
) -> list[Finding]:
    """``events`` in one batch are judged as each alone, under each profile; the findings."""
    batches = decoded_batches(events, broker_times)
    everything: list[Finding] = []
    for profile in profiles:
        columnar = ColumnarRules(profile, registry)
        for kind, batch in batches.items():
            expected = row_by_row(columnar, kind, batch)
            found = columnar.evaluate(kind, batch)
            assert found == expected, f"{profile} {kind}"
            assert json.loads(json.dumps(found)) == json.loads(json.dumps(expected))
            assert columnar.evaluate(kind, plain_strings(batch)) == expected, "from strings"
            everything += found
    return everything


def plain_strings(batch: pa.RecordBatch) -> pa.Table:
    """The batch as a table built from JSON would hold it: strings for enums, several chunks."""
    columns = []
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        elif pa.types.is_list(column.type) and pa.types.is_dictionary(column.type.value_type):
            column = column.cast(pa.list_(pa.string()))
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=batch.schema.names)
    half = table.num_rows // 2
    return pa.concat_tables([table.slice(0, half), table.slice(half)])


# -- the fleet ----------------------------------------------------------------------------------


@pytest.mark.parametrize("violation_rate", [0.3, 1.0])
def test_fleet_events_are_judged_alike(violation_rate: float) -> None:
    fleet = Fleet(60, 11, violation_rate, start=datetime(2026, 3, 1, tzinfo=UTC))
    registry = Registry()
    for kind, record in fleet.registry_records():
        if kind != "deletion":
            registry.apply(kind, record)
    events = [(kind, record) for kind, record, _ in fleet.events(3000)]
    for _, record in events:
        record["device_seq"], record["prev_hash"] = 0, None
    found = assert_alike(registry, events)
    assert len({rule_id for _, rule_id, _ in found}) >= 6


# -- every rule, firing and just missing, in one batch ---------------------------------------------


def case_world(cases: list[Case]) -> tuple[Registry, Events, BrokerTimes]:
    """Each case's event and registry records, under ids of its own, in one registry;
    and when the broker received each event."""
    registry, events, times = Registry(), [], []
    for number, case in enumerate(cases):
        event = sample(case.kind, **case.event)
        for key in ("consent_id", "deployment_id"):
            if event[key] is not None:
                event[key] = f"{event[key]}#{number}"
        event["event_id"] = f"{event['event_id'][:-4]}{number:04d}"
        if case.consent is not None:
            registry.apply("consent", sample("consent", **case.consent, consent_id=f"c-1#{number}"))
        if case.deployment is not None:
            deployment = sample("deployment", **case.deployment, deployment_id=f"d-1#{number}")
            registry.apply("deployment", deployment)
        events.append((case.kind, event))
        after = case.broker_after
        times.append(None if after is None else event["event_time"] + after)
    return registry, events, times


def reasons_in(details: Mapping[str, Any]) -> set[str]:
    """The consent reasons a finding's details name."""
    named = [*details.get("consent_problems", ()), *details.get("reasons", ())]
    if "reason" in details:
        named.append(details["reason"])
    return set(named) & set(REASONS)


MORE_CASES = [
    hit("capture", "FR-CONSENT-INVALID", "nobody-identified", subject_ref=None),
    hit("match", "FR-PUBLIC-PURPOSE", "every-problem", consent=EVERY_PROBLEM, subject_ref="s-2"),
    hit(
        "capture",
        "FR-SENSITIVE-ATTR",
        "twice",
        attribute_analysis=["race", "age", "race"],
        consent_id="c-9",
    ),
    miss("capture", "FR-SENSITIVE-ATTR", "none", attribute_analysis=[], consent_id=None),
    hit(
        "capture",
        "FR-ON-DEVICE",
        "both",
        storage_location="cloud",
        transmitted_off_device=True,
        transmission_channel="internet",
        encrypted_in_transit=False,
        raw_image_retained=True,
        encrypted_at_rest=False,
    ),
    # rules.md asks for a guardian grantor, not a valid consent: FR-CONSENT-INVALID says the rest
    miss("capture", "FR-MINOR-GUARDIAN", "guardian-invalid", subject_age=0, consent=GUARDIAN_OTHER),
    hit(
        "match",
        "FR-NOTICE",
        "both",
        consent={"notice_version": "n0"},
        deployment={"notice_complete": False},
    ),
    hit(
        "match",
        "FR-NO-COERCION",
        "both",
        subject_declined_fr=True,
        service_denied=True,
        alternative_offered=False,
    ),
    hit("match", "REG-UNKNOWN-DEPLOYMENT", "and-no-consent", deployment=None, consent=None),
]
"""Combinations the per-rule cases leave out: several reasons or outcomes at once."""


def test_every_rule_and_every_consent_reason_is_judged_alike() -> None:
    registry, events, times = case_world([*CASES, *MORE_CASES])
    found = assert_alike(registry, events, broker_times=times)
    fired = {rule_id for _, rule_id, _ in found}
    per_event = {rule.id for rule in CATALOGUE.rules if not rule.is_stream}
    assert fired == per_event
    assert set().union(*(reasons_in(details) for _, _, details in found)) == set(REASONS)


def test_every_case_is_judged_alike_alone_too() -> None:
    """One row per batch: no rule may lean on another row's values; each case is what it says."""
    for case in [*CASES, *MORE_CASES]:
        registry, events, times = case_world([case])
        found = assert_alike(registry, events, ["cac-2025"], times)
        active = CATALOGUE.severity(case.rule, "cac-2025") != "off"
        assert any(rule_id == case.rule for _, rule_id, _ in found) == (case.fires and active), case


# -- hypothesis: random events against random registries ------------------------------------------


def symbols(kind: str, name: str) -> list[str]:
    """The enum symbols of a field (or of its items, or of its non-null branch)."""
    declared = next(f["type"] for f in codec.schema(kind)["fields"] if f["name"] == name)
    if isinstance(declared, list):
        declared = next(branch for branch in declared if branch != "null")
    if declared["type"] == "array":
        declared = declared["items"]
    return declared["symbols"]


PURPOSES = symbols("capture", "purpose")
MOMENTS = st.sampled_from([T - timedelta(days=1), T - US, T, T + US, T + timedelta(days=1)])
CONSENT_IDS = ("c-1", "c-2", "c-3")
DEPLOYMENT_IDS = ("d-1", "d-2")


def one_of_symbols(kind: str, name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(symbols(kind, name))


@st.composite
def consents(draw: st.DrawFn) -> dict[str, Any]:
    return sample(
        "consent",
        consent_id=draw(st.sampled_from(CONSENT_IDS)),
        processor_id=draw(st.sampled_from(["p-1", "p-2"])),
        subject_ref=draw(st.sampled_from(["s-1", "s-2"])),
        grantor=draw(one_of_symbols("consent", "grantor")),
        consent_type=draw(one_of_symbols("consent", "consent_type")),
        purposes=draw(st.lists(st.sampled_from(PURPOSES), max_size=4)),
        covers_internet_transfer=draw(st.booleans()),
        covers_image_retention=draw(st.booleans()),
        notice_version=draw(st.sampled_from(["n0", "n1"])),
        granted_at=draw(MOMENTS),
        expires_at=draw(st.none() | MOMENTS),
        withdrawn_at=draw(st.none() | MOMENTS),
    )


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, Any]:
    return sample(
        "deployment",
        deployment_id=draw(st.sampled_from(DEPLOYMENT_IDS)),
        registered_purposes=draw(st.lists(st.sampled_from(PURPOSES), max_size=4)),
        declared_retention_days=draw(st.sampled_from([0, 30, 90])),
        pipia_date=draw(st.none() | MOMENTS),
        notice_version=draw(st.sampled_from(["n0", "n1"])),
        notice_complete=draw(st.booleans()),
        law_requires_written_consent=draw(st.booleans()),
    )


REGISTRY_RECORDS = st.lists(
    st.tuples(st.just("consent"), consents()) | st.tuples(st.just("deployment"), deployments()),
    max_size=8,
)


@st.composite
def events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(EVENT_KINDS))
    shared = {
        "event_time": draw(st.sampled_from([T - US, T, T + US])),
        "processor_id": draw(st.sampled_from(["p-1", "p-2"])),
        "deployment_id": draw(st.sampled_from([*DEPLOYMENT_IDS, "d-9"])),
        "location_type": draw(one_of_symbols(kind, "location_type")),
        "public_place": draw(st.booleans()),
        "remote_noncontact": draw(st.booleans()),
        "purpose": draw(st.sampled_from(PURPOSES)),
        "legal_basis": draw(one_of_symbols(kind, "legal_basis")),
        "subject_ref": draw(st.sampled_from(["s-1", "s-2", None])),
        "consent_id": draw(st.sampled_from([*CONSENT_IDS, "c-9", None])),
        "subject_age": draw(st.sampled_from([None, 0, 10, 13, 14, 30])),
    }
    if kind == "capture":
        own = {
            "signage_present": draw(st.booleans()),
            "capture_zone_approved": draw(st.booleans()),
            "attribute_analysis": draw(
                st.lists(one_of_symbols("capture", "attribute_analysis"), max_size=3)
            ),
            "raw_image_retained": draw(st.booleans()),
            "anonymized": draw(st.booleans()),
            "retention_days": draw(st.sampled_from([0, 29, 30, 31, 90, 91])),
            "storage_location": draw(one_of_symbols("capture", "storage_location")),
            "transmitted_off_device": draw(st.booleans()),
            "transmission_channel": draw(
                st.none() | one_of_symbols("capture", "transmission_channel")
            ),
            "encrypted_at_rest": draw(st.booleans()),
            "encrypted_in_transit": draw(st.booleans()),
        }
    else:
        own = {
            "match_mode": draw(one_of_symbols("match", "match_mode")),
            "alternative_available": draw(st.booleans()),
            "alternative_offered": draw(st.booleans()),
            "subject_declined_fr": draw(st.booleans()),
            "service_denied": draw(st.booleans()),
            "manual_review_id": draw(st.sampled_from([None, "r-1"])),
        }
    return kind, sample(kind, **shared, **own)


@settings(max_examples=150, deadline=None)
@given(
    first=REGISTRY_RECORDS,
    later=REGISTRY_RECORDS,
    batch=st.lists(events(), min_size=1, max_size=25),
)
def test_random_events_and_registries_are_judged_alike(
    first: list[tuple[str, dict[str, Any]]],
    later: list[tuple[str, dict[str, Any]]],
    batch: Events,
) -> None:
    registry = Registry()
    for kind, record in first:
        registry.apply(kind, record)
    assert_alike(registry, batch)
    for kind, record in later:  # records that arrive between two batches
        registry.apply(kind, record)
    assert_alike(registry, batch)


# -- the registry changing under the rules --------------------------------------------------------


def capture(**overrides: Any) -> tuple[str, dict[str, Any]]:
    return "capture", sample("capture", **overrides)


def test_records_applied_after_a_batch_are_seen_by_the_next() -> None:
    registry = Registry()
    registry.apply("consent", sample("consent"))
    registry.apply("deployment", sample("deployment"))
    events = [capture(), capture(consent_id="c-2", subject_ref="s-2"), capture(deployment_id="d-2")]
    rules = ColumnarRules("cac-2025", registry)
    batches = decoded_batches(events)
    before = {(row, rule_id) for row, rule_id, _ in rules.evaluate("capture", batches["capture"])}
    assert before == {
        (1, "FR-PUBLIC-PURPOSE"),
        (1, "FR-CONSENT-MISSING"),
        (2, "REG-UNKNOWN-DEPLOYMENT"),
    }
    registry.apply("consent", sample("consent", withdrawn_at=T - timedelta(days=1)))
    registry.apply("consent", sample("consent", consent_id="c-2", subject_ref="s-2"))
    registry.apply("deployment", sample("deployment", notice_complete=False))
    registry.apply("deployment", sample("deployment", deployment_id="d-2"))
    after = assert_alike(registry, events, ["cac-2025"])
    assert {(row, rule_id) for row, rule_id, _ in after} == {
        (0, "FR-PUBLIC-PURPOSE"),
        (0, "FR-CONSENT-WITHDRAWN"),
        (0, "FR-NOTICE"),
        (1, "FR-NOTICE"),
        (2, "FR-PUBLIC-PURPOSE"),
        (2, "FR-CONSENT-WITHDRAWN"),
    }


def consent_for(n: int, withdrawn: bool = False) -> dict[str, Any]:
    return sample(
        "consent",
        consent_id=f"c-{n}",
        subject_ref=f"s-{n % 7}",
        withdrawn_at=T - US if withdrawn else None,
    )


def test_compaction_keeps_results_identical() -> None:
    """Records trickle in between batches: new ones first, then ones replacing earlier ones."""
    registry = Registry()
    registry.apply("deployment", sample("deployment"))
    events = [
        capture(consent_id=f"c-{n}", subject_ref=f"s-{n % 7}", public_place=bool(n % 2))
        for n in range(40)
    ]
    for n in range(30):
        registry.apply("consent", consent_for(n))
    assert_alike(registry, events, ["cac-2025"])
    columns = registry.columns
    chunks = []
    for n in range(30, 40):  # one new consent per batch: small chunks after the first
        registry.apply("consent", consent_for(n))
        assert_alike(registry, events, ["cac-2025"])
        chunks.append(columns.chunks("consent"))
    assert chunks == [2, 3, 4, 5, 6, 7, 8, 2, 3, 4]  # the 8 small ones merged into one
    assert columns.rows("consent") == 40
    for round_ in range(40):  # two replaced per batch, withdrawn or not
        for n in (round_ * 2 % 40, round_ * 2 % 40 + 1):
            registry.apply("consent", consent_for(n, withdrawn=(n + round_) % 3 == 0))
        found = assert_alike(registry, events, ["cac-2025"])
        assert columns.chunks("consent") <= MAX_CHUNKS
        assert 40 <= columns.rows("consent") <= 40 * 4 // 3  # a quarter dead at most
        if round_ % 9 == 8:
            columns.compact()
            assert columns.chunks("consent") == 1 and columns.rows("consent") == 40
            assert ColumnarRules("cac-2025", registry).evaluate("capture", batch(events)) == found
    assert {rule_id for _, rule_id, _ in found} >= {"FR-CONSENT-WITHDRAWN", "FR-PUBLIC-PURPOSE"}


def batch(events: Events) -> pa.RecordBatch:
    """The one batch the native decoder makes of events of one kind."""
    (decoded,) = decoded_batches(events).values()
    return decoded


def test_columns_made_late_hold_every_record_so_far() -> None:
    registry = Registry()
    registry.apply("consent", sample("consent", purposes=[]))
    registry.apply("consent", sample("consent"))  # replaces the first before any batch
    registry.apply("deployment", sample("deployment"))
    assert assert_alike(registry, [capture(), ("match", sample("match"))]) == []


def test_empty_batch_and_empty_registry() -> None:
    registry = Registry()
    batches = decoded_batches([capture()])
    rules = ColumnarRules("cac-2025", registry)
    assert rules.evaluate("capture", batches["capture"].slice(0, 0)) == []
    assert [rule_id for _, rule_id, _ in rules.evaluate("capture", batches["capture"])] == [
        "REG-UNKNOWN-DEPLOYMENT",
        "FR-PUBLIC-PURPOSE",
        "FR-CONSENT-MISSING",
    ]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="not 'consent'"):
        ColumnarRules("cac-2025", Registry()).evaluate("consent", pa.table({"x": [1]}))
