"""Input readers for the offline checker: JSON-lines files and Avro object container files.

rules.md has the checker load every registry record of its inputs before it
judges any event, and a later record with the same id wins. Rather than keep
every event in memory until the inputs are read, a source is read twice:

- ``registry()`` yields only the good consent, deployment, deletion, key and
  checkpoint records, silently, each with its signature (JSON lines carry one; an Avro
  container cannot); a JSON-lines file is only parsed on the lines that can
  hold one, so this pass costs a small fraction of the second;
- ``records(on_bad)`` yields every good record in input order and reports each
  bad one as ``file:line: what is wrong`` (``file:record N: ...`` for Avro).

Memory therefore stays flat however long the input is; only standard input,
which cannot be read twice, is held in memory.

``record_batches(on_bad)`` is the bulk form of ``records``: the same good
records as Arrow tables in the native decoder's columns (``consumers.tables``),
the same bad records reported the same way, read natively where the native
readers can (``consumers.bulk_json``, ``consumers.bulk_avro``).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple

import fastavro
import pyarrow as pa
from faceaudit_native import lines_holding
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from consumers.bulk_avro import Header, container_tables, native_container
from consumers.bulk_json import json_tables
from consumers.lines import BadRecord, OnBad, parse_line, parse_signed_line
from consumers.tables import numbered_tables
from schemas import codec
from schemas.signatures import Signature
from schemas.topics import EVENT_KINDS, KINDS, REGISTRY_KINDS

AVRO_MAGIC: Final = b"Obj\x01"
STDIN: Final = "-"
STDIN_NAME: Final = "<stdin>"

# A valid consent has a "grantor" key, a deployment "registered_purposes", a
# deletion "deleted_at", a key record "public_key" and a checkpoint "head_hash",
# which no other kind has.
# In the raw line such a key is spelt literally or contains a JSON escape, so a
# line with no marker cannot be a registry record.
_ESCAPE: Final = b"\\"
_REGISTRY_MARKERS: Final = (
    b'"grantor"',
    b'"registered_purposes"',
    b'"deleted_at"',
    b'"public_key"',
    b'"head_hash"',
    _ESCAPE,
)
REGISTRY_PASS_KINDS: Final = (*REGISTRY_KINDS, "deletion", "key", "checkpoint")
"""What ``registry()`` yields: what must be known (and verified) before events are judged."""
_KIND_BY_SCHEMA_NAME: Final = {codec.schema(kind)["name"]: kind for kind in KINDS}

Opener = Callable[[], BinaryIO]


class InputError(Exception):
    """An input that cannot be read at all: missing, unreadable, or not a faceaudit file."""


class Registered(NamedTuple):
    """A record of the registry pass, with the signature it carries (None: unsigned)."""

    kind: str
    record: dict[str, Any]
    signature: Signature | None


class Item(NamedTuple):
    """A good record and, for Avro events, the SHA-256 of its payload (what prev_hash covers)."""

    kind: str
    record: dict[str, Any]
    payload_sha256: str | None


class JsonLinesSource:
    """A JSON-lines input: one record in the contract's JSON form per line."""

    def __init__(self, name: str, opener: Opener, native: str | bytes | None = None) -> None:
        """``native``: the path (or the bytes) for the native readers; without it, the
        whole input is read through ``opener`` into memory first."""
        self.name = name
        self._open = opener
        self._native = native

    def registry(self) -> Iterator[Registered]:
        """The good records of the registry pass, in input order; bad lines are skipped."""
        for line in lines_holding(self._whole(), list(_REGISTRY_MARKERS)):
            try:
                registered = Registered(*parse_signed_line(line))
            except BadRecord:
                continue  # reported by records()
            if registered.kind in REGISTRY_PASS_KINDS:
                yield registered

    def records(self, on_bad: OnBad) -> Iterator[Item]:
        """Good records in input order; bad lines go to ``on_bad``, blank lines are skipped."""
        with self._open() as lines:
            for number, line in enumerate(lines, 1):
                try:
                    kind, record = parse_line(line)
                except BadRecord as exc:
                    if line.strip():
                        on_bad(f"{self.name}:{number}: {exc}")
                    continue
                yield Item(kind, record, None)

    def record_batches(self, on_bad: OnBad) -> Iterator[tuple[str, pa.Table]]:
        """The good records as ``(kind, table)``, as ``records`` gives them (``message_index``
        is the line number, ``payload_sha256`` null); bad lines go to ``on_bad`` alike."""
        yield from json_tables(self.name, self._whole(), on_bad)

    def _whole(self) -> str | bytes:
        """The input for the native readers: its path, or its bytes."""
        if self._native is not None:
            return self._native
        with self._open() as stream:
            return stream.read()


class AvroSource:
    """An Avro object container file; its writer schema's name gives the kind of all records."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        kind: str,
        resolve: bool,
        native: tuple[str | bytes, Header] | None = None,
    ) -> None:
        """``resolve``: the writer schema differs from the contract's, so read through it.
        ``native``: the file's path (or bytes) and its header as fastavro read it, for
        ``record_batches`` to read it natively."""
        self.name = name
        self.kind = kind
        self._open = opener
        self._reader_schema = codec.schema(kind) if resolve else None
        self._native = None if resolve else native

    def registry(self) -> Iterator[Registered]:
        """The good records if this is a file of a registry pass kind, else nothing;
        unsigned, as an Avro container cannot carry a record's signature."""
        if self.kind in REGISTRY_PASS_KINDS:
            for item in self.records(_ignore):
                yield Registered(item.kind, item.record, None)

    def records(self, on_bad: OnBad) -> Iterator[Item]:
        """Every good record in file order; each bad one goes to ``on_bad``.

        A record is checked by encoding it again with the contract's schema, which
        also gives the payload bytes whose hash the next event's prev_hash must
        carry. A block that does not decode ends the file: what follows it in the
        container cannot be located.
        """
        for _, item in self._numbered(on_bad):
            yield item

    def record_batches(self, on_bad: OnBad) -> Iterator[tuple[str, pa.Table]]:
        """The good records as ``(kind, table)``, as ``records`` gives them (``message_index``
        is the record number); bad records go to ``on_bad`` alike."""
        container = None
        if self._native is not None:
            source, header = self._native
            container = native_container(source, self.kind, header)
        if container is not None:
            yield from container_tables(container, self.name, self.kind, on_bad)
            return
        numbered = ((n, item.record, item.payload_sha256) for n, item in self._numbered(on_bad))
        yield from numbered_tables(self.kind, numbered)

    def _numbered(self, on_bad: OnBad) -> Iterator[tuple[int, Item]]:
        """``records`` with each record's number in the file."""
        kind = self.kind
        hashed = kind in EVENT_KINDS
        with self._open() as stream:
            records = iter(fastavro.reader(stream, reader_schema=self._reader_schema))
            for number in itertools.count(1):
                try:
                    record = next(records)
                except StopIteration:
                    return
                except Exception as exc:  # whatever fastavro raises is caused by the bytes
                    problem = f"does not decode ({type(exc).__name__}: {exc}); rest skipped"
                    on_bad(f"{self.name}:record {number}: {problem}")
                    return
                try:
                    payload = codec.encode_payload(kind, record)
                except codec.EncodeError as exc:
                    on_bad(f"{self.name}:record {number}: {exc}")
                    continue
                sha256 = hashlib.sha256(payload).hexdigest() if hashed else None
                yield number, Item(kind, record, sha256)


Source = JsonLinesSource | AvroSource


def open_sources(paths: list[str], stdin: BinaryIO) -> list[Source]:
    """A source per path (``-`` is standard input); InputError for one that cannot be read."""
    if paths.count(STDIN) > 1:
        raise InputError("standard input (-) can be named only once")
    return [open_source(path, stdin) for path in paths]


def open_source(path: str, stdin: BinaryIO) -> Source:
    """Detect the format of ``path`` (Avro by its magic bytes, else JSON lines)."""
    if path == STDIN:
        data = stdin.read()
        return _source(STDIN_NAME, lambda: io.BytesIO(data), data[: len(AVRO_MAGIC)], data)
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(AVRO_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _source(path, lambda: Path(path).open("rb"), head, path)


def _source(name: str, opener: Opener, head: bytes, native: str | bytes) -> Source:
    """``native``: the path, or the bytes of standard input, for the native reader."""
    if head != AVRO_MAGIC:
        return JsonLinesSource(name, opener, native)
    writer_schema, header = _writer_schema(name, opener)
    kind = _avro_kind(name, writer_schema)
    # Resolving against the contract's schema doubles fastavro's read time, so
    # it is only done for a writer schema that differs (e.g. an older version).
    fingerprint = avro_fingerprint(to_parsing_canonical_form(writer_schema), "CRC-64-AVRO")
    resolve = bytes.fromhex(fingerprint) != codec.fingerprint(kind) or _logical_types(
        writer_schema
    ) != _logical_types(codec.schema(kind))
    return AvroSource(name, opener, kind, resolve, (native, header))


def _logical_types(schema: object) -> list[str]:
    """Every logicalType of a schema, in a fixed order: the parsing canonical form (and so
    the fingerprint) leaves them out, but a long read without one is not a timestamp."""
    if isinstance(schema, dict):
        own = [schema["logicalType"]] if "logicalType" in schema else []
        keys = sorted(key for key in schema if not key.startswith("__"))  # fastavro's own
        return own + [t for key in keys for t in _logical_types(schema[key])]
    if isinstance(schema, list):
        return [t for item in schema for t in _logical_types(item)]
    return []


def _writer_schema(name: str, opener: Opener) -> tuple[dict[str, Any], Header]:
    """The schema an Avro container was written with, its codec and where its blocks start."""
    try:
        with opener() as stream:
            reader = fastavro.reader(stream)
            writer_schema, header = reader.writer_schema, (reader.codec, stream.tell())
    except Exception as exc:  # a corrupt header: fastavro's error names the problem
        raise InputError(f"{name}: not a readable Avro container file: {exc}") from None
    if not isinstance(writer_schema, dict):
        raise InputError(f"{name}: Avro schema {writer_schema!r} is not a record")
    return writer_schema, header


def _avro_kind(name: str, writer_schema: dict[str, Any]) -> str:
    """The record kind an Avro container holds, from its writer schema's name."""
    schema_name = writer_schema.get("name")
    kind = _KIND_BY_SCHEMA_NAME.get(schema_name)
    if kind is None:
        expected = ", ".join(_KIND_BY_SCHEMA_NAME)
        raise InputError(f"{name}: Avro schema {schema_name!r} is not one of {expected}")
    return kind


def _ignore(_: str) -> None:
    """An OnBad that drops the report: the registry pass leaves reporting to the second pass."""
