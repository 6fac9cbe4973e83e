"""Avro containers read in bulk (``record_batches``) give exactly what ``records()`` gives.

Containers are generated with hypothesis, in each codec the native reader
reads (null and deflate): records of every kind with arbitrary values,
including what fastavro writes but the codec refuses (ints too wide for 32
bits, negative counts), in blocks of random sizes; some written in the
encodings only fastavro reads (long varints, negative indexes and block
counts, split arrays, odd boolean bytes), so the hash of the plain
re-encoding is put to the test; then cut short, bit-flipped, or given block
counts, sizes and sync markers that do not fit. The bulk read must report
the same bad records by the same numbers and yield the same records with the
same hashes. Only what fastavro's exception says inside ``does not decode
(...)`` may differ.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from bulk_reference import Tables, assert_bulk_is_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import sample
from test_check import chained
from test_native_decode import flip, payload, records, unusual_payloads, varint

from consumers.bulk_avro import container_tables, native_container
from consumers.readers import AvroSource, InputError, open_source
from producers.fleet import Fleet
from schemas import codec
from schemas.topics import KINDS

CODECS = ("null", "deflate")
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
NATIVE_CODECS = pytest.mark.parametrize("codec_name", CODECS)


def same_bad(line: str) -> str:
    """A bad-record line without what the exception said: the readers' words differ there."""
    return re.sub(r"does not decode \(.*\); rest skipped$", "does not decode; rest skipped", line)


def source_of(data: bytes) -> AvroSource:
    source = open_source("-", io.BytesIO(data))
    assert isinstance(source, AvroSource)
    return source


def bulk(source: AvroSource, rows: int) -> Tables:
    """The native read of ``source`` in batches of ``rows``; fails if it is not read natively."""
    assert source._native is not None
    native, header = source._native
    container = native_container(native, source.kind, header, rows)
    assert container is not None, "not read natively"

    def tables(on_bad: Callable[[str], None]) -> Iterator[tuple[str, pa.Table]]:
        return container_tables(container, source.name, source.kind, on_bad)

    return tables


def container(kind: str, rows: list[dict[str, Any]], codec_name: str, interval: int) -> bytes:
    """An Avro container of ``rows`` as fastavro writes one (no checks), blocks of about
    ``interval`` bytes."""
    out = io.BytesIO()
    fastavro.writer(out, codec.schema(kind), rows, codec=codec_name, sync_interval=interval)
    return out.getvalue()


def header(kind: str, codec_name: str) -> tuple[bytes, bytes]:
    """A container's header alone, and its sync marker."""
    data = container(kind, [], codec_name, 1)
    return data, data[-16:]


def block(count: int, data: bytes, sync: bytes, codec_name: str, size: int | None = None) -> bytes:
    """One block: ``count``, the byte size, ``data`` (deflated if so), the sync marker."""
    if codec_name == "deflate":
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = deflater.compress(data) + deflater.flush()
    return varint(count) + varint(len(data) if size is None else size) + data + sync


# -- generated containers -----------------------------------------------------------


@st.composite
def containers(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A container, and whether its header is intact (so the native reader must read it)."""
    kind = draw(st.sampled_from(KINDS))
    codec_name = draw(st.sampled_from(CODECS))
    rows = draw(st.lists(records(kind), max_size=12))
    how = draw(st.sampled_from(("plain", "blocks", "cut", "bit flips", "appended", "unusual")))
    if how in ("plain", "cut", "bit flips", "appended"):
        data = container(kind, rows, codec_name, draw(st.integers(1, 2000)))
        head = len(header(kind, codec_name)[0])
        if how == "cut":
            data = data[: draw(st.integers(head, len(data)))]
        elif how == "bit flips":  # the header too (not the magic): it may stop being one
            bits = draw(st.lists(st.integers(32, 8 * len(data) - 1), min_size=1, max_size=3))
            data = flip(data, bits)
        elif how == "appended":
            data += draw(st.binary(min_size=1, max_size=30))
        return data, how != "bit flips"
    data, sync = header(kind, codec_name)
    bodies = [
        draw(unusual_payloads(kind, row)) if how == "unusual" else payload(kind, row)
        for row in rows
    ]
    while bodies:
        take = draw(st.integers(1, len(bodies)))
        chunk, bodies = bodies[:take], bodies[take:]
        count = take + draw(st.sampled_from((0, 0, 0, -1, 1, -take, -2 * take - 1)))
        extra = draw(st.sampled_from((b"", b"", b"\x00", b"\x02x")))
        marker = sync if draw(st.integers(0, 5)) else bytes(16)
        data += block(count, b"".join(chunk) + extra, marker, codec_name)
    return data, True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=containers(), rows=st.integers(1, 8))
def test_generated_containers_read_in_bulk_as_record_by_record(
    generated: tuple[bytes, bool], rows: int
) -> None:
    data, intact = generated
    try:
        source = source_of(data)
    except InputError:
        assert not intact
        return
    if intact:
        assert_bulk_is_reference(source, bulk(source, rows), same_bad)
    assert_bulk_is_reference(source, same_bad=same_bad)


# -- written out ----------------------------------------------------------------------

GOOD = [sample("capture", device_seq=n) for n in range(3)]
BAD = sample("capture", device_seq=3, retention_days=-1)


def bodies(*rows: dict[str, Any]) -> bytes:
    return b"".join(payload("capture", row) for row in rows)


def last(sync: bytes, codec_name: str) -> bytes:
    """A block of one good record, to show whether reading went on."""
    return block(1, bodies(GOOD[0]), sync, codec_name)


@NATIVE_CODECS
@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param(lambda s, c: block(3, bodies(*GOOD), s, c), id="one block"),
        pytest.param(lambda s, c: block(2**31, bodies(*GOOD), s, c), id="count too large"),
        pytest.param(lambda s, c: block(2, bodies(*GOOD), s, c), id="records left over"),
        pytest.param(
            lambda s, c: block(-1, bodies(*GOOD), s, c) + block(1, bodies(GOOD[0]), s, c),
            id="negative count",
        ),
        pytest.param(
            lambda s, c: block(0, b"", s, c) + block(1, bodies(GOOD[0]), s, c), id="empty block"
        ),
        pytest.param(
            lambda s, c: block(3, bodies(*GOOD), bytes(16), c) + block(1, bodies(GOOD[0]), s, c),
            id="bad sync",
        ),
        pytest.param(lambda s, c: block(3, bodies(*GOOD), s, c, size=-1), id="negative size"),
        pytest.param(lambda s, c: block(3, bodies(*GOOD), s, c, size=10**6), id="size too large"),
        pytest.param(lambda s, c: b"\x80", id="cut inside the count"),
        pytest.param(lambda s, c: varint(3), id="no size"),
        pytest.param(lambda s, c: block(3, bodies(*GOOD), s, c) + b"\x00", id="a zero after"),
        pytest.param(lambda s, c: block(3, bodies(*GOOD), s, c)[:-3], id="sync cut short"),
        pytest.param(lambda s, c: block(4, bodies(GOOD[0], BAD, *GOOD[1:]), s, c), id="bad record"),
    ],
)
def test_written_out_blocks(codec_name: str, blocks: Callable[[bytes, str], bytes]) -> None:
    data, sync = header("capture", codec_name)
    source = source_of(data + blocks(sync, codec_name))
    assert_bulk_is_reference(source, bulk(source, 2), same_bad)


@pytest.mark.parametrize(
    "deflated",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="stream cut short"),
        pytest.param(lambda d: d + b"garbage", id="bytes after the stream"),
        pytest.param(lambda d: b"\xff" + d[1:], id="invalid block type"),
        pytest.param(lambda d: d[:5] + bytes(20) + d[25:], id="zeroed"),
        pytest.param(lambda d: b"", id="empty"),
    ],
)
def test_deflate_blocks_inflate_as_zlib_inflates_them(deflated: Callable[[bytes], bytes]) -> None:
    data, sync = header("capture", "deflate")
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = deflated(deflater.compress(bodies(*GOOD)) + deflater.flush())
    source = source_of(data + varint(3) + varint(len(stream)) + stream + sync)
    assert_bulk_is_reference(source, bulk(source, 2), same_bad)


def test_a_float_that_is_a_signalling_nan_hashes_as_fastavro_rewrites_it() -> None:
    data, sync = header("match", "null")
    body = bytearray(payload("match", sample("match", score=1.5)))
    at = body.index(struct.pack("<f", 1.5))
    body[at : at + 4] = struct.pack("<I", 0x7F800001)
    source = source_of(data + block(1, bytes(body), sync, "null"))
    assert_bulk_is_reference(source, bulk(source, 1), same_bad)


@NATIVE_CODECS
def test_a_fleet_in_containers(tmp_path: Path, codec_name: str) -> None:
    fleet = Fleet(devices=30, seed=7, violation_rate=0.2, start=T0)
    events = chained([(kind, record) for kind, record, _ in fleet.events(2_000)])
    for kind in ("capture", "match"):
        path = tmp_path / f"{kind}.avro"
        rows = [record for k, record in events if k == kind]
        path.write_bytes(container(kind, rows, codec_name, 16_000))
        source = open_source(str(path), io.BytesIO())
        assert isinstance(source, AvroSource)
        got = assert_bulk_is_reference(source, bulk(source, 500))
        assert sum(table.num_rows for _, table in got) == len(rows)
        assert_bulk_is_reference(source)


@pytest.mark.parametrize("other", ["bzip2", "older schema"])
def test_containers_the_native_reader_does_not_read_are_read_record_by_record(
    other: str,
) -> None:
    rows = [*GOOD, BAD]
    if other == "bzip2":
        data = container("capture", rows, "bzip2", 100)
    else:
        older = json.loads(
            Path(codec.__file__).with_name("avro").joinpath("capture.avsc").read_text()
        )
        older["fields"] = [field for field in older["fields"] if field["name"] != "subject_age"]
        out = io.BytesIO()
        fastavro.writer(out, fastavro.parse_schema(older), rows)
        data = out.getvalue()
    source = source_of(data)
    assert source._native is None or native_container(*_args(source)) is None
    got = assert_bulk_is_reference(source, same_bad=same_bad)
    assert got[0][1].column("message_index").to_pylist() == [1, 2, 3]


def _args(source: AvroSource) -> tuple[str | bytes, str, tuple[str, int]]:
    assert source._native is not None
    native, head = source._native
    return native, source.kind, head


def test_registry_containers_carry_no_hashes() -> None:
    source = source_of(container("consent", [sample("consent")], "null", 100))
    [(kind, table)] = assert_bulk_is_reference(source, bulk(source, 10))
    assert kind == "consent"
    assert table.column("payload_sha256").null_count == 1


def test_a_writer_schema_without_a_timestamps_logical_type_is_read_as_it_says() -> None:
    """The fingerprint leaves logical types out; a long written without one is no time."""
    schema = codec.schema("checkpoint")
    plain = {
        **schema,
        "fields": [
            {**field, "type": "long"} if field["name"] == "signed_at" else field
            for field in schema["fields"]
        ],
    }
    record = sample("checkpoint") | {"signed_at": 946_684_800_000_000}
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(plain), [record])
    source = source_of(out.getvalue())
    assert_bulk_is_reference(source)
    bad: list[str] = []
    assert list(source.record_batches(bad.append)) == []
    assert ["checkpoint.signed_at: expected a timezone-aware datetime" in line for line in bad] == [
        True
    ]
