"""Registry state: the latest deployment and consent records, and why a consent may not be valid.

The rules read this state as Arrow columns (``columns``, kept current as
records are applied) and work out consent validity over them
(``consumers.rules.columns``); the reasons they give are named here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from consumers.registry_columns import RegistryColumns

Record = Mapping[str, Any]


class Rewrite(NamedTuple):
    """A change to a consent's history that a later record asked for and was refused."""

    field: str  # granted_at or withdrawn_at
    known: datetime  # the value kept
    asked: datetime | None  # the value the record gave (None: the withdrawal dropped)

    def describe(self) -> str:
        """What was asked, in words: ``withdrawal of 2026-03-01T08:00:00+00:00 dropped``."""
        known = self.known.isoformat()
        if self.asked is None:
            return f"withdrawal of {known} dropped"
        what = (
            "granted_at moved earlier" if self.field == "granted_at" else "withdrawal moved later"
        )
        return f"{what}, from {known} to {self.asked.isoformat()}"


VALID_CONSENT_TYPES: Final = frozenset(("separate", "written"))

# Why a consent is not valid for an event (rules.md, "valid consent"). Stable
# strings: they appear in violation details and messages.
NO_CONSENT_ID: Final = "no consent id"
UNKNOWN_CONSENT: Final = "consent not in registry"
BUNDLED: Final = "bundled"
PROCESSOR_DIFFERS: Final = "processor differs"
SUBJECT_DIFFERS: Final = "subject differs"
PURPOSE_NOT_COVERED: Final = "purpose not covered"
NOT_YET_GRANTED: Final = "not yet granted"
EXPIRED: Final = "expired"
WITHDRAWN: Final = "withdrawn"


class Registry:
    """Deployments by deployment_id and consents by consent_id; a later record wins.

    Except where a consent would be rewritten (REG-CONSENT-REWRITTEN): a later
    record may not move its ``granted_at`` earlier, nor, once it was
    withdrawn, drop the withdrawal or move it later. Such a change is not
    applied; the rest of the record is.
    """

    __slots__ = ("_columns", "_consents", "_deployments", "_filings", "version")

    def __init__(self) -> None:
        self.version = 0
        """How many records were applied: what was judged unknown at one version may be known
        at a later one."""
        self._deployments: dict[str, Record] = {}
        self._consents: dict[str, Record] = {}
        self._filings: dict[str, set[str]] = {}
        self._columns: RegistryColumns | None = None

    def apply(self, kind: str, record: Record) -> list[Rewrite]:
        """Store a consent or deployment record, replacing any earlier one with its id.

        Returns the rewrites of a consent that were refused (none for a deployment).
        """
        refused: list[Rewrite] = []
        if kind == "consent":
            known = self._consents.get(record["consent_id"])
            if known is not None:
                record, refused = kept_history(known, record)
            self._consents[record["consent_id"]] = record
        elif kind == "deployment":
            self._apply_deployment(record)
        else:
            raise ValueError(f"registry records are consent or deployment, not {kind!r}")
        self.version += 1
        if self._columns is not None:
            self._columns.apply(kind, record)
        return refused

    @property
    def columns(self) -> RegistryColumns:
        """The same records as Arrow columns, for judging a batch at once.

        Made on first use from the records held so far, then kept current by
        ``apply``; a registry never judged by batch pays nothing for it.
        """
        if self._columns is None:
            self._columns = RegistryColumns()
            for record in self._deployments.values():
                self._columns.apply("deployment", record)
            for record in self._consents.values():
                self._columns.apply("consent", record)
        return self._columns

    def _apply_deployment(self, record: Record) -> None:
        deployment_id = record["deployment_id"]
        old = self._deployments.get(deployment_id)
        if old is not None:
            self._filings.get(old["processor_id"], set()).discard(deployment_id)
        self._deployments[deployment_id] = record
        if record.get("filing_id") is not None:
            self._filings.setdefault(record["processor_id"], set()).add(deployment_id)

    def deployment(self, deployment_id: str | None) -> Record | None:
        """The latest record for a deployment, or None if unknown."""
        return None if deployment_id is None else self._deployments.get(deployment_id)

    def consent(self, consent_id: str | None) -> Record | None:
        """The latest record for a consent, or None if unknown (or the id is None)."""
        return None if consent_id is None else self._consents.get(consent_id)

    def consents(self) -> Iterator[Record]:
        """The latest record of every consent."""
        return iter(self._consents.values())

    def has_filing(self, processor_id: str) -> bool:
        """Whether any of the processor's deployments carries a filing_id (FR-FILING)."""
        return bool(self._filings.get(processor_id))


def kept_history(known: Record, later: Record) -> tuple[Record, list[Rewrite]]:
    """``later`` as applied over ``known``: its grant no earlier, its earliest withdrawal kept.

    Returns the record to apply and the rewrites refused.
    """
    refused = []
    kept: dict[str, Any] = {}
    granted = known["granted_at"]
    if later["granted_at"] < granted:
        refused.append(Rewrite("granted_at", granted, later["granted_at"]))
        kept["granted_at"] = granted
    withdrawn = known["withdrawn_at"]
    if withdrawn is not None and (
        later["withdrawn_at"] is None or later["withdrawn_at"] > withdrawn
    ):
        refused.append(Rewrite("withdrawn_at", withdrawn, later["withdrawn_at"]))
        kept["withdrawn_at"] = withdrawn
    return ({**later, **kept} if kept else later), refused
