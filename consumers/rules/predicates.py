"""One small predicate per per-event rule of rules.md.

A predicate is ``(event, kind, ctx) -> dict | None``: the details that made the
rule fire (JSON-serialisable, plain values and ISO-8601 strings), or None. It
is only called for the kinds its catalogue entry lists, so it may read every
field those kinds carry. The registry lookups an event needs (its deployment,
its consent and why that consent is not valid) are done once, in
``EventContext``, and shared by all predicates. Each predicate is registered
with its rule id by ``@predicate`` where it is defined; the engine checks that
these ids are exactly the catalogue's per-event rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from consumers.registry import (
    NO_CONSENT_ID,
    UNKNOWN_CONSENT,
    WITHDRAWN,
    Record,
    Registry,
    consent_problems,
    is_withdrawn,
)

Details = dict[str, Any]
Predicate = Callable[[Record, str, "EventContext"], Details | None]

_REGISTRY: dict[str, Predicate] = {}
PREDICATES: Final[Mapping[str, Predicate]] = MappingProxyType(_REGISTRY)
"""Rule id -> predicate, filled by ``@predicate`` as this module is imported."""

EXEMPT_PURPOSES: Final = frozenset(("public_security", "emergency"))
PRIVATE_SPACES: Final = frozenset(("hotel_room", "public_bath", "changing_room", "toilet"))
BUSINESS_VENUES: Final = frozenset(("hotel_lobby", "bank", "transport_hub", "venue", "retail"))
SENSITIVE_ATTRIBUTES: Final = frozenset(("race", "ethnicity", "religion", "health", "social_class"))
HIGH_STAKES_PURPOSES: Final = frozenset(("social_assistance", "real_estate"))
MINOR_AGE: Final = 14


class EventContext:
    """Registry facts about one event, looked up once and shared by all predicates.

    ``consent`` is the record the event's consent_id names, valid or not (None
    if there is none); ``consent_problems`` says why it is not valid for the
    event, and is empty exactly when it is.
    """

    __slots__ = ("consent", "consent_problems", "deployment")

    def __init__(self, event: Record, registry: Registry) -> None:
        self.deployment = registry.deployment(event["deployment_id"])
        consent_id = event["consent_id"]
        self.consent = registry.consent(consent_id)
        if self.consent is not None:
            self.consent_problems = consent_problems(self.consent, event)
        else:
            self.consent_problems = [NO_CONSENT_ID if consent_id is None else UNKNOWN_CONSENT]

    @property
    def valid_consent(self) -> Record | None:
        """The event's consent if it is valid for the event (rules.md), else None."""
        return None if self.consent_problems else self.consent


def predicate(rule_id: str) -> Callable[[Predicate], Predicate]:
    """Register the decorated function as the predicate of catalogue rule ``rule_id``."""

    def register(function: Predicate) -> Predicate:
        if rule_id in _REGISTRY:
            raise ValueError(f"two predicates for rule {rule_id!r}")
        _REGISTRY[rule_id] = function
        return function

    return register


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _statutory(event: Record) -> bool:
    return event["legal_basis"] == "statutory"


def _on_consent(event: Record) -> bool:
    return event["legal_basis"] == "consent"


def _consent_gap(event: Record, ctx: EventContext, covers: str, missing: str) -> Details | None:
    """Details if there is no valid consent with the flag ``covers`` set, else None."""
    valid = ctx.valid_consent
    if valid is not None and valid[covers]:
        return None
    problems = list(ctx.consent_problems) if valid is None else [missing]
    return {"consent_id": event["consent_id"], "consent_problems": problems}


@predicate("REG-UNKNOWN-DEPLOYMENT")
def unknown_deployment(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """The deployment rules below need ``ctx.deployment``, so they cannot fire
    for the same event: that is the suppression rules.md asks for."""
    if ctx.deployment is not None:
        return None
    return {"deployment_id": event["deployment_id"]}


@predicate("FR-PRIVATE-SPACE")
def private_space(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Whatever the consent or legal basis."""
    if event["location_type"] not in PRIVATE_SPACES:
        return None
    return {"location_type": event["location_type"]}


@predicate("FR-PUBLIC-SIGNAGE")
def public_signage(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures only (a match has no sign to check)."""
    if not event["public_place"] or event["signage_present"]:
        return None
    return {"location_type": event["location_type"]}


@predicate("FR-CAPTURE-ZONE")
def capture_zone(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures only."""
    if not event["public_place"] or event["capture_zone_approved"]:
        return None
    return {"location_type": event["location_type"]}


@predicate("FR-PUBLIC-PURPOSE")
def public_purpose(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Public place, purpose not exempt, no valid consent."""
    if not event["public_place"] or event["purpose"] in EXEMPT_PURPOSES:
        return None
    if ctx.valid_consent is not None:
        return None
    return {
        "location_type": event["location_type"],
        "purpose": event["purpose"],
        "consent_id": event["consent_id"],
        "consent_problems": list(ctx.consent_problems),
    }


@predicate("FR-PURPOSE-REGISTERED")
def purpose_registered(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """A deployment rule: silent while the deployment is unknown."""
    deployment = ctx.deployment
    if deployment is None or event["purpose"] in deployment["registered_purposes"]:
        return None
    return {
        "purpose": event["purpose"],
        "deployment_id": event["deployment_id"],
        "registered_purposes": list(deployment["registered_purposes"]),
    }


@predicate("FR-CONSENT-MISSING")
def consent_missing(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Consent is the basis but no consent record is named or known."""
    if not _on_consent(event) or ctx.consent is not None:
        return None
    return {"consent_id": event["consent_id"], "reason": ctx.consent_problems[0]}


@predicate("FR-CONSENT-WITHDRAWN")
def consent_withdrawn(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Withdrawn at or before the event."""
    consent = ctx.consent
    if not _on_consent(event) or consent is None or not is_withdrawn(consent, event["event_time"]):
        return None
    return {"consent_id": consent["consent_id"], "withdrawn_at": _iso(consent["withdrawn_at"])}


@predicate("FR-CONSENT-INVALID")
def consent_invalid(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Every defect of an existing consent except withdrawal (FR-CONSENT-WITHDRAWN's)."""
    if not _on_consent(event) or ctx.consent is None:
        return None
    reasons = [reason for reason in ctx.consent_problems if reason != WITHDRAWN]
    if not reasons:
        return None
    return {"consent_id": event["consent_id"], "reasons": reasons}


@predicate("FR-CONSENT-WRITTEN")
def consent_written(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """A deployment rule: silent while the deployment is unknown."""
    deployment, consent = ctx.deployment, ctx.consent
    if not _on_consent(event) or deployment is None or consent is None:
        return None
    if not deployment["law_requires_written_consent"] or consent["consent_type"] == "written":
        return None
    return {
        "deployment_id": event["deployment_id"],
        "consent_id": consent["consent_id"],
        "consent_type": consent["consent_type"],
    }


@predicate("FR-MINOR-GUARDIAN")
def minor_guardian(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Known age under 14, consent basis, no guardian consent."""
    age = event["subject_age"]
    if age is None or age >= MINOR_AGE or not _on_consent(event):
        return None
    consent = ctx.consent
    if consent is None:
        reason = ctx.consent_problems[0]
    elif consent["grantor"] != "guardian":
        reason = f"grantor is {consent['grantor']}"
    else:
        return None
    return {"subject_age": age, "consent_id": event["consent_id"], "reason": reason}


@predicate("FR-ALT-NONSOLE")
def alternative_nonsole(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Matches: 1:1 verification with no alternative method."""
    if event["match_mode"] != "verify_1to1" or event["alternative_available"]:
        return None
    if _statutory(event):
        return None
    return {"purpose": event["purpose"]}


@predicate("FR-NO-COERCION")
def no_coercion(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Matches: a subject who declined was refused or given no alternative."""
    if not event["subject_declined_fr"] or _statutory(event):
        return None
    outcomes = []
    if event["service_denied"]:
        outcomes.append("refused the service")
    if not event["alternative_offered"]:
        outcomes.append("not offered an alternative")
    if not outcomes:
        return None
    return {
        "outcome": " and ".join(outcomes),
        "service_denied": event["service_denied"],
        "alternative_offered": event["alternative_offered"],
    }


@predicate("FR-ON-DEVICE")
def on_device(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures: off the device over the internet, or into the cloud."""
    transfer = []
    if event["transmitted_off_device"] and event["transmission_channel"] == "internet":
        transfer.append("sent over the internet")
    if event["storage_location"] == "cloud":
        transfer.append("stored in the cloud")
    if not transfer or _statutory(event):
        return None
    gap = _consent_gap(event, ctx, "covers_internet_transfer", "does not cover internet transfer")
    return None if gap is None else {"transfer": transfer, **gap}


@predicate("FR-RETENTION")
def retention(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures; a deployment rule: silent while the deployment is unknown."""
    deployment = ctx.deployment
    if deployment is None or event["retention_days"] <= deployment["declared_retention_days"]:
        return None
    return {
        "deployment_id": event["deployment_id"],
        "retention_days": event["retention_days"],
        "declared_retention_days": deployment["declared_retention_days"],
    }


@predicate("FR-RAW-IMAGE")
def raw_image(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures: original image kept, not anonymised, without cover."""
    if not event["raw_image_retained"] or event["anonymized"] or _statutory(event):
        return None
    return _consent_gap(event, ctx, "covers_image_retention", "does not cover image retention")


@predicate("FR-SENSITIVE-ATTR")
def sensitive_attributes(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures only (a match carries no attribute analysis)."""
    attributes = [a for a in event["attribute_analysis"] or () if a in SENSITIVE_ATTRIBUTES]
    if not attributes or event["purpose"] in EXEMPT_PURPOSES or ctx.valid_consent is not None:
        return None
    return {
        "attributes": attributes,
        "purpose": event["purpose"],
        "consent_id": event["consent_id"],
        "consent_problems": list(ctx.consent_problems),
    }


@predicate("FR-REMOTE-ID")
def remote_identification(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Matches: remote 1:N in a public place or business venue."""
    if event["match_mode"] != "identify_1toN" or not event["remote_noncontact"]:
        return None
    if not event["public_place"] and event["location_type"] not in BUSINESS_VENUES:
        return None
    if event["purpose"] in EXEMPT_PURPOSES or ctx.valid_consent is not None:
        return None
    return {
        "location_type": event["location_type"],
        "public_place": event["public_place"],
        "purpose": event["purpose"],
        "consent_id": event["consent_id"],
        "consent_problems": list(ctx.consent_problems),
    }


@predicate("FR-PIPIA")
def pipia(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """A deployment rule: no impact assessment completed by the event."""
    deployment = ctx.deployment
    if deployment is None:
        return None
    pipia_date = deployment["pipia_date"]
    if pipia_date is not None and pipia_date <= event["event_time"]:
        return None
    return {"deployment_id": event["deployment_id"], "pipia_date": _iso(pipia_date)}


@predicate("FR-NOTICE")
def notice(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """A deployment rule: incomplete notice, or consent given on another notice."""
    deployment, consent = ctx.deployment, ctx.consent
    if deployment is None:
        return None
    reasons = []
    if not deployment["notice_complete"]:
        reasons.append("notice incomplete")
    if (
        _on_consent(event)
        and consent is not None
        and consent["notice_version"] != deployment["notice_version"]
    ):
        reasons.append(
            f"consent was given on notice {consent['notice_version']} "
            f"but the current notice is {deployment['notice_version']}"
        )
    if not reasons:
        return None
    return {"deployment_id": event["deployment_id"], "reasons": reasons}


@predicate("FR-ENCRYPTION")
def encryption(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Captures: unencrypted in transit or at rest."""
    reasons = []
    if event["transmitted_off_device"] and not event["encrypted_in_transit"]:
        reasons.append("sent off the device unencrypted")
    if event["raw_image_retained"] and not event["encrypted_at_rest"]:
        reasons.append("original image stored unencrypted")
    return {"reasons": reasons} if reasons else None


@predicate("FR-HIGH-STAKES-MANUAL")
def high_stakes_manual(event: Record, kind: str, ctx: EventContext) -> Details | None:
    """Matches: social assistance or real estate without review."""
    if event["purpose"] not in HIGH_STAKES_PURPOSES or event["manual_review_id"] is not None:
        return None
    return {"purpose": event["purpose"]}
