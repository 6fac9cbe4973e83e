"""A JSON-lines input read in bulk: chunks of lines parsed and checked natively into tables.

The native reader (``faceaudit_native.JsonLines``) takes the lines of the
kinds in ``native_kinds`` (every kind, by default) it is certain
``parse_line`` accepts, with the same values, and hands back every other
line: any line it is not sure of, and those of the other kinds. Each line handed back is
judged by ``parse_line``, so a bad line is reported as the per-line reader
reports it (``file:line: what is wrong``), and a good one joins the tables.
The verdicts are therefore exactly the per-line reader's, line by line.

Tables come chunk by chunk, in input order; within a chunk, one table per
kind (ordered by their first line), rows in line order. ``message_index`` is
the line number, and ``payload_sha256`` is null: JSON has no payload bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import faceaudit_native
import pyarrow as pa

from consumers.lines import BadRecord, OnBad, parse_line
from consumers.tables import decoder, first_position, in_order, records_table
from schemas.topics import KINDS

CHUNK_BYTES: Final = 1 << 24
"""Bytes of lines read and parsed per native call (about 18,000 events of the contract's)."""
NATIVE_KINDS: Final = KINDS
"""The kinds whose lines the native reader takes; the others go the per-line way.
Every kind: registry and deletion lines too, which reads a file faster."""


def json_tables(
    name: str,
    source: str | bytes,
    on_bad: OnBad,
    chunk_bytes: int = CHUNK_BYTES,
    native_kinds: tuple[str, ...] = NATIVE_KINDS,
) -> Iterator[tuple[str, pa.Table]]:
    """The good records of a JSON-lines input (a path, or its bytes) as ``(kind, table)``;
    each bad line goes to ``on_bad``."""
    chunks = faceaudit_native.JsonLines(decoder(), list(native_kinds), source, chunk_bytes)
    for batches, handed_back in chunks:
        tables = {kind: [pa.Table.from_batches([batch])] for kind, batch in batches.items()}
        for kind, table in _judged(name, handed_back, on_bad):
            tables.setdefault(kind, []).append(table)
        merged = [(kind, in_order(parts)) for kind, parts in tables.items()]
        yield from sorted(merged, key=lambda pair: first_position(pair[1]))


def _judged(
    name: str, lines: list[tuple[int, bytes]], on_bad: OnBad
) -> Iterator[tuple[str, pa.Table]]:
    """The lines handed back, judged one by one: a table per kind of the good ones."""
    good: dict[str, tuple[list[dict[str, Any]], list[int]]] = {}
    for number, line in lines:
        try:
            kind, record = parse_line(line)
        except BadRecord as exc:
            if line.strip():
                on_bad(f"{name}:{number}: {exc}")
            continue
        records, numbers = good.setdefault(kind, ([], []))
        records.append(record)
        numbers.append(number)
    for kind, (records, numbers) in good.items():
        yield kind, records_table(kind, records, numbers, [None] * len(records))
