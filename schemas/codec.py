"""The codec for faceaudit.v1 records: the one place that knows the wire and JSON forms.

Wire form (event-contract.md, "Wire format"): Avro's single-object encoding,

    C3 01 | fingerprint (8 bytes) | Avro binary body ("payload")

where the fingerprint is the little-endian CRC-64-AVRO of the writer schema's
parsing canonical form. Each record kind has its own schema
(``schemas/avro/<kind>.avsc``), so the fingerprint tells a consumer the kind and
the writer schema without a registry server.

Python form: a plain dict as fastavro reads it. Timestamps are timezone-aware
``datetime`` (UTC after decoding), enums are ``str``, arrays are lists,
optional fields are ``None`` when absent.

JSON form (offline checker, tests): the record plus ``"type"``, timestamps as
ISO-8601 strings with a zone (``2026-03-01T08:00:00Z``).

Both sides use the same checks: a record has exactly the schema's fields
(optional ones may be left out), timestamps must carry a zone, and counts that
Avro can only type as int/long must not be negative.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from io import BytesIO
from operator import contains
from typing import Any, Final, Literal, get_args

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from schemas.regions import is_region_code
from schemas.signatures import JSON_FIELDS, SIGNATURE_BYTES, SIGNED_KINDS, Signature
from schemas.topics import KINDS, OUTPUT_KINDS

#: The envelope (event-contract.md): the fields capture and match both start with.
ENVELOPE: Final = (
    "event_id",
    "event_time",
    "processor_id",
    "deployment_id",
    "device_id",
    "region_code",
    "device_seq",
    "prev_hash",
)

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = 10  # MAGIC + 8-byte fingerprint

DecodeReason = Literal[
    "empty",
    "bad_magic",
    "truncated_header",
    "unknown_fingerprint",
    "invalid_payload",
    "trailing_bytes",
    "schema_invalid",
]
#: Every value ``DecodeError.reason`` can take (a closed set: it is a metrics label).
DECODE_REASONS: Final[tuple[str, ...]] = get_args(DecodeReason)

#: Fields that are counts or sequence numbers: Avro types them as int/long, the
#: contract needs them >= 0. Nullable ones are checked only when set.
NON_NEGATIVE: Final[dict[str, tuple[str, ...]]] = {
    "capture": ("device_seq", "retention_days", "subject_age"),
    "match": ("device_seq", "gallery_size", "subject_age"),
    "deployment": ("declared_retention_days",),
    "checkpoint": ("device_seq",),
}
#: Fields that hold a region code (``schemas.regions``): six digits, a province's first.
REGION_CODES: Final[dict[str, str]] = {"capture": "region_code", "match": "region_code"}
_INT32_RANGE: Final = range(-(2**31), 2**31)
_TIMESTAMP: Final = "timestamp-micros"


class DecodeError(Exception):
    """A message that cannot be turned into a valid record: a dead letter.

    ``reason`` is one of ``DECODE_REASONS``; ``detail`` says what is wrong and where.
    """

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(reason, detail)  # both in args, so the error pickles
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class EncodeError(ValueError):
    """A record (dict or JSON object) that does not fit its schema; names kind and field."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message: its kind, the record, and the Avro body it came from."""

    kind: str
    record: dict[str, Any]
    payload: bytes  # the Avro body after the 10-byte header (what prev_hash covers)


@dataclass(frozen=True, slots=True)
class _Kind:
    """Everything derived once from one ``.avsc`` file."""

    name: str
    schema: dict[str, Any]  # parsed by fastavro
    fingerprint: bytes
    types: dict[str, Any]  # field name -> declared type, in schema order
    timestamps: frozenset[str]
    int32: tuple[str, ...]
    non_negative: tuple[str, ...]
    region_code: str | None  # the field holding a region code, if the kind has one
    names: tuple[str, ...]  # the fields, in schema order
    required: frozenset[str]  # fields without a default
    json_keys: frozenset[str]  # the fields and "type"
    binary: tuple[str, ...]  # bytes fields: standard base64 in the JSON form
    # The quick validity tests: the exact types each field accepts, in schema
    # order, and a test per field whose type alone does not settle it (enum
    # symbols, int ranges, array items).
    exact_types: tuple[frozenset[type], ...]
    value_checks: tuple[tuple[str, Callable[[Any], bool]], ...]


def _branches(declared: Any) -> list[Any]:
    """The non-null types of a field: ``["null", X]`` gives ``[X]``, ``X`` gives ``[X]``."""
    options = declared if isinstance(declared, list) else [declared]
    return [option for option in options if option != "null"]


def _is_timestamp(declared: Any) -> bool:
    return any(
        isinstance(option, dict) and option.get("logicalType") == _TIMESTAMP
        for option in _branches(declared)
    )


def _value_test(declared: Any) -> Callable[[Any], bool]:
    """A fast test that a value fits the declared Avro type (a subset of what validate() takes).

    Types this does not know get a test that always fails, which sends the
    record to fastavro's own validation.
    """
    branches = _branches(declared)
    nullable = isinstance(declared, list) and "null" in declared
    if len(branches) != 1:
        return lambda value: False
    test = _single_test(branches[0])
    if nullable:
        return lambda value: value is None or test(value)
    return test


def _single_test(declared: Any) -> Callable[[Any], bool]:
    if isinstance(declared, dict):
        if declared.get("logicalType") == _TIMESTAMP:
            return lambda value: isinstance(value, datetime)
        if declared.get("type") == "enum":
            symbols = frozenset(declared["symbols"])
            return lambda value: isinstance(value, str) and value in symbols
        if declared.get("type") == "array":
            item = _single_test(declared["items"])
            return lambda value: isinstance(value, list) and all(item(v) for v in value)
        return lambda value: False
    simple: dict[str, Callable[[Any], bool]] = {
        "string": lambda value: isinstance(value, str),
        "boolean": lambda value: isinstance(value, bool),
        "int": lambda value: type(value) is int and value in _INT32_RANGE,
        "long": lambda value: type(value) is int and -(2**63) <= value < 2**63,
        "float": lambda value: type(value) in (int, float),
        "double": lambda value: type(value) in (int, float),
        "bytes": lambda value: isinstance(value, bytes),
    }
    return simple.get(declared, lambda value: False)


# Per simple Avro type: the exact Python types a valid value has, and whether
# a value of those types still needs `_value_test` (the ranges of int and long).
_SIMPLE_TYPES: Final[dict[str, tuple[frozenset[type], bool]]] = {
    "string": (frozenset((str,)), False),
    "boolean": (frozenset((bool,)), False),
    "int": (frozenset((int,)), True),
    "long": (frozenset((int,)), True),
    "float": (frozenset((int, float)), False),
    "double": (frozenset((int, float)), False),
    "bytes": (frozenset((bytes,)), False),
}


def _exact_types(declared: Any) -> tuple[frozenset[type], bool]:
    """The exact types (no subclasses) `_value_test` accepts, and whether it must still run.

    A type this does not know accepts no type, which sends the record to
    fastavro's own validation.
    """
    branches = _branches(declared)
    if len(branches) != 1:
        return frozenset(), False
    branch = branches[0]
    if not isinstance(branch, dict):
        exact, tested = _SIMPLE_TYPES.get(branch, (frozenset(), False))
    elif branch.get("logicalType") == _TIMESTAMP:
        exact, tested = frozenset((datetime,)), False
    else:  # enum symbols and array items need their test
        exact = {"enum": frozenset((str,)), "array": frozenset((list,))}.get(branch.get("type"))
        exact, tested = (frozenset(), False) if exact is None else (exact, True)
    if isinstance(declared, list) and "null" in declared:
        exact |= {type(None)}
    return exact, tested


def _load(kind: str) -> _Kind:
    raw = json.loads((files("schemas") / "avro" / f"{kind}.avsc").read_text(encoding="utf-8"))
    types = {field["name"]: field["type"] for field in raw["fields"]}
    # fastavro returns the hex of the fingerprint's little-endian bytes, the order
    # single-object encoding writes (tests/test_codec.py proves it independently).
    crc_hex = avro_fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO")
    quick = {name: _exact_types(declared) for name, declared in types.items()}
    return _Kind(
        name=kind,
        schema=fastavro.parse_schema(raw),
        fingerprint=bytes.fromhex(crc_hex),
        types=types,
        timestamps=frozenset(name for name, declared in types.items() if _is_timestamp(declared)),
        int32=tuple(name for name, declared in types.items() if "int" in _branches(declared)),
        non_negative=NON_NEGATIVE.get(kind, ()),
        region_code=REGION_CODES.get(kind),
        names=tuple(types),
        required=frozenset(field["name"] for field in raw["fields"] if "default" not in field),
        json_keys=frozenset(types) | {"type"},
        binary=tuple(name for name, declared in types.items() if "bytes" in _branches(declared)),
        exact_types=tuple(exact for exact, _ in quick.values()),
        value_checks=tuple(
            (name, _value_test(types[name])) for name, (_, tested) in quick.items() if tested
        ),
    )


_KINDS: Final[dict[str, _Kind]] = {kind: _load(kind) for kind in (*KINDS, *OUTPUT_KINDS)}
_BY_FINGERPRINT: Final[dict[bytes, _Kind]] = {info.fingerprint: info for info in _KINDS.values()}


def _kind(kind: object) -> _Kind:
    info = _KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        raise EncodeError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    return info


# --- schemas and fingerprints -------------------------------------------------


def schema(kind: str) -> dict[str, Any]:
    """The parsed Avro schema of ``kind`` (shared, loaded once: do not mutate)."""
    return _kind(kind).schema


def fingerprint(kind: str) -> bytes:
    """The 8 fingerprint bytes of ``kind`` exactly as they appear in the header."""
    return _kind(kind).fingerprint


def kind_for_fingerprint(fp: bytes) -> str | None:
    """The kind whose schema has fingerprint ``fp``, or None if it is not ours."""
    info = _BY_FINGERPRINT.get(fp)
    return info.name if info is not None else None


# --- encoding -----------------------------------------------------------------


def encode_payload(kind: str, record: Mapping[str, Any]) -> bytes:
    """The Avro binary body of ``record``; raises EncodeError naming the bad field."""
    info = _kind(kind)
    _check_keys(info, record)
    _check_values(info, record)
    return _write(info, record)


def encode_parsed(kind: str, record: Mapping[str, Any]) -> bytes:
    """The full wire message of a record the codec has checked already (one `from_json`
    parsed, or one read from a container and encoded again): its keys and values are not
    checked a second time. The offline checker rebuilds a signed record's bytes with it."""
    info = _kind(kind)
    return frame(kind, _write(info, record))


def _write(info: _Kind, record: Mapping[str, Any]) -> bytes:
    buffer = BytesIO()
    try:
        fastavro.schemaless_writer(buffer, info.schema, record)
    except ValueError as exc:  # e.g. a lone surrogate in a string
        raise EncodeError(f"{info.name}: cannot write record: {exc}") from exc
    return buffer.getvalue()


def frame(kind: str, payload: bytes) -> bytes:
    """Prefix an Avro body with the single-object header of ``kind``."""
    return MAGIC + _kind(kind).fingerprint + payload


def encode(kind: str, record: Mapping[str, Any]) -> bytes:
    """The full wire message for ``record``."""
    return frame(kind, encode_payload(kind, record))


def _check_keys(
    info: _Kind, record: Mapping[str, Any], known: frozenset[str] | None = None
) -> None:
    """Exactly the schema's fields (or the `known` keys); optional ones may be missing.

    Unknown keys are refused rather than dropped, so a misspelt optional field
    (``operater_id``) is an error instead of a silent null.
    """
    if not isinstance(record, Mapping):
        raise EncodeError(f"{info.name}: a record must be a mapping, not {type(record).__name__}")
    unknown = record.keys() - (info.types.keys() if known is None else known)
    if unknown:
        raise EncodeError(f"{info.name}.{sorted(map(str, unknown))[0]}: unknown field")
    if not record.keys() >= info.required:
        missing = next(name for name in info.names if name in info.required and name not in record)
        raise EncodeError(f"{info.name}.{missing}: missing required field")


def _check_values(info: _Kind, record: Mapping[str, Any]) -> None:
    """Types, enum symbols, aware timestamps, non-negative counts and region codes."""
    for name in info.timestamps:
        problem = _timestamp_problem(record.get(name))
        if problem:
            raise EncodeError(f"{info.name}.{name}: {problem}")
    # fastavro's validate() is the authority but costs more than decoding a
    # record; the per-field tests accept only what it accepts, and a record
    # they reject is handed to it for the message.
    if not _fits(info, record):
        try:
            validate(record, info.schema, raise_errors=True)
        except ValidationError as exc:
            raise EncodeError(_validation_message(info, exc)) from None
    problem = _value_problem(info, record)
    if problem:
        raise EncodeError(problem)


def _fits(info: _Kind, record: Mapping[str, Any]) -> bool:
    """Whether the quick tests accept every field: types first, in one pass in C."""
    types = map(type, map(record.get, info.names))
    return all(map(contains, info.exact_types, types)) and all(
        test(record.get(name)) for name, test in info.value_checks
    )


def _timestamp_problem(value: object) -> str | None:
    """Timestamps must be aware datetimes: fastavro would write a naive one as *local* time."""
    if value is None:
        return None  # allowed or not, validate() reports it against the declared type
    if not isinstance(value, datetime):
        return f"expected a timezone-aware datetime, got {_show(value)}"
    if value.utcoffset() is None:
        return f"naive datetime {value.isoformat()} has no zone (use e.g. tzinfo=UTC)"
    return None


def _validation_message(info: _Kind, exc: ValidationError) -> str:
    """Turn fastavro's first error into ``kind.field: what is wrong``."""
    # A union reports one error per branch; an enum branch has the useful message.
    errors = exc.errors
    error = next((e for e in errors if _is_enum(e.schema)), errors[0])
    name = error.field.rsplit(".", 1)[-1]
    if _is_enum(error.schema):
        symbols = ", ".join(error.schema["symbols"])
        return f"{info.name}.{name}: {_short(error.datum)} is not one of {symbols}"
    expected = _describe(info.types[name])
    return f"{info.name}.{name}: expected {expected}, got {_show(error.datum)}"


def _is_enum(declared: Any) -> bool:
    return isinstance(declared, dict) and declared.get("type") == "enum"


def _describe(declared: Any) -> str:
    """A declared Avro type in words, for error messages."""
    if isinstance(declared, list):
        return " or ".join(_describe(option) for option in declared)
    if isinstance(declared, str):
        return {"int": "int (32-bit)", "long": "long (64-bit)"}.get(declared, declared)
    if declared.get("logicalType") == _TIMESTAMP:
        return "a timezone-aware datetime"
    if declared["type"] == "array":
        return f"array of {_describe(declared['items'])}"
    return declared.get("name", declared["type"])


def _show(value: object) -> str:
    return f"{type(value).__name__} {_short(value)}"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value_problem(info: _Kind, record: Mapping[str, Any]) -> str | None:
    """Describe the first count field that is negative, else a region code that does not fit.

    The native decoder checks the same, in the same order, with the same words.
    """
    for name in info.non_negative:
        value = record.get(name)
        if value is not None and value < 0:
            return f"{info.name}.{name} is {value}; it must be >= 0"
    name = info.region_code
    if name is not None and not is_region_code(record.get(name)):
        return f"{info.name}.{name} must be six digits starting with a province code (GB/T 2260)"
    return None


# --- decoding -----------------------------------------------------------------


def decode(message: bytes | None) -> Decoded:
    """Decode one wire message; any problem with the bytes raises DecodeError."""
    if not message:
        raise DecodeError("empty", f"message is {'None' if message is None else 'empty'}")
    info = _header_kind(message)
    payload = message[HEADER_SIZE:]
    record = _read_payload(info, payload)
    _check_decoded(info, record)
    return Decoded(info.name, record, payload)


def _header_kind(message: bytes) -> _Kind:
    start = message[: len(MAGIC)]
    if not MAGIC.startswith(start):  # b"\xc3" alone is a short header, not a wrong one
        raise DecodeError(
            "bad_magic", f"message starts with {start.hex()}, not c301 (Avro single-object)"
        )
    if len(message) < HEADER_SIZE:
        raise DecodeError(
            "truncated_header",
            f"message has {len(message)} bytes, the header alone needs {HEADER_SIZE}",
        )
    fp = message[len(MAGIC) : HEADER_SIZE]
    info = _BY_FINGERPRINT.get(fp)
    if info is None:
        raise DecodeError(
            "unknown_fingerprint", f"schema fingerprint {fp.hex()} (bytes 2-9) is not a known kind"
        )
    return info


def _read_payload(info: _Kind, payload: bytes) -> dict[str, Any]:
    buffer = BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buffer, info.schema, None)
    except Exception as exc:
        # The writer schema is fixed and tested, so whatever the reader raises
        # (EOFError, IndexError for an enum index, UnicodeDecodeError,
        # OverflowError for a timestamp, ...) is caused by the bytes.
        raise DecodeError(
            "invalid_payload",
            f"{info.name} payload does not decode (stopped near message byte "
            f"{HEADER_SIZE + buffer.tell()}): {exc!r}",
        ) from exc
    if buffer.tell() != len(payload):
        raise DecodeError(
            "trailing_bytes",
            f"{info.name} record ends at message byte {HEADER_SIZE + buffer.tell()}, "
            f"{len(payload) - buffer.tell()} bytes left over",
        )
    return record


def _check_decoded(info: _Kind, record: dict[str, Any]) -> None:
    """What Avro does not check: 32-bit ints in range, counts not negative, region codes."""
    # fastavro accepts over-long varints, so an "int" can come back out of range.
    for name in info.int32:
        value = record[name]
        if value is not None and value not in _INT32_RANGE:
            raise DecodeError(
                "invalid_payload", f"{info.name}.{name} = {value} is not a 32-bit int"
            )
    problem = _value_problem(info, record)
    if problem:
        raise DecodeError("schema_invalid", problem)


# --- JSON form ----------------------------------------------------------------


def to_json(kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form: ``"type"`` first, then every field in schema order."""
    info = _kind(kind)
    _check_keys(info, record)
    _check_values(info, record)
    return {"type": kind} | {name: _json_value(record.get(name)) for name in info.types}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple):
        return list(value)
    return value


def from_json(obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Parse a JSON-form object into ``(kind, record)``; raises EncodeError naming the field.

    A signed kind's ``key_id`` and ``signature`` are checked and left out; see
    `from_signed_json`."""
    kind, record, _ = from_signed_json(obj)
    return kind, record


def from_signed_json(obj: Mapping[str, Any]) -> tuple[str, dict[str, Any], Signature | None]:
    """`from_json`, and the record's signature if it carries one."""
    if not isinstance(obj, Mapping):
        raise EncodeError(f"a JSON record must be an object, not {type(obj).__name__}")
    kind = obj.get("type")
    info = _KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        raise EncodeError(f"type: {kind!r} is not one of {', '.join(KINDS)}")
    signed = info.name in SIGNED_KINDS
    _check_keys(info, obj, known=info.json_keys | _SIGNATURE_KEYS if signed else info.json_keys)
    record = dict(zip(info.names, map(obj.get, info.names), strict=True))
    for name in info.timestamps:
        record[name] = _parse_timestamp(info, name, record[name])
    for name in info.binary:
        record[name] = _parse_base64(info, name, record[name])
    _check_values(info, record)
    return info.name, record, _parse_signature(info, obj) if signed else None


def signature_json(signature: Signature) -> dict[str, str]:
    """The JSON form's signature fields, to put beside ``"type"``."""
    return {"key_id": signature.key_id, "signature": base64.b64encode(signature.value).decode()}


_SIGNATURE_KEYS: Final = frozenset(JSON_FIELDS)


def _parse_signature(info: _Kind, obj: Mapping[str, Any]) -> Signature | None:
    key_id, value = obj.get("key_id"), obj.get("signature")
    if key_id is None and value is None:
        return None
    if not isinstance(key_id, str) or not key_id:
        raise EncodeError(f"{info.name}.key_id: a signed record needs its key's id as a string")
    if not isinstance(value, str):
        raise EncodeError(f"{info.name}.signature: expected a base64 string, got {_show(value)}")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise EncodeError(
            f"{info.name}.signature: {_short(value)} is not standard base64"
        ) from None
    if len(raw) != SIGNATURE_BYTES:
        raise EncodeError(
            f"{info.name}.signature: {len(raw)} bytes, an Ed25519 signature has {SIGNATURE_BYTES}"
        )
    return Signature(key_id, raw)


def _parse_base64(info: _Kind, name: str, value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EncodeError(f"{info.name}.{name}: expected a base64 string, got {_show(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise EncodeError(f"{info.name}.{name}: {_short(value)} is not standard base64") from None


def _parse_timestamp(info: _Kind, name: str, value: object) -> datetime | None:
    if value is None:
        return None
    where = f"{info.name}.{name}"
    if not isinstance(value, str):
        raise EncodeError(f"{where}: expected an ISO-8601 string, got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EncodeError(f"{where}: {value!r} is not an ISO-8601 timestamp") from None
    if parsed.utcoffset() is None:
        raise EncodeError(f"{where}: {value!r} has no zone (add Z or an offset such as +08:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise EncodeError(f"{where}: {value!r} is out of range in UTC") from None
