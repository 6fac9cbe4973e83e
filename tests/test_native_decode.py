"""The native batch decoder (faceaudit_native) against the reference, message by message.

The reference is what the validator does with one message: the size check of
consumers/decoding.py, then ``schemas.codec.decode``. For every input the
native decoder must find the same good messages with the same records and
payload hashes, and refuse the others for the same reason. Inputs are
generated records (the fuzz generator's and hypothesis's), the same bytes
corrupted (bit flips, cuts, extra bytes, other fingerprints), and the
encodings only fastavro accepts (long varints, negative indexes and block
counts), which the native decoder must read as fastavro does.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import threading
import time
from datetime import UTC, datetime
from importlib.resources import files
from io import BytesIO
from typing import Any

import faceaudit_native
import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import sample
from test_codec import NOT_REGION_CODES
from test_fuzz import Inputs

from schemas import codec
from schemas.native import contract_decoder
from schemas.topics import KINDS, OUTPUT_KINDS

ALL_KINDS = (*KINDS, *OUTPUT_KINDS)
DECODER = contract_decoder()
MAX_BYTES = 1 << 20
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ADDED = ("message_index", "payload_sha256")


def reference(message: bytes | None, max_bytes: int) -> codec.Decoded | str:
    """What the validator makes of one message: the decoded record or the reason."""
    if message is not None and len(message) > max_bytes:
        return "oversized"
    try:
        return codec.decode(message)
    except codec.DecodeError as exc:
        return exc.reason


def comparable(value: Any) -> Any:
    """NaN equal to itself, so records holding one compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def assert_same_as_reference(messages: list[bytes | None], max_bytes: int = MAX_BYTES) -> None:
    batches, failures = DECODER.decode_batch(messages, max_bytes)
    refused = {index: reason for index, reason, _ in failures}
    assert len(refused) == len(failures), "a message refused twice"
    assert all(reason in (*codec.DECODE_REASONS, "oversized") for reason in refused.values())
    rows = {}
    for kind, batch in batches.items():
        assert batch.num_rows > 0
        rows.update({row["message_index"]: (kind, row) for row in batch.to_pylist()})
    assert rows.keys().isdisjoint(refused), "a message both decoded and refused"
    assert rows.keys() | refused.keys() == set(range(len(messages)))
    for index, message in enumerate(messages):
        expected = reference(message, max_bytes)
        where = f"message {index}: {message!r:.300}"
        if isinstance(expected, str):
            assert refused.get(index) == expected, f"{where}: {refused.get(index)}, not {expected}"
            continue
        assert index in rows, f"{where}: refused ({refused[index]}), the reference decodes it"
        kind, row = rows[index]
        assert kind == expected.kind, where
        assert row["payload_sha256"] == hashlib.sha256(expected.payload).hexdigest(), where
        record = {name: comparable(value) for name, value in row.items() if name not in ADDED}
        assert record == {name: comparable(v) for name, v in expected.record.items()}, where


def test_fingerprints_are_the_codecs() -> None:
    assert DECODER.fingerprints == {kind: codec.fingerprint(kind) for kind in ALL_KINDS}


def test_samples_decode_to_their_records_with_indexes_and_hashes() -> None:
    messages = [codec.encode(kind, sample(kind)) for kind in ALL_KINDS if kind != "violation"]
    batches, failures = DECODER.decode_batch([None, *messages], MAX_BYTES)
    assert failures == [(0, "empty", "message is None")]
    assert list(batches) == [kind for kind in ALL_KINDS if kind != "violation"]
    capture = batches["capture"]
    assert capture.schema.field("message_index").type == "uint32"
    assert str(capture.schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    assert capture.column("message_index").to_pylist() == [1]
    assert_same_as_reference(messages)


def test_fuzz_generator_inputs_match_the_reference() -> None:
    """The fuzz test's generator: random field values, every corruption it knows."""
    inputs = Inputs(random.Random(20260301))
    messages = [inputs.case(index).value for index in range(20_000)]
    assert_same_as_reference(messages)


# -- generated records, as hypothesis draws them ----------------------------------

FIRST = datetime(1, 1, 1)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999)
INT32 = st.integers(-(2**31), 2**31 - 1)


def values(declared: Any, wide: bool = True) -> st.SearchStrategy[Any]:
    """Any value fastavro can write for a declared type, including what the codec
    refuses to write (negative counts) and ints too wide for 32 bits (fastavro
    writes those, except in a union)."""
    if isinstance(declared, list):
        return st.one_of([values(option, wide=False) for option in declared])
    if isinstance(declared, dict):
        if declared.get("logicalType") == "timestamp-micros":
            return st.datetimes(FIRST, LAST, timezones=st.just(UTC))
        if declared["type"] == "enum":
            return st.sampled_from(declared["symbols"])
        if declared["type"] == "array":
            return st.lists(values(declared["items"]), max_size=4)
        return values(declared["type"])
    return {
        "null": st.none(),
        "string": st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
        "boolean": st.booleans(),
        "int": st.one_of(INT32, st.integers(-(2**40), 2**40)) if wide else INT32,
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32),
        "bytes": st.binary(max_size=40),
    }[declared]


def records(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = codec.schema(kind)["fields"]
    return st.fixed_dictionaries({field["name"]: values(field["type"]) for field in fields})


def payload(kind: str, record: dict[str, Any]) -> bytes:
    """The Avro body as fastavro writes it, without the codec's checks."""
    buffer = BytesIO()
    fastavro.schemaless_writer(buffer, codec.schema(kind), record)
    return buffer.getvalue()


# -- the encodings only fastavro reads --------------------------------------------


class Unusual:
    """Writes a record in Avro forms that fastavro reads back to the same values but
    arrow-avro refuses: the chosen ``forms``, each at about half the places it fits."""

    FORMS = (
        "padded varints",  # zero bits up to far past the 64th
        "bits past 64",  # a tenth varint byte over 1, whose high bits fastavro drops
        "negative indexes",  # enum symbols and union branches counted from the end
        "negative blocks",  # array blocks of -count items, then a byte size fastavro ignores
        "any true byte",  # booleans other than 0 and 1
    )

    def __init__(self, forms: set[str], rng: random.Random) -> None:
        self.forms = forms
        self.rng = rng
        self.out = bytearray()

    def now(self, form: str) -> bool:
        return form in self.forms and self.rng.random() < 0.5

    def write(self, declared: Any, value: Any) -> None:
        if isinstance(declared, list):
            branch = next(i for i, t in enumerate(declared) if (t == "null") == (value is None))
            self.index(branch, len(declared))
            self.write(declared[branch], value)
        elif isinstance(declared, dict):
            if declared.get("logicalType") == "timestamp-micros":
                self.long((value - EPOCH) // (datetime.resolution))
            elif declared["type"] == "enum":
                self.index(declared["symbols"].index(value), len(declared["symbols"]))
            elif declared["type"] == "array":
                self.array(declared["items"], value)
            else:
                self.write(declared["type"], value)
        elif declared == "string":
            data = value.encode()
            self.long(len(data))
            self.out += data
        elif declared == "boolean":
            true = self.rng.choice((2, 0x80, 0xFF)) if self.now("any true byte") else 1
            self.out.append(true if value else 0)
        elif declared in ("int", "long"):
            self.long(value)
        elif declared == "float":
            self.out += struct.pack("<f", value)
        elif declared == "bytes":
            self.long(len(value))
            self.out += value
        else:
            assert declared == "null", declared

    def array(self, items: Any, value: list[Any]) -> None:
        cut = self.rng.randint(0, len(value))
        for block in (value[:cut], value[cut:]):
            if not block:
                continue
            if self.now("negative blocks"):
                self.long(-len(block))
                self.long(self.rng.choice((-(2**40), -1, 0, 7, 2**40)))
            else:
                self.long(len(block))
            for item in block:
                self.write(items, item)
        self.long(0)

    def index(self, index: int, count: int) -> None:
        self.long(index - count if self.now("negative indexes") else index)

    def long(self, value: int) -> None:
        encoded = bytearray(varint(value))
        if self.now("bits past 64"):
            if len(encoded) < 10:  # pad to ten bytes first
                encoded[-1] |= 0x80
                encoded += b"\x80" * (9 - len(encoded)) + b"\x00"
            encoded[9] |= 0x7E
        elif self.now("padded varints"):
            encoded[-1] |= 0x80
            encoded += b"\x80" * self.rng.randint(0, 14) + b"\x00"
        self.out += encoded


@st.composite
def unusual_payloads(draw: st.DrawFn, kind: str, record: dict[str, Any]) -> bytes:
    forms = draw(st.sets(st.sampled_from(Unusual.FORMS), min_size=1))
    writer = Unusual(forms, random.Random(draw(st.integers(0, 2**32))))
    for field in codec.schema(kind)["fields"]:
        writer.write(field["type"], record[field["name"]])
    return bytes(writer.out)


# -- messages built from them -----------------------------------------------------


def flip(message: bytes, bits: list[int]) -> bytes:
    flipped = bytearray(message)
    for bit in bits:
        flipped[(bit // 8) % len(flipped)] ^= 1 << (bit % 8)
    return bytes(flipped)


@st.composite
def messages(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(ALL_KINDS))
    record = draw(records(kind))
    body = payload(kind, record)
    how = draw(
        st.sampled_from(
            (
                "valid",
                "unusual",
                "bit flips",
                "cut",
                "trailing",
                "other kind",
                "unknown fingerprint",
                "random payload",
                "random bytes",
                "nothing",
            )
        )
    )
    if how == "unusual":
        body = draw(unusual_payloads(kind, record))
    message = codec.frame(kind, body)
    if how == "bit flips":
        return flip(
            message, draw(st.lists(st.integers(0, 8 * len(message)), min_size=1, max_size=4))
        )
    if how == "cut":
        return message[: draw(st.integers(0, len(message) - 1))]
    if how == "trailing":
        return message + draw(st.binary(min_size=1, max_size=20))
    if how == "other kind":
        return codec.frame(draw(st.sampled_from([k for k in ALL_KINDS if k != kind])), body)
    if how == "unknown fingerprint":
        fingerprint = draw(st.binary(min_size=8, max_size=8))
        return codec.MAGIC + fingerprint + body
    if how == "random payload":
        return codec.frame(kind, draw(st.binary(max_size=120)))
    if how == "random bytes":
        return draw(st.binary(max_size=40))
    if how == "nothing":
        return draw(st.sampled_from((None, b"")))
    return message


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(messages(), min_size=1, max_size=30), max_bytes=st.integers(0, 400))
def test_generated_batches_match_the_reference(batch: list[bytes | None], max_bytes: int) -> None:
    assert_same_as_reference(batch, max_bytes)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_forms_only_fastavro_reads_are_read_as_it_reads_them(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(ALL_KINDS))
    record = data.draw(records(kind))
    batch = [codec.frame(kind, data.draw(unusual_payloads(kind, record))) for _ in range(8)]
    assert_same_as_reference(batch)


# -- single encodings, written out ------------------------------------------------


def varint(value: int) -> bytes:
    """The shortest zig-zag varint of ``value``."""
    bits = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while bits >= 0x80:
        out.append(bits & 0x7F | 0x80)
        bits >>= 7
    out.append(bits)
    return bytes(out)


DELETION = b"\x02e\x02p\x02s"  # event_id "e", processor_id "p", subject_ref "s"
FIRST_MICROS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // datetime.resolution
LAST_MICROS = (
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) - EPOCH
) // datetime.resolution


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00\x00", id="plain"),
        pytest.param(b"\x80" * 19 + b"\x00\x00", id="varint padded to 20 bytes"),
        pytest.param(b"\x80" * 9 + b"\x81\x01\x00", id="bits at shift 64 wrap around"),
        pytest.param(b"\x80" * 9 + b"\x7f\x00", id="tenth byte over 1, out of range"),
        pytest.param(b"\x82" + b"\x80" * 8 + b"\x7e\x00", id="tenth byte over 1, bits dropped"),
        pytest.param(b"\x00" + varint(-1), id="enum index -1"),
        pytest.param(b"\x00" + varint(-4), id="enum index -4"),
        pytest.param(b"\x00" + varint(-5), id="enum index -5"),
        pytest.param(b"\x00" + varint(4), id="enum index 4"),
        pytest.param(b"\x00\x82" + b"\x80" * 10 + b"\x00", id="enum index in 12 bytes"),
        pytest.param(varint(FIRST_MICROS) + b"\x00", id="first microsecond"),
        pytest.param(varint(FIRST_MICROS - 1) + b"\x00", id="before the first microsecond"),
        pytest.param(varint(LAST_MICROS) + b"\x00", id="last microsecond"),
        pytest.param(varint(LAST_MICROS + 1) + b"\x00", id="after the last microsecond"),
        pytest.param(b"\x80", id="varint cut short"),
        pytest.param(b"\x00", id="no enum"),
    ],
)
def test_written_out_deletions_match_the_reference(tail: bytes) -> None:
    assert_same_as_reference([codec.frame("deletion", DELETION + tail)])


def test_a_ten_byte_varint_whose_last_byte_carries_bits_past_64_reads_as_the_reference() -> None:
    # The plain length for the value, but not the plain bytes: fastavro drops
    # the bits past the 64th, so arrow-avro must be given the plain form.
    largest = 2**63 - 1
    message = codec.encode("match", sample("match", gallery_size=largest))
    plain = varint(largest)
    assert len(plain) == 10 and message.count(plain) == 1
    assert_same_as_reference([message.replace(plain, plain[:-1] + b"\x05")])


def test_a_bad_message_does_not_disturb_its_neighbours() -> None:
    good = codec.encode("match", sample("match"))
    batch = [good, good[:-3], good, good + good[:5], good]
    assert_same_as_reference(batch)
    batches, failures = DECODER.decode_batch(batch, MAX_BYTES)
    assert [(index, reason) for index, reason, _ in failures] == [
        (1, "invalid_payload"),
        (3, "trailing_bytes"),
    ]
    assert batches["match"].column("message_index").to_pylist() == [0, 2, 4]


def test_unsupported_schemas_are_refused() -> None:
    fixed = '{"type": "record", "name": "R", "fields": [{"name": "f", "type": "fixed"}]}'
    with pytest.raises(ValueError, match=r"r: .*fixed"):
        faceaudit_native.Decoder({"r": fixed})
    deletion = (files("schemas") / "avro" / "deletion.avsc").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="not an int or long"):
        faceaudit_native.Decoder({"deletion": deletion}, {"deletion": ["reason"]})

    with pytest.raises(ValueError, match="reason is not a string field"):
        faceaudit_native.Decoder({"deletion": deletion}, None, {"deletion": "reason"})
    with pytest.raises(ValueError, match="region_codes names unknown kind capture"):
        faceaudit_native.Decoder({"deletion": deletion}, None, {"capture": "region_code"})
    with pytest.raises(ValueError, match='province "4" is not two digits'):
        faceaudit_native.Decoder({"deletion": deletion}, None, None, ["4"])


@pytest.mark.parametrize("kind", ["capture", "match"])
@pytest.mark.parametrize("code", NOT_REGION_CODES)
def test_a_bad_region_code_is_refused_in_the_codec_s_words(kind: str, code: str) -> None:
    message = codec.frame(kind, payload(kind, sample(kind, region_code=code)))
    with pytest.raises(codec.DecodeError) as caught:
        codec.decode(message)
    _, failures = DECODER.decode_batch([message], MAX_BYTES)
    assert failures == [(0, caught.value.reason, caught.value.detail)]


def test_the_gil_is_released_while_a_batch_decodes() -> None:
    """A Python thread keeps running through the middle of a long decode."""
    messages = [codec.encode("capture", sample("capture"))] * 300_000
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        DECODER.decode_batch(messages, MAX_BYTES)
        end = time.perf_counter()
    finally:
        stop.set()
        ticker.join()
    assert end - start > 0.05, "the batch decoded too fast to tell"
    margin = (end - start) / 4  # holding and re-taking the GIL at either end
    inside = [t for t in ticks if start + margin < t < end - margin]
    assert len(inside) > 10, f"{len(inside)} ticks in {end - start:.3f} s of decoding"
