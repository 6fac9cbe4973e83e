"""Tests for schemas.codec: round trips, the wire header, dead-letter reasons, JSON errors."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from importlib.resources import files
from io import BytesIO
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import sample

from schemas import codec
from schemas.codec import (
    DECODE_REASONS,
    ENVELOPE,
    HEADER_SIZE,
    MAGIC,
    Decoded,
    DecodeError,
    EncodeError,
    decode,
    encode,
    encode_payload,
    fingerprint,
    frame,
    from_json,
    kind_for_fingerprint,
    schema,
    to_json,
)
from schemas.regions import PROVINCES
from schemas.topics import KINDS

SITUATION = [
    "location_type",
    "public_place",
    "remote_noncontact",
    "purpose",
    "legal_basis",
    "subject_ref",
    "consent_id",
    "subject_age",
]

# The field names and order of event-contract.md, written out independently of the .avsc files.
CONTRACT_FIELDS: dict[str, list[str]] = {
    "capture": [
        *ENVELOPE,
        "location_type",
        "public_place",
        "signage_present",
        "capture_zone_approved",
        "remote_noncontact",
        "purpose",
        "legal_basis",
        "subject_ref",
        "consent_id",
        "subject_age",
        "attribute_analysis",
        "raw_image_retained",
        "anonymized",
        "retention_days",
        "storage_location",
        "transmitted_off_device",
        "transmission_channel",
        "encrypted_at_rest",
        "encrypted_in_transit",
    ],
    "match": [
        *ENVELOPE,
        *SITUATION,
        "capture_event_id",
        "match_mode",
        "gallery_id",
        "gallery_size",
        "score",
        "threshold",
        "matched",
        "alternative_available",
        "alternative_offered",
        "subject_declined_fr",
        "service_denied",
        "operator_id",
        "manual_review_id",
    ],
    "consent": [
        "consent_id",
        "processor_id",
        "subject_ref",
        "grantor",
        "consent_type",
        "purposes",
        "covers_internet_transfer",
        "covers_image_retention",
        "notice_version",
        "granted_at",
        "expires_at",
        "withdrawn_at",
    ],
    "checkpoint": [
        "checkpoint_id",
        "processor_id",
        "device_id",
        "device_seq",
        "head_hash",
        "signed_at",
    ],
    "deployment": [
        "deployment_id",
        "processor_id",
        "registered_purposes",
        "declared_retention_days",
        "pipia_date",
        "notice_version",
        "notice_complete",
        "law_requires_written_consent",
        "filing_id",
        "filing_date",
    ],
    "deletion": ["event_id", "processor_id", "subject_ref", "deleted_at", "reason"],
    "key": [
        "key_id",
        "owner",
        "processor_id",
        "device_id",
        "algorithm",
        "public_key",
        "valid_from",
        "revoked_at",
    ],
}

# --- an independent CRC-64-AVRO (Avro specification, "Schema Fingerprints") ---

CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def raw_schema(kind: str) -> dict[str, Any]:
    """The schema as written in its .avsc file (not parsed)."""
    return json.loads((files("schemas") / "avro" / f"{kind}.avsc").read_text(encoding="utf-8"))


def raw_payload(
    kind: str, record: dict[str, Any], avro_type: dict[str, Any] | None = None
) -> bytes:
    """Write an Avro body with no codec checks (to build messages the codec would refuse)."""
    buffer = BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(avro_type or schema(kind)), record)
    return buffer.getvalue()


# --- schemas ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_schema_fields_are_the_contract_fields_in_order(kind: str) -> None:
    assert [field["name"] for field in schema(kind)["fields"]] == CONTRACT_FIELDS[kind]
    assert schema(kind)["name"] == f"faceaudit.v1.{kind.capitalize()}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_is_documented_and_nullable_fields_default_to_null(kind: str) -> None:
    for field in schema(kind)["fields"]:
        assert field.get("doc"), field["name"]
        if isinstance(field["type"], list):
            assert field["type"][0] == "null"
            assert field["default"] is None


# --- round trips --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_encode_decode_round_trip(kind: str) -> None:
    record = sample(kind)
    message = encode(kind, record)

    decoded = decode(message)

    assert decoded == Decoded(kind, record, message[HEADER_SIZE:])
    assert decoded.payload == encode_payload(kind, record)
    assert message == frame(kind, decoded.payload)
    assert encode(kind, decoded.record) == message


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip(kind: str) -> None:
    record = sample(kind)

    obj = to_json(kind, record)
    text = json.dumps(obj, allow_nan=False)

    assert obj["type"] == kind
    assert from_json(json.loads(text)) == (kind, record)
    # What was parsed is encoded without a second check, to the same bytes.
    assert codec.encode_parsed(*from_json(json.loads(text))) == encode(kind, record)


def test_json_timestamps_are_iso_utc_with_z() -> None:
    obj = to_json("capture", sample("capture"))
    assert obj["event_time"] == "2026-03-01T08:00:00Z"


def test_from_json_accepts_any_zone_and_returns_utc() -> None:
    obj = to_json("capture", sample("capture")) | {"event_time": "2026-03-01T16:00:00+08:00"}
    _, record = from_json(obj)
    assert record == sample("capture")
    assert record["event_time"].utcoffset().total_seconds() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_from_json_optional_fields_default_to_none(kind: str) -> None:
    optional = {field["name"] for field in schema(kind)["fields"] if "default" in field}
    obj = {key: value for key, value in to_json(kind, sample(kind)).items() if key not in optional}

    _, record = from_json(obj)

    assert list(record) == CONTRACT_FIELDS[kind]
    assert all(record[name] is None for name in optional)


def test_encode_fills_missing_optional_fields_with_null() -> None:
    record = sample("capture")
    del record["prev_hash"], record["transmission_channel"]
    assert decode(encode("capture", record)).record == sample("capture")


# --- fingerprints -------------------------------------------------------------


def test_independent_crc64_matches_apache_avro_vector() -> None:
    # Apache Avro's Ruby test suite: schema "int" has CRC-64-AVRO 0x7275d51a3f395c8f,
    # and its single-object header is c3 01 8f 5c 39 3f 1a d5 75 72 (little-endian).
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    assert crc64_avro(b'"int"').to_bytes(8, "little") == bytes.fromhex("8f5c393f1ad57572")


@pytest.mark.parametrize("kind", KINDS)
def test_fingerprint_is_little_endian_crc64_of_canonical_form(kind: str) -> None:
    canonical = to_parsing_canonical_form(raw_schema(kind))
    expected = crc64_avro(canonical.encode()).to_bytes(8, "little")

    assert fingerprint(kind) == expected
    assert encode(kind, sample(kind))[:HEADER_SIZE] == MAGIC + expected


@pytest.mark.parametrize("kind", KINDS)
def test_kind_for_fingerprint(kind: str) -> None:
    assert kind_for_fingerprint(fingerprint(kind)) == kind


def test_fingerprints_are_distinct_and_unknown_ones_are_none() -> None:
    assert len({fingerprint(kind) for kind in KINDS}) == len(KINDS)
    assert kind_for_fingerprint(bytes(8)) is None


def test_unknown_kind_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="unknown record kind 'photo'"):
        fingerprint("photo")


# --- decode errors ------------------------------------------------------------


def _reason(message: bytes | None) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(message)
    assert caught.value.detail
    return caught.value.reason


@pytest.mark.parametrize("message", [None, b""])
def test_empty(message: bytes | None) -> None:
    assert _reason(message) == "empty"


@pytest.mark.parametrize("message", [b"\x00", b"\xc3\x02" + bytes(20), b"{}"])
def test_bad_magic(message: bytes) -> None:
    assert _reason(message) == "bad_magic"


@pytest.mark.parametrize("length", [1, 2, 9])
def test_truncated_header(length: int) -> None:
    assert _reason(encode("capture", sample("capture"))[:length]) == "truncated_header"


def test_unknown_fingerprint() -> None:
    payload = encode_payload("deletion", sample("deletion"))
    assert _reason(MAGIC + bytes(8) + payload) == "unknown_fingerprint"


def test_header_without_payload_is_invalid() -> None:
    assert _reason(MAGIC + fingerprint("capture")) == "invalid_payload"


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_payload(kind: str) -> None:
    message = encode(kind, sample(kind))
    with pytest.raises(DecodeError) as caught:
        decode(message[:-3])
    assert caught.value.reason == "invalid_payload"
    assert "byte" in caught.value.detail


def test_payload_of_another_kind_is_a_dead_letter() -> None:
    message = frame("capture", encode_payload("deletion", sample("deletion")))
    assert _reason(message) in {"invalid_payload", "trailing_bytes"}


def test_unknown_enum_index() -> None:
    message = encode("deletion", sample("deletion"))
    assert message[-1] == 2 * 2  # reason "purpose_fulfilled": index 2, zigzag varint
    assert _reason(message[:-1] + bytes([2 * 9])) == "invalid_payload"


def test_trailing_bytes() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(encode("consent", sample("consent")) + b"\x00\x01")
    assert caught.value.reason == "trailing_bytes"
    assert "2 bytes left over" in caught.value.detail


def test_int_field_wider_than_32_bits() -> None:
    wide = raw_schema("capture")
    for field in wide["fields"]:
        if field["name"] == "retention_days":
            field["type"] = "long"
    payload = raw_payload("capture", sample("capture", retention_days=2**40), wide)
    assert _reason(frame("capture", payload)) == "invalid_payload"


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("capture", "device_seq"),
        ("capture", "retention_days"),
        ("match", "gallery_size"),
        ("deployment", "declared_retention_days"),
    ],
)
def test_negative_count_is_schema_invalid(kind: str, field: str) -> None:
    message = frame(kind, raw_payload(kind, sample(kind, **{field: -1})))
    with pytest.raises(DecodeError) as caught:
        decode(message)
    assert caught.value.reason == "schema_invalid"
    assert f"{kind}.{field}" in caught.value.detail
    with pytest.raises(EncodeError, match=f"{kind}.{field}"):
        encode(kind, sample(kind, **{field: -1}))


NOT_REGION_CODES = ("990305", "000000", "44030", "4403050", "44O305", "", "\uff1440305")
"""Unknown provinces, too short, too long, a letter O, empty, a full-width digit."""


@pytest.mark.parametrize("kind", ["capture", "match"])
@pytest.mark.parametrize("code", NOT_REGION_CODES)
def test_a_region_code_outside_gb_t_2260_is_schema_invalid(kind: str, code: str) -> None:
    message = frame(kind, raw_payload(kind, sample(kind, region_code=code)))
    with pytest.raises(DecodeError) as caught:
        decode(message)
    assert caught.value.reason == "schema_invalid"
    assert f"{kind}.region_code must be six digits starting with a province code" in str(
        caught.value
    )
    with pytest.raises(EncodeError, match=f"{kind}.region_code"):
        encode(kind, sample(kind, region_code=code))


def test_every_province_s_region_codes_are_accepted() -> None:
    for prefix in PROVINCES:
        for code in (f"{prefix}0000", f"{prefix}9999"):
            assert (
                decode(encode("capture", sample("capture", region_code=code))).record["region_code"]
                == code
            )


def test_bytes_are_standard_base64_in_the_json_form() -> None:
    record = sample("key", public_key=b"\x00\xff" * 16)
    obj = to_json("key", record)
    assert obj["public_key"] == base64.b64encode(b"\x00\xff" * 16).decode()
    assert from_json(obj) == ("key", record)
    for bad in ("AP8", "AP8A/w==!", 12):
        with pytest.raises(EncodeError, match=r"key\.public_key"):
            from_json(obj | {"public_key": bad})


def test_decode_error_str_and_reasons() -> None:
    error = DecodeError("empty", "message is None")
    assert str(error) == "empty: message is None"
    assert set(DECODE_REASONS) == {
        "empty",
        "bad_magic",
        "truncated_header",
        "unknown_fingerprint",
        "invalid_payload",
        "trailing_bytes",
        "schema_invalid",
    }


def _decodes_or_dead_letter(message: bytes) -> None:
    try:
        result = decode(message)
    except DecodeError as error:
        assert error.reason in DECODE_REASONS
    else:
        assert isinstance(result, Decoded)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(message: bytes) -> None:
    _decodes_or_dead_letter(message)


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.binary(max_size=300))
def test_decode_valid_header_arbitrary_payload(kind: str, payload: bytes) -> None:
    _decodes_or_dead_letter(frame(kind, payload))


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.data())
def test_decode_corrupted_valid_message(kind: str, data: st.DataObject) -> None:
    message = bytearray(encode(kind, sample(kind)))
    position = data.draw(st.integers(HEADER_SIZE, len(message) - 1))
    message[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(position, len(message)))
    _decodes_or_dead_letter(bytes(message[:cut]))


# --- encode and from_json errors ----------------------------------------------


def _json(kind: str, **changes: Any) -> dict[str, Any]:
    return to_json(kind, sample(kind)) | changes


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {k: v for k, v in _json("capture").items() if k != "device_seq"},
            "capture.device_seq: missing required field",
        ),
        (_json("capture", purpose="shopping"), "capture.purpose: 'shopping' is not one of"),
        (_json("consent", purposes=["payment", "x"]), "consent.purposes: 'x' is not one of"),
        (_json("capture", transmission_channel="wifi"), "capture.transmission_channel: 'wifi'"),
        (_json("capture", event_time="2026-03-01T08:00:00"), "capture.event_time: .* no zone"),
        (_json("consent", expires_at="soon"), "consent.expires_at: 'soon' is not an ISO-8601"),
        (_json("consent", granted_at="0001-01-01T00:00:00+01:00"), "consent.granted_at: .* range"),
        (_json("deletion", deleted_at=1772352000), "deletion.deleted_at: expected an ISO-8601"),
        (_json("match", device_seq="5"), "match.device_seq: expected long"),
        (_json("match", matched="yes"), "match.matched: expected boolean"),
        (_json("match", subject_age=2**31), r"match.subject_age: expected null or int \(32-bit\)"),
        (_json("capture", attribute_analysis="race"), "capture.attribute_analysis: expected array"),
        (_json("capture", operater_id="o-1"), "capture.operater_id: unknown field"),
        (_json("capture", type="photo"), "type: 'photo' is not one of capture, match"),
        ({"event_id": "e"}, "type: None is not one of"),
    ],
)
def test_from_json_errors_name_the_field(obj: dict[str, Any], expected: str) -> None:
    with pytest.raises(EncodeError, match=expected):
        from_json(obj)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


def _symbols(declared: Any) -> list[str]:
    """The enum symbols in a declared Avro type, arrays and unions included."""
    if isinstance(declared, list):
        return [symbol for option in declared for symbol in _symbols(option)]
    if isinstance(declared, dict):
        return declared.get("symbols", []) + _symbols(declared.get("items"))
    return []


ENUM_SYMBOLS = sorted(
    {
        symbol
        for kind in KINDS
        for declared in codec._KINDS[kind].types.values()
        for symbol in _symbols(declared)
    }
)


@settings(max_examples=300)
@given(st.sampled_from(KINDS), st.data(), JSON_VALUES)
def test_from_json_any_field_value_parses_or_names_the_field(
    kind: str, data: st.DataObject, value: Any
) -> None:
    field = data.draw(st.sampled_from(CONTRACT_FIELDS[kind]))
    try:
        _, record = from_json(_json(kind, **{field: value}))
    except EncodeError as error:
        assert f"{kind}.{field}" in str(error)
    else:
        assert decode(encode(kind, record)).kind == kind


@settings(max_examples=500)
@given(
    st.sampled_from(KINDS),
    st.data(),
    JSON_VALUES | st.datetimes(timezones=st.just(UTC)) | st.sampled_from(ENUM_SYMBOLS),
)
def test_the_quick_checks_accept_only_records_fastavro_validates(
    kind: str, data: st.DataObject, value: Any
) -> None:
    """The codec's fast type and value tests stand in for validate(): never looser."""
    field = data.draw(st.sampled_from(CONTRACT_FIELDS[kind]))
    record = sample(kind) | {field: value}
    if codec._fits(codec._KINDS[kind], record):
        assert validate(record, schema(kind), raise_errors=False), (field, value)


def test_encode_refuses_naive_datetime() -> None:
    naive = sample("capture")["event_time"].replace(tzinfo=None)
    with pytest.raises(EncodeError, match=r"capture\.event_time: naive datetime"):
        encode("capture", sample("capture", event_time=naive))


def test_encode_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"deletion\.reason: 'lost' is not one of"):
        encode("deletion", sample("deletion", reason="lost"))


def test_sample_refuses_unknown_override() -> None:
    with pytest.raises(TypeError, match="purpos"):
        sample("capture", purpos="payment")
