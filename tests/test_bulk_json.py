"""JSON lines read in bulk (``record_batches``) give exactly what ``records()`` gives.

Files are generated with hypothesis: records of every kind with arbitrary
field values, written in the contract's JSON form in many spellings (key
order, spacing, escapes, timestamp forms, optional fields left out), mixed
with lines that are wrong every way a line can be (bad JSON, another shape,
wrong types, unknown or missing fields, negative counts, integers too wide)
and with blank lines. The native reader must take only lines the per-line
path accepts, with the same values, and leave every other line to it, so
the bulk read reports the same bad lines and yields the same records.
Chunks are made small in the generated tests so lines meet chunk ends.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from bulk_reference import Tables, assert_bulk_is_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import sample
from test_check import chained
from test_native_decode import records

from consumers.bulk_json import json_tables
from consumers.readers import JsonLinesSource, open_source
from producers.fleet import Fleet
from schemas import codec
from schemas.topics import EVENT_KINDS, KINDS

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
# The codec reads a violation's JSON form too, so the checker accepts such a line.
VIOLATION = {
    **{field["name"]: "x" for field in codec.schema("violation")["fields"]},
    "event_id": None,
    "articles": ["PIPL-26"],
    "event_time": T0,
    "detected_at": T0,
}
# Which kinds the native reader takes: events only, and every kind (the default).
TAKEN = pytest.mark.parametrize("native_kinds", [EVENT_KINDS, KINDS], ids=["events", "all"])


def source_of(text: bytes) -> JsonLinesSource:
    source = open_source("-", io.BytesIO(text))
    assert isinstance(source, JsonLinesSource)
    return source


def bulk(source: JsonLinesSource, native_kinds: tuple[str, ...], chunk_bytes: int) -> Tables:
    """The bulk read of ``source`` with chunks of ``chunk_bytes`` and the kinds taken natively."""
    data = source._native
    assert data is not None

    def tables(on_bad: Callable[[str], None]) -> Iterator[tuple[str, pa.Table]]:
        return json_tables(source.name, data, on_bad, chunk_bytes, native_kinds)

    return tables


# -- lines, as hypothesis writes them ---------------------------------------------


def timestamp_text(moment: datetime, spelling: int) -> str:
    """``moment`` in one of many ISO-8601 spellings, not all of which the codec accepts."""
    offset = timezone(timedelta(hours=8, minutes=30))
    forms = [
        lambda: moment.isoformat().replace("+00:00", "Z"),
        lambda: moment.isoformat(),
        lambda: moment.astimezone(offset).isoformat(),
        lambda: moment.astimezone(timezone(-timedelta(hours=5))).isoformat(timespec="seconds"),
        lambda: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        lambda: moment.replace(tzinfo=None).isoformat(),  # no zone: refused
        lambda: moment.isoformat(sep=" "),  # accepted, but not the native spelling
        lambda: moment.strftime("%Y%m%dT%H%M%SZ"),  # basic format, likewise
        lambda: moment.isoformat().replace("+00:00", "z"),  # refused
        lambda: moment.isoformat()[:-6] + ".1234567Z",  # seven digits: truncated by Python
        lambda: moment.isoformat().replace("T", "t"),
        lambda: "2026-02-30T00:00:00Z",
    ]
    try:
        return forms[spelling % len(forms)]()
    except (OverflowError, ValueError):  # no such moment in that zone, near year 1 or 9999
        return forms[0]()


def json_value(value: Any, spelling: int) -> Any:
    if isinstance(value, datetime):
        return timestamp_text(value, spelling)
    if isinstance(value, bytes):  # standard base64, or (now and then) not quite
        text = base64.b64encode(value).decode()
        return text if spelling % 5 else text.rstrip("=") + "-_"
    return value


def repaired(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ints within 32 bits and its counts not negative."""
    fixed = dict(record)
    for field in codec.schema(kind)["fields"]:
        value = fixed[field["name"]]
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if "int" in (field["type"] if isinstance(field["type"], list) else [field["type"]]):
            value = value % 2**31
        if field["name"] in codec.NON_NEGATIVE.get(kind, ()):
            value = abs(value)
        fixed[field["name"]] = value
    return fixed


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A record of any kind in JSON form: mostly good, or made bad by a value."""
    kind = draw(st.sampled_from(KINDS))
    record = draw(records(kind))
    if draw(st.integers(0, 3)):
        record = repaired(kind, record)
    spelling = draw(st.one_of(st.just(0), st.integers(0, 40)))
    obj = {"type": kind} | {name: json_value(v, spelling) for name, v in record.items()}
    optional = [f["name"] for f in codec.schema(kind)["fields"] if "default" in f]
    for name in draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []:
        if obj[name] is None:
            del obj[name]
    keys = draw(st.permutations(list(obj)))
    return {key: obj[key] for key in keys}


MUTATIONS = (
    "none",
    "none",
    "none",
    "drop a field",
    "unknown field",
    "wrong type",
    "no type",
    "unknown type",
    "cut short",
    "trailing garbage",
    "not an object",
    "blank",
    "duplicate key",
    "float for an int",
    "huge integer",
    "escaped key",
    "control character",
)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One line (without its newline) of a JSON-lines file."""
    obj = draw(json_objects())
    how = draw(st.sampled_from(MUTATIONS))
    fields = [key for key in obj if key != "type"]
    field = draw(st.sampled_from(fields))
    if how == "drop a field":
        del obj[field]
    elif how == "unknown field":
        obj[draw(st.sampled_from(["extra", "operater_id", "Type"]))] = None
    elif how == "wrong type":
        obj[field] = draw(st.sampled_from([True, 0, -3, 1.5, "x", None, [], {}, ["race"]]))
    elif how == "no type":
        del obj["type"]
    elif how == "unknown type":
        obj["type"] = draw(st.sampled_from(["selfie", "violation", 5, None, "Capture"]))
    elif how == "float for an int":
        obj[field] = float(obj[field]) if isinstance(obj[field], int) else 30.0
    elif how == "huge integer":
        obj[field] = draw(st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30]))
    if how == "duplicate key":
        text = encode(draw, obj, padded=False)
        value = draw(st.sampled_from([obj.get(field), None, "x", 0, -1]))
        again = f', "{field}": {json.dumps(value)}}}'.encode()
        return text[:-1] + again
    text = encode(draw, obj)
    if how == "cut short":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if how == "trailing garbage":
        return text + draw(st.sampled_from([b"x", b" {}", b",", b"\x0c", b"\xff"]))
    if how == "not an object":
        return draw(st.sampled_from([b"[1, 2]", b'"capture"', b"null", b"12", b"NaN"]))
    if how == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t", b"\r", b"\x0b\x0c ", b"  \t\r"]))
    if how == "escaped key":
        escaped = f'"\\u{ord(field[0]):04x}{field[1:]}"'.encode()
        return text.replace(f'"{field}"'.encode(), escaped, 1)
    if how == "control character":
        return text.replace(b'": "', b'": "\x01', 1)
    return text


def encode(draw: st.DrawFn, obj: dict[str, Any], padded: bool = True) -> bytes:
    """``obj`` as one line of JSON, spaced and escaped one of several ways."""
    ascii_only = draw(st.booleans())
    separators = draw(st.sampled_from([(", ", ": "), (",", ":"), (" ,  ", " :\t")]))
    text = json.dumps(obj, ensure_ascii=ascii_only, separators=separators, allow_nan=True)
    if padded and draw(st.booleans()):
        text = f" {text}\t"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def files(draw: st.DrawFn) -> bytes:
    body = draw(st.lists(lines(), min_size=1, max_size=25))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(body), max_size=len(body)))
    text = b"".join(line + end for line, end in zip(body, ends, strict=True))
    return text if draw(st.booleans()) else text.rstrip(b"\r\n")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=files(), chunk_bytes=st.integers(1, 3000), all_kinds=st.booleans())
def test_generated_files_read_in_bulk_as_line_by_line(
    text: bytes, chunk_bytes: int, all_kinds: bool
) -> None:
    source = source_of(text)
    native_kinds = KINDS if all_kinds else EVENT_KINDS
    assert_bulk_is_reference(source, bulk(source, native_kinds, chunk_bytes))


# -- written out -------------------------------------------------------------------


def jsonl(*objects: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)


def capture_json(**overrides: Any) -> dict[str, Any]:
    return codec.to_json("capture", sample("capture")) | overrides


@TAKEN
@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"type": "capture"}', id="fields missing"),
        pytest.param(b"{}", id="empty object"),
        pytest.param(b"\xef\xbb\xbf" + jsonl(capture_json())[:-1], id="byte order mark"),
        pytest.param(jsonl(capture_json(event_id="\ud83d\ude00"))[:-1], id="surrogate pair"),
        pytest.param(
            jsonl(capture_json())[:-1].replace(b'"p-1"', b'"\\ud83d"'), id="lone surrogate"
        ),
        pytest.param(jsonl(capture_json(event_id="a\x00b"))[:-1], id="escaped NUL"),
        pytest.param(jsonl(capture_json(subject_age=-1))[:-1], id="negative count"),
        pytest.param(jsonl(capture_json(retention_days=2**31))[:-1], id="int too wide"),
        pytest.param(jsonl(capture_json(event_time="2026-03-01T08:00:00+08:00"))[:-1], id="offset"),
        pytest.param(jsonl(capture_json(event_time="0001-01-01T00:30:00+01:00"))[:-1], id="year 0"),
        pytest.param(jsonl(capture_json(attribute_analysis=["race", "age"]))[:-1], id="array"),
        pytest.param(jsonl(capture_json(attribute_analysis=["selfie"]))[:-1], id="bad symbol"),
        pytest.param(jsonl(capture_json(purpose="Payment"))[:-1], id="symbol case"),
        pytest.param(
            jsonl(codec.to_json("match", sample("match")) | {"score": 1e300})[:-1], id="float huge"
        ),
        pytest.param(
            jsonl(codec.to_json("match", sample("match")) | {"score": 3})[:-1], id="int score"
        ),
        pytest.param(
            jsonl(codec.to_json("match", sample("match")))[:-1].replace(b"0.87", b"1e400"),
            id="float overflow",
        ),
        pytest.param(jsonl(codec.to_json("violation", VIOLATION))[:-1], id="a violation"),
    ],
)
def test_written_out_lines(line: bytes, native_kinds: tuple[str, ...]) -> None:
    text = jsonl(capture_json()) + line + b"\n" + jsonl(capture_json(event_id="last"))
    source = source_of(text)
    assert_bulk_is_reference(source, bulk(source, native_kinds, 1 << 20))


@TAKEN
def test_a_fleet_export_with_registry_records(
    tmp_path: Path, native_kinds: tuple[str, ...]
) -> None:
    """What the bench reads: a fleet's registry, then chained events, one per line."""
    fleet = Fleet(devices=30, seed=7, violation_rate=0.2, start=T0)
    events = chained([(kind, record) for kind, record, _ in fleet.events(3_000)])
    path = tmp_path / "fleet.jsonl"
    lines = [codec.to_json(kind, record) for kind, record in [*fleet.registry_records(), *events]]
    path.write_bytes(jsonl(*lines))
    source = open_source(str(path), io.BytesIO())
    assert isinstance(source, JsonLinesSource)
    got = assert_bulk_is_reference(source, bulk(source, native_kinds, 64 * 1024))
    assert sum(table.num_rows for _, table in got) == len(lines)


def test_record_batches_reads_files_and_standard_input(tmp_path: Path) -> None:
    text = jsonl(capture_json(), {"type": "selfie"}, codec.to_json("consent", sample("consent")))
    path = tmp_path / "in.jsonl"
    path.write_bytes(text)
    for source in (open_source(str(path), io.BytesIO()), source_of(text)):
        got = assert_bulk_is_reference(source)
        assert [kind for kind, _ in got] == ["capture", "consent"]


def test_payload_hashes_are_null_and_positions_are_line_numbers() -> None:
    text = b"\n" + jsonl(capture_json(), codec.to_json("match", sample("match")), capture_json())
    [(first, captures), (second, matches)] = source_of(text).record_batches(print)
    assert (first, second) == ("capture", "match")
    assert captures.column("message_index").to_pylist() == [2, 4]
    assert matches.column("message_index").to_pylist() == [3]
    assert captures.column("payload_sha256").null_count == 2
