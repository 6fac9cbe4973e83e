"""Values that look like real identifiers instead of pseudonyms (AUDIT-RAW-IDENTIFIER).

An event names people by pseudonyms only (event-contract.md): a value that
is an 18-character resident identity number whose GB 11643 check character
is right, or an 11-digit mainland mobile number, is a real identifier sent
by mistake. A regular expression finds the candidates over a whole column;
the check character is worked out for those few alone.
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

IDENTIFIER_FIELDS: Final = ("subject_ref", "operator_id")
"""The event fields that must hold pseudonyms (a capture has no operator_id)."""
RESIDENT_ID: Final = "resident identity number"
MOBILE: Final = "mobile number"

_CANDIDATE: Final = "^(?:[0-9]{17}[0-9Xx]|1[3-9][0-9]{9})$"
_MOBILE: Final = re.compile("1[3-9][0-9]{9}")
_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS: Final = "10X98765432"
"""GB 11643: the check character for each value of the weighted sum modulo 11."""


def identifier_kind(value: str | None) -> str | None:
    """RESIDENT_ID or MOBILE if ``value`` looks like one, else None."""
    if value is None:
        return None
    if len(value) == 11 and _MOBILE.fullmatch(value):
        return MOBILE
    if len(value) == 18 and value[:17].isascii() and value[:17].isdigit():
        total = sum(int(digit) * weight for digit, weight in zip(value, _WEIGHTS, strict=False))
        if value[17].upper() == _CHECK_CHARACTERS[total % 11]:
            return RESIDENT_ID
    return None


def looks_like_identifier(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Per value of a string column, whether it looks like a real identifier (never null)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    candidates = pc.match_substring_regex(values, _CANDIDATE).fill_null(False)
    if not pc.any(candidates).as_py():
        return candidates
    rows = pc.indices_nonzero(candidates).to_pylist()
    found = [False] * len(values)
    for row, value in zip(rows, values.take(rows).to_pylist(), strict=True):
        found[row] = identifier_kind(value) is not None
    return pa.array(found, pa.bool_())
