"""`faceaudit check`: files of records judged offline with the streaming validator's rules."""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from arrow_events import chained
from samples import sample
from signing import json_lines

from consumers.check import check, iso_z
from consumers.readers import open_sources
from consumers.rules.catalogue import DEFAULT_PATH as DEFAULT_CATALOGUE
from consumers.rules.catalogue import Catalogue, load_catalogue
from consumers.violation import Violation
from faceaudit.cli import main
from producers.fleet import Fleet
from schemas import codec
from schemas.signatures import SIGNED_KINDS

CATALOGUE = load_catalogue()
STREAM_RULES = frozenset(rule.id for rule in CATALOGUE.rules if rule.is_stream)
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
REGISTRY = [("deployment", sample("deployment")), ("consent", sample("consent"))]
VIOLATION_KEYS = {
    "violation_id",
    "event_id",
    "rule_id",
    "severity",
    "profile",
    "catalogue_version",
    "articles",
    "message",
    "details",
    "processor_id",
    "deployment_id",
    "device_id",
    "region_code",
    "event_time",
}

Records = Iterable[tuple[str, dict[str, Any]]]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def violations(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def fired(self) -> list[tuple[str | None, str]]:
        return [(v["event_id"], v["rule_id"]) for v in self.violations]

    @property
    def error_lines(self) -> list[str]:
        """stderr without the closing summary line."""
        return [line for line in self.err.splitlines() if not line.startswith("faceaudit check:")]


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Result:
    code = main(["check", *map(str, args)])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def write_jsonl(path: Path, records: Records) -> Path:
    """The records as JSON lines, signed by their processors' test keys, with those keys."""
    lines = json_lines(records)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_avro(path: Path, kind: str, records: Iterable[dict[str, Any]]) -> Path:
    with path.open("wb") as out:
        fastavro.writer(out, codec.schema(kind), list(records))
    return path


def event_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def capture(n: int, **overrides: Any) -> dict[str, Any]:
    """The n-th capture of device dev-1, one second apart, compliant unless overridden."""
    numbered = {"event_id": event_id(n), "event_time": T0 + timedelta(seconds=n), "device_seq": n}
    return sample("capture", **(numbered | overrides))


def write_avro_by_kind(directory: Path, events: Records) -> list[Path]:
    """One Avro container per kind (a container holds one schema), in first-seen kind order;
    the signed kinds in a JSON-lines file instead, which carries their signatures."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    signed = []
    for kind, record in events:
        if kind in SIGNED_KINDS:
            signed.append((kind, record))
        else:
            by_kind.setdefault(kind, []).append(record)
    registry = [write_jsonl(directory / "signed.jsonl", signed)] if signed else []
    containers = [write_avro(directory / f"{kind}.avro", kind, rs) for kind, rs in by_kind.items()]
    return registry + containers


# -- exit codes and output ------------------------------------------------------


def test_compliant_input_exits_0_and_says_what_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    match = sample("match", device_seq=1)
    path = write_jsonl(
        tmp_path / "in.jsonl", [*REGISTRY, ("capture", capture(0)), ("match", match)]
    )
    result = run(capsys, path)
    assert (result.code, result.out, result.error_lines) == (0, "", [])
    summary = result.err.splitlines()[-1]
    for words in ("7 records", "2 events", "0 violations", "0 bad records", "events/s"):
        assert words in summary


def test_a_violation_exits_1_with_a_complete_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = capture(0, location_type="hotel_room", public_place=False)
    result = run(capsys, write_jsonl(tmp_path / "in.jsonl", [*REGISTRY, ("capture", event)]))
    assert result.code == 1
    [violation] = result.violations
    assert violation.keys() >= VIOLATION_KEYS
    rule = CATALOGUE.rule("FR-PRIVATE-SPACE")
    assert violation["rule_id"] == rule.id
    assert violation["severity"] == rule.severity["cac-2025"]
    assert violation["profile"] == "cac-2025"
    assert violation["catalogue_version"] == CATALOGUE.version
    assert violation["articles"] == list(rule.articles)
    assert violation["message"] == rule.format_message(violation["details"])
    assert violation["event_time"] == iso_z(event["event_time"])
    assert violation["event_time"].endswith("Z")
    for field in ("event_id", "processor_id", "deployment_id", "device_id", "region_code"):
        assert violation[field] == event[field]
    assert len(violation["violation_id"]) == 32


def test_policy_selects_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """FR-HIGH-STAKES-MANUAL is off in cac-2025 and advisory in the draft."""
    purposes = ["social_assistance"]
    records = [
        ("deployment", sample("deployment", registered_purposes=purposes)),
        ("consent", sample("consent", purposes=purposes)),
        ("match", sample("match", purpose="social_assistance", manual_review_id=None)),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    assert run(capsys, path).code == 0
    for flag in ("--policy", "--profile"):
        result = run(capsys, path, flag, "cac-2023-draft")
        assert result.code == 1
        [violation] = result.violations
        assert violation["rule_id"] == "FR-HIGH-STAKES-MANUAL"
        assert violation["profile"] == "cac-2023-draft"


def test_table_counts_by_severity_and_rule_then_lists_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = {"location_type": "toilet", "public_place": False}
    events = [
        capture(0, **private),
        capture(1, signage_present=False),
        capture(2, **private),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", [*REGISTRY, *(("capture", e) for e in events)])
    result = run(capsys, path, "--format", "table")
    assert result.code == 1
    lines = result.out.splitlines()
    counts = [line.split() for line in lines if line.split()[-1:] in (["2"], ["1"])]
    assert counts == [["critical", "FR-PRIVATE-SPACE", "2"], ["high", "FR-PUBLIC-SIGNAGE", "1"]]
    listed = [line for line in lines if line.startswith(iso_z(T0)[:10])]
    expected = [("FR-PRIVATE-SPACE", 0), ("FR-PUBLIC-SIGNAGE", 1), ("FR-PRIVATE-SPACE", 2)]
    assert len(listed) == len(expected)
    for line, (rule_id, n) in zip(listed, expected, strict=True):
        event = events[n]
        message = CATALOGUE.rule(rule_id).format_message({"location_type": event["location_type"]})
        assert line.split()[:4] == [
            iso_z(event["event_time"]),
            rule_id,
            CATALOGUE.severity(rule_id, "cac-2025"),
            event["event_id"],
        ]
        assert line.endswith(message)


def test_table_without_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [*REGISTRY, ("capture", capture(0))])
    result = run(capsys, path, "--format", "table")
    assert result.code == 0
    assert result.out.startswith("No violations")


@pytest.mark.parametrize("output_format", ["jsonl", "table"])
def test_output_goes_to_the_named_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    event = capture(0, signage_present=False)
    path = write_jsonl(tmp_path / "in.jsonl", [*REGISTRY, ("capture", event)])
    target = tmp_path / "violations.out"
    result = run(capsys, path, "--format", output_format, "--output", target)
    assert (result.code, result.out) == (1, "")
    written = target.read_text(encoding="utf-8")
    assert "FR-PUBLIC-SIGNAGE" in written
    assert event["event_id"] in written


# -- registry records are loaded first --------------------------------------------


def test_registry_records_after_the_events_still_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [("capture", capture(0)), ("match", sample("match", device_seq=1))]
    alone = run(capsys, write_jsonl(tmp_path / "events.jsonl", events))
    assert {rule for _, rule in alone.fired} >= {"REG-UNKNOWN-DEPLOYMENT", "FR-CONSENT-MISSING"}
    result = run(capsys, write_jsonl(tmp_path / "all.jsonl", [*events, *REGISTRY]))
    assert (result.code, result.out) == (0, "")


WITHDRAWN = sample("consent", withdrawn_at=T0 - timedelta(days=1))
GRANTED = sample("consent")


@pytest.mark.parametrize(
    ("first", "last", "rewritten"),
    [(GRANTED, WITHDRAWN, False), (WITHDRAWN, GRANTED, True)],
    ids=["withdrawal-last", "grant-last"],
)
def test_the_later_consent_record_wins_but_a_withdrawal_stays(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    first: dict[str, Any],
    last: dict[str, Any],
    rewritten: bool,
) -> None:
    records = [
        ("deployment", sample("deployment")),
        ("consent", first),
        ("capture", capture(0, public_place=False)),
        ("consent", last),
    ]
    result = run(capsys, write_jsonl(tmp_path / "in.jsonl", records))
    assert (capture(0)["event_id"], "FR-CONSENT-WITHDRAWN") in result.fired
    assert ((None, "REG-CONSENT-REWRITTEN") in result.fired) == rewritten
    if rewritten:
        [violation] = [v for v in result.violations if v["rule_id"] == "REG-CONSENT-REWRITTEN"]
        withdrawn_at = WITHDRAWN["withdrawn_at"].isoformat()
        assert violation["details"]["changes"] == [f"withdrawal of {withdrawn_at} dropped"]
        assert violation["severity"] == "critical"


def test_the_later_file_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [*REGISTRY, ("capture", capture(0))])
    second = write_jsonl(tmp_path / "b.jsonl", [("consent", WITHDRAWN)])
    result = run(capsys, first, second)
    assert (capture(0)["event_id"], "FR-CONSENT-WITHDRAWN") in result.fired


def test_a_real_identifier_is_reported_without_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resident_id = "11010519491231002X"
    consent = sample("consent", subject_ref=resident_id)
    match = sample("match", subject_ref=resident_id, operator_id="13800138000")
    path = write_jsonl(tmp_path / "in.jsonl", [REGISTRY[0], ("consent", consent), ("match", match)])
    result = run(capsys, path)
    assert result.fired == [(match["event_id"], "AUDIT-RAW-IDENTIFIER")]
    [violation] = result.violations
    assert violation["details"] == {
        "fields": ["subject_ref", "operator_id"],
        "identifiers": ["resident identity number", "mobile number"],
    }
    assert resident_id not in json.dumps(violation) and "13800138000" not in json.dumps(violation)


# -- bad input ----------------------------------------------------------------------


def test_every_bad_line_is_reported_and_good_lines_are_still_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_capture = codec.to_json("capture", capture(9)) | {"retention_days": "thirty"}
    good = capture(1, signage_present=False)
    lines = [
        *json_lines(REGISTRY, keys=False),
        '{"type": "capture", "event_id": ',
        json.dumps(codec.to_json("capture", good)),
        "[1, 2, 3]",
        '{"type": "selfie"}',
        "",
        '{"event_id": "x"}',
        json.dumps(bad_capture),
        json.dumps(codec.to_json("capture", capture(10)) | {"region_code": "990305"}),
        *json_lines(REGISTRY)[len(REGISTRY) :],  # the key records
    ]
    expected = {  # line number -> words its message must hold
        3: "invalid JSON",
        5: "must be an object",
        6: "selfie",
        8: 'no "type"',
        9: "capture.retention_days",
        10: "capture.region_code must be six digits starting with a province code",
    }
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(capsys, path)
    assert result.code == 2
    assert len(result.error_lines) == len(expected)
    for line, (number, words) in zip(result.error_lines, expected.items(), strict=True):
        assert line.startswith(f"{path}:{number}: ")
        assert words in line
    assert result.fired == [(good["event_id"], "FR-PUBLIC-SIGNAGE")]
    assert f"{len(expected)} bad records" in result.err.splitlines()[-1]


def test_a_missing_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    result = run(capsys, write_jsonl(tmp_path / "in.jsonl", REGISTRY), missing)
    assert (result.code, result.out) == (2, "")
    [line] = result.err.splitlines()
    assert "error" in line
    assert str(missing) in line


def test_an_avro_file_of_another_schema_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = {"type": "record", "name": "Selfie", "fields": [{"name": "x", "type": "int"}]}
    path = tmp_path / "other.avro"
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), [{"x": 1}])
    result = run(capsys, path)
    assert (result.code, result.out) == (2, "")
    [line] = result.err.splitlines()
    assert "Selfie" in line
    assert str(path) in line


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"retention_days": -1}, "capture.retention_days"),
        ({"region_code": "44030"}, "capture.region_code"),
    ],
)
def test_bad_avro_records_are_reported_by_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict[str, Any], named: str
) -> None:
    events = [capture(0), capture(1, **bad), capture(2, signage_present=False)]
    registry = write_jsonl(tmp_path / "registry.jsonl", REGISTRY)
    path = write_avro(tmp_path / "captures.avro", "capture", events)
    result = run(capsys, registry, path)
    assert result.code == 2
    [line] = result.error_lines
    assert line.startswith(f"{path}:record 2: ")
    assert named in line
    after = events[2]["event_id"]  # the unusable record also leaves a hole in the sequence
    assert result.fired == [(after, "FR-PUBLIC-SIGNAGE"), (after, "AUDIT-SEQ-GAP")]


def test_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [*REGISTRY, ("capture", capture(0, signage_present=False))]
    text = "".join(line + "\n" for line in json_lines(records)) + "{\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    result = run(capsys, "-")
    assert result.code == 2
    assert result.fired == [(capture(0)["event_id"], "FR-PUBLIC-SIGNAGE")]
    [line] = result.error_lines
    assert line.startswith(f"<stdin>:{len(json_lines(records)) + 1}: invalid JSON")


# -- Avro input and the stream rules --------------------------------------------------


def test_avro_input_is_judged_like_the_same_records_in_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captures = [
        capture(0),
        capture(1, location_type="changing_room", public_place=False),
        capture(2, retention_days=400, raw_image_retained=True),
        capture(3, consent_id=None, attribute_analysis=["religion"]),
    ]
    matches = [
        sample("match", event_id=event_id(10), device_id="dev-2", alternative_available=False),
        sample("match", event_id=event_id(11), device_id="dev-3", consent_id="c-unknown"),
    ]
    records = [*REGISTRY, *(("capture", c) for c in captures), *(("match", m) for m in matches)]
    from_json = run(capsys, write_jsonl(tmp_path / "all.jsonl", records))
    from_avro = run(capsys, *write_avro_by_kind(tmp_path, records))
    assert from_avro.code == from_json.code == 1

    def per_event(result: Result) -> list[dict[str, Any]]:
        found = [v for v in result.violations if v["rule_id"] not in STREAM_RULES]
        return sorted(found, key=lambda v: (v["event_id"], v["rule_id"]))

    assert per_event(from_json)
    assert per_event(from_avro) == per_event(from_json)


def test_an_older_avro_schema_is_read_through_the_contracts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer schema without an optional field still gives complete records."""
    older = json.loads(Path(codec.__file__).with_name("avro").joinpath("capture.avsc").read_text())
    older["fields"] = [field for field in older["fields"] if field["name"] != "subject_age"]
    event = capture(0, signage_present=False)
    path = tmp_path / "older.avro"
    with path.open("wb") as out:
        record = {name: value for name, value in event.items() if name != "subject_age"}
        fastavro.writer(out, fastavro.parse_schema(older), [record])
    registry = write_jsonl(tmp_path / "registry.jsonl", REGISTRY)
    result = run(capsys, registry, path)
    assert result.fired == [(event["event_id"], "FR-PUBLIC-SIGNAGE")]
    assert result.error_lines == []


def captures_and_matches(count: int, step: timedelta) -> list[tuple[str, dict[str, Any]]]:
    """Device dev-1 alternating capture and match, ``step`` apart, chained."""
    events = []
    for n in range(count):
        numbered = {"event_id": event_id(n), "event_time": T0 + n * step}
        kind = "capture" if n % 2 == 0 else "match"
        events.append((kind, sample(kind, **numbered)))
    return chained(events)


REORDER_WINDOW = timedelta(seconds=CATALOGUE.parameters("cac-2025").reorder_window_seconds)


def test_avro_files_of_one_device_are_judged_as_one_sequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Captures and matches share one sequence but sit in two files; neither file is a gap.

    The events lie further apart than the stream's reorder window: offline no window applies.
    """
    events = captures_and_matches(6, step=REORDER_WINDOW * 2)
    registry = write_jsonl(tmp_path / "registry.jsonl", REGISTRY)
    result = run(capsys, registry, *write_avro_by_kind(tmp_path, events))
    assert (result.code, result.out) == (0, "")


def test_a_tampered_avro_record_breaks_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = captures_and_matches(6, step=REORDER_WINDOW * 2)
    kind, record = events[2]
    tampered = [*events]
    tampered[2] = (kind, record | {"retention_days": 7})  # compliant, but not what was sent
    registry = write_jsonl(tmp_path / "registry.jsonl", REGISTRY)
    result = run(capsys, registry, *write_avro_by_kind(tmp_path, tampered))
    assert result.code == 1
    [violation] = result.violations
    assert violation["rule_id"] == "AUDIT-CHAIN-BREAK"
    assert violation["event_id"] == events[3][1]["event_id"]
    assert violation["details"]["device_seq"] == 3

    as_json = run(capsys, registry, write_jsonl(tmp_path / "tampered.jsonl", tampered))
    assert (as_json.code, as_json.out) == (0, ""), "JSON lines have no payload bytes to check"


def test_a_sequence_gap_is_found_at_the_first_event_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [capture(0), capture(1), capture(4)]
    records = [*REGISTRY, *(("capture", e) for e in events)]
    result = run(capsys, write_jsonl(tmp_path / "in.jsonl", records))
    [violation] = result.violations
    assert violation["rule_id"] == "AUDIT-SEQ-GAP"
    assert violation["event_id"] == events[2]["event_id"]
    assert (violation["details"]["first_missing"], violation["details"]["last_missing"]) == (2, 3)


WINDOW = timedelta(days=CATALOGUE.parameters("cac-2025").deletion_window_days)
WITHDRAWAL = T0


@pytest.mark.parametrize(
    ("latest_event", "deleted_at", "overdue"),
    [
        (WITHDRAWAL + WINDOW + timedelta(hours=1), None, True),
        (WITHDRAWAL + WINDOW - timedelta(hours=1), None, False),
        (WITHDRAWAL + WINDOW + timedelta(hours=1), WITHDRAWAL + timedelta(days=1), False),
    ],
    ids=["window-ended", "window-open", "deleted-in-time"],
)
def test_deletion_overdue_is_judged_as_of_the_latest_event_time(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    latest_event: datetime,
    deleted_at: datetime | None,
    overdue: bool,
) -> None:
    withdrawn = sample("consent", consent_id="c-2", subject_ref="s-2", withdrawn_at=WITHDRAWAL)
    records = [
        *REGISTRY,
        ("consent", withdrawn),
        ("capture", capture(0, event_time=WITHDRAWAL - timedelta(days=1))),
        ("capture", capture(1, event_time=latest_event)),
    ]
    if deleted_at is not None:
        records.append(("deletion", sample("deletion", subject_ref="s-2", deleted_at=deleted_at)))
    result = run(capsys, write_jsonl(tmp_path / "in.jsonl", records))
    found = [v for v in result.violations if v["rule_id"] == "FR-DELETION-OVERDUE"]
    assert len(found) == overdue
    assert result.code == (1 if overdue else 0)
    if overdue:
        [violation] = found
        assert violation["event_id"] is None
        assert violation["event_time"] == iso_z(WITHDRAWAL + WINDOW)
        assert violation["details"]["consent_id"] == "c-2"
        assert violation["details"]["subject_ref"] == "s-2"


@pytest.mark.parametrize("form", ["jsonl", "avro"])
def test_fleet_findings_are_exactly_the_intended_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    """The simulator labels each event with the rules it breaks; the checker must agree."""
    fleet = Fleet(devices=30, seed=7, violation_rate=0.2, start=T0)
    labelled = list(fleet.events(2_000))
    events = chained([(kind, record) for kind, record, _ in labelled])
    intended = Counter(
        (record["event_id"], rule) for _, record, rules in labelled for rule in rules
    )
    records = [*fleet.registry_records(), *events]
    if form == "jsonl":
        paths = [write_jsonl(tmp_path / "fleet.jsonl", records)]
    else:
        paths = write_avro_by_kind(tmp_path, records)
    result = run(capsys, *paths)
    assert result.code == (1 if intended else 0)
    assert Counter(result.fired) == intended


# -- FR-FILING across several inputs ----------------------------------------------------


def filing_match(name: str, second: int) -> tuple[str, dict[str, Any]]:
    """A match of subject `name`, `second` seconds after T0, on a device of its own."""
    record = sample(
        "match",
        event_id=name,
        subject_ref=name,
        device_id=f"dev-{name}",
        event_time=T0 + timedelta(seconds=second),
    )
    return "match", record


def check_with_filing_threshold(paths: list[Path], threshold: int) -> list[Violation]:
    """`check` of `paths` under a catalogue whose FR-FILING threshold is `threshold`."""
    doc = json.loads(Path(DEFAULT_CATALOGUE).read_text(encoding="utf-8"))
    doc["parameters"]["filing_threshold"]["values"]["cac-2025"] = threshold
    catalogue = Catalogue(json.dumps(doc).encode(), Path("catalogue.json"))
    found: list[Violation] = []
    sources = open_sources([str(path) for path in paths], io.BytesIO())
    check(sources, "cac-2025", found.append, pytest.fail, catalogue)
    return found


@pytest.mark.parametrize(
    ("order", "crossing"), [("ab", "s-2"), ("ba", "s-5")], ids=["a-first", "b-first"]
)
def test_filing_counts_the_subjects_of_several_inputs_in_event_time_order(
    tmp_path: Path, order: str, crossing: str
) -> None:
    """The inputs are interleaved by event time (a tie: the earlier input first), so the
    third subject is s-2 of a.jsonl or, with b.jsonl named first, s-5 at the same time."""
    unfiled = sample("deployment", filing_id=None, filing_date=None)
    a = [("deployment", unfiled), *(filing_match(f"s-{n}", 2 * n - 2) for n in (1, 2, 3))]
    b = [filing_match("s-4", 1), filing_match("s-5", 2)]
    files = {"a": write_jsonl(tmp_path / "a.jsonl", a), "b": write_jsonl(tmp_path / "b.jsonl", b)}
    found = check_with_filing_threshold([files[name] for name in order], threshold=3)
    [filing] = [v for v in found if v.rule_id == "FR-FILING"]
    assert (filing.event_id, filing.details["subject_count"]) == (crossing, 3)
