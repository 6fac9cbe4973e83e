"""Row hashes and Merkle roots (the native code) against the encoding docs/verify.md gives."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from consumers.trail.ledger import TableColumns, batch_ledger, rows_table
from consumers.trail.proofs import audit_path, root_from_path
from consumers.trail.row_hashes import canonical, merkle_root, row_hashes, row_keys


def reference_value(value: object, kind: pa.DataType) -> bytes:
    """One value as docs/verify.md writes it."""
    if value is None:
        return b"\x00"
    if pa.types.is_boolean(kind):
        body = bytes([value])
    elif pa.types.is_int64(kind):
        body = struct.pack("<q", value)
    elif pa.types.is_timestamp(kind):
        body = struct.pack("<q", int(value.timestamp() * 1_000_000))
    elif pa.types.is_float64(kind):
        body = struct.pack("<d", value)
    elif pa.types.is_list(kind):
        body = struct.pack("<Q", len(value)) + b"".join(
            struct.pack("<Q", len(item.encode())) + item.encode() for item in value
        )
    else:
        raw = value if isinstance(value, bytes) else value.encode()
        body = struct.pack("<Q", len(raw)) + raw
    return b"\x01" + body


def reference_hashes(table: pa.Table) -> list[bytes]:
    return [
        hashlib.sha256(
            b"".join(
                reference_value(table.column(i)[row].as_py(), table.schema.field(i).type)
                for i in range(table.num_columns)
            )
        ).digest()
        for row in range(table.num_rows)
    ]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962, section 2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    left, right = reference_root(leaves[:split]), reference_root(leaves[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


T = datetime(2026, 12, 1, 8, 30, 0, 123456, tzinfo=UTC)
MIXED = pa.table(
    {
        "n": pa.array([1, None, -(2**62)], pa.int64()),
        "at": pa.array([T, None, T], pa.timestamp("us", "UTC")),
        "score": pa.array([0.25, 1.0, None], pa.float64()),
        "flag": pa.array([True, False, None]),
        "text": pa.array(["a", "", None]),
        "raw": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "items": pa.array([["x", "yz"], [], None], pa.list_(pa.string())),
    }
)


def test_row_hashes_follow_the_documented_encoding() -> None:
    assert row_hashes(MIXED).to_pylist() == reference_hashes(MIXED)


def test_a_large_table_hashed_in_parts_gives_each_row_its_own_hash() -> None:
    """Past a few thousand rows the hashing is split over threads: every part in its place."""
    numbered = pa.table({"n": pa.array(range(9_001), pa.int64())})
    large = pa.concat_tables([numbered, numbered.slice(0, 5)])  # two chunks
    expected = reference_hashes(large.combine_chunks())
    assert row_hashes(large).to_pylist() == expected
    assert row_hashes(large.combine_chunks()).to_pylist() == expected


def test_a_row_hashes_alike_however_its_columns_come() -> None:
    """As the validator's Python rows, and as the store gives them back (dictionaries,
    narrower integers, float32, milliseconds, large strings)."""
    names = ["n", "at", "score", "text", "items", "headers"]
    from_rows = rows_table(
        names,
        [[7], [T.replace(microsecond=123000)], [0.5], ["a"], [["x"]], [{"b": "2", "a": "1"}]],
        frozenset({"headers"}),
    )
    from_store = pa.table(
        {
            "n": pa.array([7], pa.uint32()),
            "at": pa.array([T.replace(microsecond=123000)], pa.timestamp("ms", "UTC")),
            "score": pa.array([0.5], pa.float32()),
            "text": pa.array(["a"]).dictionary_encode(),
            "items": pa.array([[b"x"]], pa.list_(pa.binary())),
            "headers": pa.array([[("a", "1"), ("b", "2")]], pa.map_(pa.string(), pa.string())),
        }
    )
    as_hashed = [
        row_hashes(canonical(table, names, frozenset({"items"}))).to_pylist()
        for table in (from_rows, from_store)
    ]
    assert as_hashed[0] == as_hashed[1]


def test_a_column_the_rows_lack_hashes_as_the_store_keeps_it() -> None:
    """A capture has no match fields: null, or an empty list for an array."""
    lacking = canonical(pa.table({"n": [1]}), ["n", "gallery_id", "tags"], frozenset({"tags"}))
    stored = canonical(
        pa.table({"n": [1], "gallery_id": pa.nulls(1, pa.string()), "tags": [[]]}),
        ["n", "gallery_id", "tags"],
        frozenset({"tags"}),
    )
    assert row_hashes(lacking).to_pylist() == row_hashes(stored).to_pylist()


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 4_096, 9_001])
def test_merkle_roots_are_rfc_6962s_over_the_sorted_leaves(count: int) -> None:
    leaves = [hashlib.sha256(str(n).encode()).digest() for n in range(count)]
    assert merkle_root(leaves) == reference_root(sorted(leaves))
    assert merkle_root(list(reversed(leaves))) == merkle_root(leaves), "any order"
    as_array = pa.array([b"\x00" * 32, *reversed(leaves)], pa.binary(32))
    assert merkle_root(as_array.slice(1)) == merkle_root(leaves), "an Arrow array, sliced"


def test_a_batch_ledger_is_a_row_per_table_whose_hashes_give_its_roots() -> None:
    events = MIXED.append_column("topic", pa.array(["t"] * 3)).append_column(
        "partition", pa.array([0, 0, 1])
    )
    events = events.append_column("offset", pa.array([5, 6, 5]))
    violations = pa.table({"violation_id": ["v-1", "v-2"], "rule_id": ["R", "S"]})
    columns = {
        "events": TableColumns(tuple(MIXED.column_names), frozenset({"items"}), frozenset()),
        "violations": TableColumns(("violation_id", "rule_id"), frozenset(), frozenset()),
    }
    tables = [("events", events), ("violations", violations), ("checkpoints", violations)]
    ledger = batch_ledger("c-1", "tok", tables, columns)
    assert ledger is not None
    rows = ledger.rows.to_pylist()
    assert [(r["chain"], r["batch"], r["table"]) for r in rows] == [
        ("c-1", "tok", "events"),
        ("c-1", "tok", "violations"),
    ], "one row per digested table, none for the others"
    assert rows[0]["row_keys"] == ["t/0/5", "t/0/6", "t/1/5"]
    assert rows[0]["row_hashes"] == reference_hashes(MIXED)
    assert rows[1]["row_keys"] == ["v-1", "v-2"]
    assert [(root.table, root.rows, root.root) for root in ledger.roots] == [
        (row["table"], len(row["row_hashes"]), merkle_root(row["row_hashes"])) for row in rows
    ]


def test_row_keys_name_each_row() -> None:
    events = pa.table({"topic": ["t"], "partition": pa.array([2], pa.uint32()), "offset": [9]})
    assert row_keys(events, "events").to_pylist() == ["t/2/9"]


def test_row_keys_are_the_same_text_however_the_store_hands_the_columns_back() -> None:
    """Dictionary or plain text, bytes or text, any integer width: one key per row."""
    big = 2**63 + 5
    written = pa.table({
        "topic": pa.array(["faceaudit.events.v1", "x"]).dictionary_encode(),
        "partition": pa.array([0, 11], pa.uint32()),
        "offset": pa.array([big, 7], pa.uint64()),
    })  # fmt: skip
    read_back = pa.table({
        "topic": pa.array([b"faceaudit.events.v1", b"x"], pa.binary()),
        "partition": pa.array([0, 11], pa.int64()),
        "offset": pa.array([big, 7], pa.uint64()),
    })  # fmt: skip
    expected = [f"faceaudit.events.v1/0/{big}", "x/11/7"]
    assert row_keys(written, "events").to_pylist() == expected
    assert row_keys(read_back, "events").to_pylist() == expected
    ids = pa.table({"violation_id": pa.array([b"ab12"], pa.binary())})
    assert row_keys(ids, "violations").to_pylist() == ["ab12"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_every_leafs_audit_path_leads_to_the_root(count: int) -> None:
    leaves = sorted(hashlib.sha256(str(n).encode()).digest() for n in range(count))
    root = reference_root(leaves)
    for index, leaf in enumerate(leaves):
        path = audit_path(index, leaves)
        assert root_from_path(index, count, leaf, path) == root
        assert root_from_path(index, count, b"\x00" * 32, path) != root
    assert root_from_path(count, count, leaves[0], []) is None
