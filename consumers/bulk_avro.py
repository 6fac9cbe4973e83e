"""An Avro container file read in bulk by the native reader (``faceaudit_native.Container``).

It reads the blocks and records as the per-record reader (fastavro, then the
codec's checks) does and reports the same records, by the same numbers: a
record with a value the codec refuses with the codec's message, a record
whose bytes do not decode as ``does not decode (...); rest skipped``. Only
what fastavro's exception would have said inside the parentheses differs.

It reads only containers of the contract's own schema, compressed with null
or deflate, whose header it reads as fastavro did when the input was opened
(same codec, same length); for any other, ``native_container`` gives None
and the caller reads the file record by record.
"""

from __future__ import annotations

from collections.abc import Iterator

import faceaudit_native
import pyarrow as pa

from consumers.lines import OnBad
from consumers.tables import BATCH_ROWS, decoder
from schemas.topics import EVENT_KINDS

Header = tuple[str, int]
"""A container's codec and where its first block starts, as fastavro read them."""


def native_container(
    source: str | bytes, kind: str, header: Header, rows: int = BATCH_ROWS
) -> faceaudit_native.Container | None:
    """The native reader of a container (a path, or its bytes), or None if it does not read it."""
    try:
        container = faceaudit_native.Container(
            decoder(), source, kind, rows, hashed=kind in EVENT_KINDS
        )
    except ValueError:  # another schema or codec, or a header it reads otherwise
        return None
    if (container.codec, container.header_len) != header:
        return None
    return container


def container_tables(
    container: faceaudit_native.Container, name: str, kind: str, on_bad: OnBad
) -> Iterator[tuple[str, pa.Table]]:
    """Tables of the good records in file order; each bad record goes to ``on_bad``."""
    for batch, bad in container:
        for number, verdict, detail in bad:
            if verdict != "invalid":
                detail = f"does not decode ({detail}); rest skipped"
            on_bad(f"{name}:record {number}: {detail}")
        if batch is not None:
            yield kind, pa.Table.from_batches([batch])
