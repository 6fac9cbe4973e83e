"""FR-FILING over a batch of event columns.

The rule fires at the event that brings a processor without a filing to the
threshold of distinct subjects, and then once a day. A processor whose
batch cannot reach the threshold (or that has a filing) only adds its
subjects, in one step, in any order; only a processor that may cross it,
or has crossed it, has its events counted one by one in the order they were
read (`message_index`), so the findings are those of the tracker's own way.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from consumers import python_values
from consumers.event_columns import ENVELOPE_COLUMNS, POSITION_COLUMNS, positions
from consumers.registry import Registry
from consumers.rules.stream import FilingTracker, Finding

_COLUMNS = (*ENVELOPE_COLUMNS, "subject_ref", "message_index", *POSITION_COLUMNS)


def observe_filings(
    tracker: FilingTracker, tables: Mapping[str, pa.Table], registry: Registry
) -> list[Finding]:
    """Count the subjects of every event of one batch (a table per kind); the findings."""
    parts = [table.select(_COLUMNS) for table in tables.values() if table.num_rows]
    if not parts:
        return []
    events = pa.concat_tables(parts)
    encoded = pc.dictionary_encode(events.column("processor_id")).combine_chunks()
    subjects = events.column("subject_ref")
    findings: list[Finding] = []
    for code, processor in enumerate(encoded.dictionary.to_pylist()):
        rows = pc.indices_nonzero(pc.equal(encoded.indices, code))
        refs = [ref for ref in subjects.take(rows).to_pylist() if ref is not None]
        if tracker.add_subjects(processor, refs, registry):
            continue
        picked = events.take(rows).sort_by("message_index")
        records = python_values.rows(picked.select([*ENVELOPE_COLUMNS, "subject_ref"]))
        for record, anchor in zip(records, positions(picked), strict=True):
            findings += tracker.observe(record, registry, anchor)
    return findings
