"""Registry state: the latest deployment and consent records, and consent validity.

Every event is judged against this state (tens of thousands per second), so
lookups are plain dict gets and the validity check is a handful of
comparisons on the records as decoded, with no copying or conversion.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from consumers.registry_columns import RegistryColumns

Record = Mapping[str, Any]

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
MISSING: Final = frozenset((NO_CONSENT_ID, UNKNOWN_CONSENT))
"""Reasons meaning there is no consent record at all, as opposed to a flawed one."""


class Registry:
    """Deployments by deployment_id and consents by consent_id; a later record wins."""

    __slots__ = ("_columns", "_consents", "_deployments", "_filings", "version")

    def __init__(self) -> None:
        self.version = 0
        """How many records were applied: what was judged unknown at one version may be known
        at a later one."""
        self._deployments: dict[str, Record] = {}
        self._consents: dict[str, Record] = {}
        self._filings: dict[str, set[str]] = {}
        self._columns: RegistryColumns | None = None

    def apply(self, kind: str, record: Record) -> None:
        """Store a consent or deployment record, replacing any earlier one with its id whole."""
        if kind == "consent":
            self._consents[record["consent_id"]] = record
        elif kind == "deployment":
            self._apply_deployment(record)
        else:
            raise ValueError(f"registry records are consent or deployment, not {kind!r}")
        self.version += 1
        if self._columns is not None:
            self._columns.apply(kind, record)

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

    def valid_consent(self, event: Record) -> Record | None:
        """The consent record that is valid for ``event`` (rules.md definition), else None."""
        consent = self.consent(event["consent_id"])
        if consent is None or consent_problems(consent, event):
            return None
        return consent

    def consent_problems(self, event: Record) -> list[str]:
        """Why the event's consent is not valid for it; empty if it is valid."""
        consent_id = event["consent_id"]
        if consent_id is None:
            return [NO_CONSENT_ID]
        consent = self._consents.get(consent_id)
        if consent is None:
            return [UNKNOWN_CONSENT]
        return consent_problems(consent, event)


def consent_problems(consent: Record, event: Record) -> list[str]:
    """Why ``consent`` is not valid for ``event``; empty if it is.

    Boundaries follow rules.md: valid from ``granted_at`` inclusive, until
    ``expires_at`` and ``withdrawn_at`` exclusive.
    """
    t = event["event_time"]
    problems = []
    if consent["consent_type"] not in VALID_CONSENT_TYPES:
        problems.append(BUNDLED)
    if consent["processor_id"] != event["processor_id"]:
        problems.append(PROCESSOR_DIFFERS)
    if consent["subject_ref"] != event["subject_ref"]:
        problems.append(SUBJECT_DIFFERS)
    if event["purpose"] not in consent["purposes"]:
        problems.append(PURPOSE_NOT_COVERED)
    if consent["granted_at"] > t:
        problems.append(NOT_YET_GRANTED)
    expires_at = consent["expires_at"]
    if expires_at is not None and expires_at <= t:
        problems.append(EXPIRED)
    if is_withdrawn(consent, t):
        problems.append(WITHDRAWN)
    return problems


def is_withdrawn(consent: Record, t: Any) -> bool:
    """Whether the consent was withdrawn at or before time ``t``."""
    withdrawn_at = consent["withdrawn_at"]
    return withdrawn_at is not None and withdrawn_at <= t
