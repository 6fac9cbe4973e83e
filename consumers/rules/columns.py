"""A batch of events as Arrow columns, and the registry facts all rules share.

``BatchContext`` holds them for a whole batch: each row's deployment and
consent are joined once, and why each row's consent is not valid for it is
worked out once, as one code per row whose bits are ``REASONS``. Columns
come as the native decoder gives them (enums as dictionaries) or as plain
strings (tables built from JSON); each is normalised once, on first use.
Masks (boolean arrays) never hold nulls: a null compares as False, so a rule
on an absent value does not fire.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from functools import cached_property, partial, reduce
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from consumers import python_values
from consumers.registry import (
    BUNDLED,
    EXPIRED,
    NO_CONSENT_ID,
    NOT_YET_GRANTED,
    PROCESSOR_DIFFERS,
    PURPOSE_NOT_COVERED,
    SUBJECT_DIFFERS,
    UNKNOWN_CONSENT,
    VALID_CONSENT_TYPES,
    WITHDRAWN,
    Registry,
)
from consumers.registry_columns import Joined

Mask = pa.BooleanArray
Details = dict[str, Any]

REASONS: Final = (
    NO_CONSENT_ID,
    UNKNOWN_CONSENT,
    BUNDLED,
    PROCESSOR_DIFFERS,
    SUBJECT_DIFFERS,
    PURPOSE_NOT_COVERED,
    NOT_YET_GRANTED,
    EXPIRED,
    WITHDRAWN,
)
"""Why a consent is not valid, in the order ``consent_problems`` lists them; bit i is REASONS[i]."""
_BIT: Final = {reason: 1 << i for i, reason in enumerate(REASONS)}
_TIME: Final = pa.timestamp("us", tz="UTC")


def mask(values: pa.Array) -> Mask:
    """A boolean array with nulls read as False."""
    return values.fill_null(False) if values.null_count else values


def all_of(*masks: Mask) -> Mask:
    """Row by row: every mask is True."""
    return reduce(pc.and_, masks)


def any_of(*masks: Mask) -> Mask:
    """Row by row: some mask is True."""
    return reduce(pc.or_, masks)


def not_(values: Mask) -> Mask:
    """Row by row: the mask is False."""
    return pc.invert(values)


def differs(left: pa.Array, right: pa.Array) -> Mask:
    """``left != right`` as Python has it: null equals null and nothing else."""
    either = pc.xor(pc.is_null(left), pc.is_null(right))
    return mask(pc.or_kleene(pc.not_equal(left, right), either))


def on_dictionary(values: pa.DictionaryArray, test: Callable[[pa.Array], pa.Array]) -> Mask:
    """``test`` run once per distinct value, then spread over the rows."""
    return mask(test(values.dictionary).take(values.indices))


def problem_list(code: int) -> list[str]:
    """The reasons a problem code holds, in REASONS order."""
    return [reason for reason in REASONS if code & _BIT[reason]]


class BatchContext:
    """Registry facts about a batch of events of one kind, worked out once per batch."""

    def __init__(self, batch: pa.RecordBatch, registry: Registry) -> None:
        """``batch`` is one kind's events; its other columns are ignored."""
        self.num_rows = batch.num_rows
        self._batch = batch
        self._registry = registry.columns
        self._values: dict[str, pa.Array] = {}
        self._enums: dict[str, pa.DictionaryArray] = {}
        self._is_in: dict[tuple[str, frozenset[str]], Mask] = {}

    # -- the event's columns

    def has(self, name: str) -> bool:
        """The events carry the field ``name`` (a capture has no operator_id)."""
        return name in self._batch.schema.names

    def values(self, name: str) -> pa.Array:
        """An event column as plain values (strings decoded, times in µs UTC)."""
        column = self._values.get(name)
        if column is None:
            column = self._batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            if pa.types.is_large_string(column.type):
                column = column.cast(pa.string())
            elif pa.types.is_timestamp(column.type) and column.type != _TIME:
                column = column.cast(_TIME)
            self._values[name] = column
        return column

    def enum(self, name: str) -> pa.DictionaryArray:
        """An event column as a dictionary array (encoded here if it came as strings)."""
        column = self._enums.get(name)
        if column is None:
            column = self._batch.column(name)
            if not pa.types.is_dictionary(column.type):
                column = self.values(name).dictionary_encode()
            self._enums[name] = column
        return column

    def flag(self, name: str) -> Mask:
        """A boolean event column."""
        return mask(self.values(name))

    def is_in(self, name: str, values: Collection[str]) -> Mask:
        """The event's ``name`` is one of ``values`` (worked out once per batch)."""
        key = (name, frozenset(values))
        found = self._is_in.get(key)
        if found is None:
            value_set = pa.array(sorted(values), pa.string())
            test = partial(pc.is_in, value_set=value_set)
            found = self._is_in[key] = on_dictionary(self.enum(name), test)
        return found

    def equals(self, name: str, value: str) -> Mask:
        """The event's ``name`` is ``value``."""
        return self.is_in(name, (value,))

    def is_null(self, name: str) -> Mask:
        """The event's ``name`` is null."""
        return pc.is_null(self._batch.column(name))

    def any_item_in(self, name: str, values: Collection[str]) -> Mask:
        """The event's list ``name`` holds one of ``values`` (a null list holds none)."""
        lists = self._batch.column(name)
        items = lists.values  # the child array the offsets point into
        if pa.types.is_dictionary(items.type):
            hits = on_dictionary(items, lambda d: pc.is_in(d, value_set=pa.array(sorted(values))))
        else:
            hits = mask(pc.is_in(items, value_set=pa.array(sorted(values), items.type)))
        # Hits per list: differences of the running count at its offsets.
        running = pa.concat_arrays(
            [pa.array([0], pa.int64()), pc.cumulative_sum(hits.cast(pa.int64()))]
        )
        offsets = lists.offsets
        counts = pc.subtract(running.take(offsets[1:]), running.take(offsets[:-1]))
        return all_of(mask(pc.is_valid(lists)), pc.greater(counts, 0))

    # -- the registry, joined

    @cached_property
    def deployment(self) -> Joined:
        """Each row's deployment record (null fields where unknown)."""
        return self._registry.deployments(self.values("deployment_id"))

    @cached_property
    def consent(self) -> Joined:
        """Each row's consent record, valid or not (null fields where there is none)."""
        return self._registry.consents(self.values("consent_id"))

    @cached_property
    def has_deployment(self) -> Mask:
        """The deployment is in the registry."""
        return self.deployment.found

    @cached_property
    def has_consent(self) -> Mask:
        """The consent_id names a consent in the registry."""
        return self.consent.found

    def purpose_in(self, purpose_mask: pa.Array) -> Mask:
        """The event's purpose is in the row's purposes, given as a bit mask (see PurposeBits)."""
        purposes = self.enum("purpose")
        bits = self._registry.purposes.bits(purposes.dictionary).take(purposes.indices)
        return mask(pc.not_equal(pc.bit_wise_and(purpose_mask, bits), 0))

    @cached_property
    def problems(self) -> pa.Array:
        """Per row, why its consent is not valid for it: the bits of REASONS (0: valid)."""
        consent, found = self.consent, self.has_consent
        t = self.values("event_time")
        no_id = self.is_null("consent_id")
        reasons = {
            NO_CONSENT_ID: no_id,
            UNKNOWN_CONSENT: all_of(not_(found), not_(no_id)),
            BUNDLED: all_of(
                found,
                not_(mask(pc.is_in(consent.column("consent_type"), pa.array(VALID_CONSENT_TYPES)))),
            ),
            PROCESSOR_DIFFERS: all_of(
                found, differs(consent.column("processor_id"), self.values("processor_id"))
            ),
            SUBJECT_DIFFERS: all_of(
                found, differs(consent.column("subject_ref"), self.values("subject_ref"))
            ),
            PURPOSE_NOT_COVERED: all_of(
                found, not_(self.purpose_in(consent.column("purposes_mask")))
            ),
            NOT_YET_GRANTED: mask(pc.greater(consent.column("granted_at"), t)),
            EXPIRED: mask(pc.less_equal(consent.column("expires_at"), t)),
            WITHDRAWN: mask(pc.less_equal(consent.column("withdrawn_at"), t)),
        }
        zero = pa.scalar(0, pa.int32())
        codes = [pc.if_else(m, pa.scalar(_BIT[r], pa.int32()), zero) for r, m in reasons.items()]
        return reduce(pc.bit_wise_or, codes)

    def has_problem(self, reason: str) -> Mask:
        """The row's consent is not valid for it, for ``reason`` (among others, maybe)."""
        return pc.not_equal(pc.bit_wise_and(self.problems, pa.scalar(_BIT[reason], pa.int32())), 0)

    def has_problem_but(self, reason: str) -> Mask:
        """The row's consent has a problem other than ``reason``."""
        others = pa.scalar(~_BIT[reason] & ((1 << len(REASONS)) - 1), pa.int32())
        return pc.not_equal(pc.bit_wise_and(self.problems, others), 0)

    @cached_property
    def valid_consent(self) -> Mask:
        """The row's consent is valid for it (rules.md)."""
        return pc.equal(self.problems, 0)

    # -- the firing rows

    def rows(self, indices: pa.Array) -> Iterator[Row]:
        """A view of each row at ``indices``, to build its details from."""
        taken = _Taken(self, indices)
        return (Row(taken, i, int(row)) for i, row in enumerate(indices.to_pylist()))


class _Taken:
    """Values at some rows, taken from the batch column by column as details ask for them."""

    __slots__ = ("_cache", "_context", "_indices")

    def __init__(self, context: BatchContext, indices: pa.Array) -> None:
        self._context = context
        self._indices = indices
        self._cache: dict[tuple[str, str], list[Any]] = {}

    def get(self, source: str, name: str) -> list[Any]:
        values = self._cache.get((source, name))
        if values is None:
            context = self._context
            if source == "event":
                column = context.values(name)
            elif source == "problems":
                column = context.problems
            else:
                column = getattr(context, source).column(name)
            values = python_values.values(column.take(self._indices))
            self._cache[source, name] = values
        return values


class Row:
    """One firing row: ``row[name]`` is the event's field; the registry's come by method."""

    __slots__ = ("_at", "_taken", "index")

    def __init__(self, taken: _Taken, at: int, index: int) -> None:
        self._taken = taken
        self._at = at
        self.index = index  # the row's index in the batch

    def __getitem__(self, name: str) -> Any:
        return self._taken.get("event", name)[self._at]

    def consent(self, name: str) -> Any:
        """The field ``name`` of the row's consent record (None if there is none)."""
        return self._taken.get("consent", name)[self._at]

    def deployment(self, name: str) -> Any:
        """The field ``name`` of the row's deployment record (None if unknown)."""
        return self._taken.get("deployment", name)[self._at]

    @property
    def has_consent(self) -> bool:
        """The row's consent_id names a consent in the registry."""
        return self.consent("consent_id") is not None

    @property
    def problems(self) -> list[str]:
        """Why the row's consent is not valid for it (``consumers.registry.consent_problems``)."""
        return problem_list(self._taken.get("problems", "")[self._at])
