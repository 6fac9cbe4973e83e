"""One vectorized condition per per-event rule of rules.md, over a whole batch.

A condition is ``(ctx) -> Fires``: a mask of the rows where the rule fires,
and how to build one such row's details (JSON-serialisable: plain values and
ISO-8601 strings). The mask is worked out over the whole batch's columns; details are
built in Python, for the firing rows only. A condition is only called for the
kinds its catalogue entry lists, so it may read every column those kinds
carry. Each is registered with its rule id by ``@condition``; the engine
checks that these ids are exactly the catalogue's per-event rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from consumers.event_columns import BROKER_TIME
from consumers.registry import WITHDRAWN
from consumers.rules.clock_skew import AHEAD, BEHIND, skew_words, skewed_times
from consumers.rules.columns import (
    BatchContext,
    Details,
    Mask,
    Row,
    all_of,
    any_of,
    differs,
    mask,
    not_,
)
from consumers.rules.identifiers import (
    IDENTIFIER_FIELDS,
    identifier_kind,
    looks_like_identifier,
)

EXEMPT_PURPOSES: Final = frozenset(("public_security", "emergency"))
PRIVATE_SPACES: Final = frozenset(("hotel_room", "public_bath", "changing_room", "toilet"))
BUSINESS_VENUES: Final = frozenset(("hotel_lobby", "bank", "transport_hub", "venue", "retail"))
SENSITIVE_ATTRIBUTES: Final = frozenset(("race", "ethnicity", "religion", "health", "social_class"))
HIGH_STAKES_PURPOSES: Final = frozenset(("social_assistance", "real_estate"))
MINOR_AGE: Final = 14


class Fires(NamedTuple):
    """Where a rule fires in a batch, and the details of one firing row."""

    rows: Mask
    details: Callable[[Row], Details]


Condition = Callable[[BatchContext], Fires]

_REGISTRY: dict[str, Condition] = {}
CONDITIONS: Final[Mapping[str, Condition]] = MappingProxyType(_REGISTRY)
"""Rule id -> condition, filled by ``@condition`` as this module is imported."""


def condition(rule_id: str) -> Callable[[Condition], Condition]:
    """Register the decorated function as the condition of catalogue rule ``rule_id``."""

    def register(function: Condition) -> Condition:
        if rule_id in _REGISTRY:
            raise ValueError(f"two conditions for rule {rule_id!r}")
        _REGISTRY[rule_id] = function
        return function

    return register


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _not_statutory(ctx: BatchContext) -> Mask:
    return not_(ctx.equals("legal_basis", "statutory"))


def _on_consent(ctx: BatchContext) -> Mask:
    return ctx.equals("legal_basis", "consent")


def _no_consent_covering(ctx: BatchContext, covers: str) -> Mask:
    """No valid consent with the flag ``covers`` set."""
    return not_(all_of(ctx.valid_consent, mask(ctx.consent.column(covers))))


def _gap_details(row: Row, missing: str) -> Details:
    """The consent's problems, or ``missing`` for a valid consent without the flag."""
    problems = row.problems
    return {"consent_id": row["consent_id"], "consent_problems": problems or [missing]}


def _without_valid_consent(row: Row, *names: str) -> Details:
    """The event's ``names``, then its consent and why that consent is not valid."""
    return {
        **{name: row[name] for name in names},
        "consent_id": row["consent_id"],
        "consent_problems": row.problems,
    }


@condition("REG-UNKNOWN-DEPLOYMENT")
def unknown_deployment(ctx: BatchContext) -> Fires:
    """The deployment rules need a known deployment, so they cannot fire with this one."""
    return Fires(not_(ctx.has_deployment), lambda row: {"deployment_id": row["deployment_id"]})


@condition("FR-PRIVATE-SPACE")
def private_space(ctx: BatchContext) -> Fires:
    """Whatever the consent or legal basis."""
    fires = ctx.is_in("location_type", PRIVATE_SPACES)
    return Fires(fires, lambda row: {"location_type": row["location_type"]})


@condition("FR-PUBLIC-SIGNAGE")
def public_signage(ctx: BatchContext) -> Fires:
    """Captures only (a match has no sign to check)."""
    fires = all_of(ctx.flag("public_place"), not_(ctx.flag("signage_present")))
    return Fires(fires, lambda row: {"location_type": row["location_type"]})


@condition("FR-CAPTURE-ZONE")
def capture_zone(ctx: BatchContext) -> Fires:
    """Captures only."""
    fires = all_of(ctx.flag("public_place"), not_(ctx.flag("capture_zone_approved")))
    return Fires(fires, lambda row: {"location_type": row["location_type"]})


@condition("FR-PUBLIC-PURPOSE")
def public_purpose(ctx: BatchContext) -> Fires:
    """Public place, purpose not exempt, no valid consent."""
    fires = all_of(
        ctx.flag("public_place"),
        not_(ctx.is_in("purpose", EXEMPT_PURPOSES)),
        not_(ctx.valid_consent),
    )
    return Fires(fires, lambda row: _without_valid_consent(row, "location_type", "purpose"))


@condition("FR-PURPOSE-REGISTERED")
def purpose_registered(ctx: BatchContext) -> Fires:
    """A deployment rule: silent while the deployment is unknown."""
    registered = ctx.purpose_in(ctx.deployment.column("registered_purposes_mask"))
    fires = all_of(ctx.has_deployment, not_(registered))
    return Fires(
        fires,
        lambda row: {
            "purpose": row["purpose"],
            "deployment_id": row["deployment_id"],
            "registered_purposes": row.deployment("registered_purposes"),
        },
    )


@condition("FR-CONSENT-MISSING")
def consent_missing(ctx: BatchContext) -> Fires:
    """Consent is the basis but no consent record is named or known."""
    fires = all_of(_on_consent(ctx), not_(ctx.has_consent))
    return Fires(fires, lambda row: {"consent_id": row["consent_id"], "reason": row.problems[0]})


@condition("FR-CONSENT-WITHDRAWN")
def consent_withdrawn(ctx: BatchContext) -> Fires:
    """Withdrawn at or before the event."""
    fires = all_of(_on_consent(ctx), ctx.has_problem(WITHDRAWN))
    return Fires(
        fires,
        lambda row: {
            "consent_id": row.consent("consent_id"),
            "withdrawn_at": _iso(row.consent("withdrawn_at")),
        },
    )


@condition("FR-CONSENT-INVALID")
def consent_invalid(ctx: BatchContext) -> Fires:
    """Every defect of an existing consent except withdrawal (FR-CONSENT-WITHDRAWN's)."""
    fires = all_of(_on_consent(ctx), ctx.has_consent, ctx.has_problem_but(WITHDRAWN))
    return Fires(
        fires,
        lambda row: {
            "consent_id": row["consent_id"],
            "reasons": [reason for reason in row.problems if reason != WITHDRAWN],
        },
    )


@condition("FR-CONSENT-WRITTEN")
def consent_written(ctx: BatchContext) -> Fires:
    """A deployment rule: silent while the deployment is unknown."""
    written = mask(pc.equal(ctx.consent.column("consent_type"), "written"))
    fires = all_of(
        _on_consent(ctx),
        ctx.has_deployment,
        ctx.has_consent,
        mask(ctx.deployment.column("law_requires_written_consent")),
        not_(written),
    )
    return Fires(
        fires,
        lambda row: {
            "deployment_id": row["deployment_id"],
            "consent_id": row.consent("consent_id"),
            "consent_type": row.consent("consent_type"),
        },
    )


@condition("FR-MINOR-GUARDIAN")
def minor_guardian(ctx: BatchContext) -> Fires:
    """Known age under 14, consent basis, no guardian consent."""
    guardian = mask(pc.equal(ctx.consent.column("grantor"), "guardian"))  # False: no consent
    fires = all_of(
        mask(pc.less(ctx.values("subject_age"), MINOR_AGE)), _on_consent(ctx), not_(guardian)
    )

    def details(row: Row) -> Details:
        reason = f"grantor is {row.consent('grantor')}" if row.has_consent else row.problems[0]
        return {
            "subject_age": row["subject_age"],
            "consent_id": row["consent_id"],
            "reason": reason,
        }

    return Fires(fires, details)


@condition("FR-ALT-NONSOLE")
def alternative_nonsole(ctx: BatchContext) -> Fires:
    """Matches: 1:1 verification with no alternative method."""
    fires = all_of(
        ctx.equals("match_mode", "verify_1to1"),
        not_(ctx.flag("alternative_available")),
        _not_statutory(ctx),
    )
    return Fires(fires, lambda row: {"purpose": row["purpose"]})


@condition("FR-NO-COERCION")
def no_coercion(ctx: BatchContext) -> Fires:
    """Matches: a subject who declined was refused or given no alternative."""
    fires = all_of(
        ctx.flag("subject_declined_fr"),
        _not_statutory(ctx),
        any_of(ctx.flag("service_denied"), not_(ctx.flag("alternative_offered"))),
    )

    def details(row: Row) -> Details:
        denied, offered = row["service_denied"], row["alternative_offered"]
        outcomes = ["refused the service"] if denied else []
        if not offered:
            outcomes.append("not offered an alternative")
        return {
            "outcome": " and ".join(outcomes),
            "service_denied": denied,
            "alternative_offered": offered,
        }

    return Fires(fires, details)


@condition("FR-ON-DEVICE")
def on_device(ctx: BatchContext) -> Fires:
    """Captures: off the device over the internet, or into the cloud."""
    internet = all_of(
        ctx.flag("transmitted_off_device"), ctx.equals("transmission_channel", "internet")
    )
    cloud = ctx.equals("storage_location", "cloud")
    fires = all_of(
        any_of(internet, cloud),
        _not_statutory(ctx),
        _no_consent_covering(ctx, "covers_internet_transfer"),
    )

    def details(row: Row) -> Details:
        transfer = []
        if row["transmitted_off_device"] and row["transmission_channel"] == "internet":
            transfer.append("sent over the internet")
        if row["storage_location"] == "cloud":
            transfer.append("stored in the cloud")
        return {"transfer": transfer, **_gap_details(row, "does not cover internet transfer")}

    return Fires(fires, details)


@condition("FR-RETENTION")
def retention(ctx: BatchContext) -> Fires:
    """Captures; a deployment rule: silent while the deployment is unknown."""
    declared = ctx.deployment.column("declared_retention_days")
    fires = mask(pc.greater(ctx.values("retention_days"), declared))
    return Fires(
        fires,
        lambda row: {
            "deployment_id": row["deployment_id"],
            "retention_days": row["retention_days"],
            "declared_retention_days": row.deployment("declared_retention_days"),
        },
    )


@condition("FR-RAW-IMAGE")
def raw_image(ctx: BatchContext) -> Fires:
    """Captures: original image kept, not anonymised, without cover."""
    fires = all_of(
        ctx.flag("raw_image_retained"),
        not_(ctx.flag("anonymized")),
        _not_statutory(ctx),
        _no_consent_covering(ctx, "covers_image_retention"),
    )
    return Fires(fires, lambda row: _gap_details(row, "does not cover image retention"))


@condition("FR-SENSITIVE-ATTR")
def sensitive_attributes(ctx: BatchContext) -> Fires:
    """Captures only (a match carries no attribute analysis)."""
    fires = all_of(
        ctx.any_item_in("attribute_analysis", SENSITIVE_ATTRIBUTES),
        not_(ctx.is_in("purpose", EXEMPT_PURPOSES)),
        not_(ctx.valid_consent),
    )

    def details(row: Row) -> Details:
        attributes = [a for a in row["attribute_analysis"] or () if a in SENSITIVE_ATTRIBUTES]
        return {"attributes": attributes, **_without_valid_consent(row, "purpose")}

    return Fires(fires, details)


@condition("FR-REMOTE-ID")
def remote_identification(ctx: BatchContext) -> Fires:
    """Matches: remote 1:N in a public place or business venue."""
    fires = all_of(
        ctx.equals("match_mode", "identify_1toN"),
        ctx.flag("remote_noncontact"),
        any_of(ctx.flag("public_place"), ctx.is_in("location_type", BUSINESS_VENUES)),
        not_(ctx.is_in("purpose", EXEMPT_PURPOSES)),
        not_(ctx.valid_consent),
    )
    return Fires(
        fires,
        lambda row: _without_valid_consent(row, "location_type", "public_place", "purpose"),
    )


@condition("FR-PIPIA")
def pipia(ctx: BatchContext) -> Fires:
    """A deployment rule: no impact assessment completed by the event."""
    done = mask(pc.less_equal(ctx.deployment.column("pipia_date"), ctx.values("event_time")))
    fires = all_of(ctx.has_deployment, not_(done))
    return Fires(
        fires,
        lambda row: {
            "deployment_id": row["deployment_id"],
            "pipia_date": _iso(row.deployment("pipia_date")),
        },
    )


@condition("FR-NOTICE")
def notice(ctx: BatchContext) -> Fires:
    """A deployment rule: incomplete notice, or consent given on another notice."""
    deployment, consent = ctx.deployment, ctx.consent
    incomplete = not_(mask(deployment.column("notice_complete")))
    other_notice = all_of(
        _on_consent(ctx),
        ctx.has_consent,
        differs(consent.column("notice_version"), deployment.column("notice_version")),
    )
    fires = all_of(ctx.has_deployment, any_of(incomplete, other_notice))

    def details(row: Row) -> Details:
        reasons = [] if row.deployment("notice_complete") else ["notice incomplete"]
        given, current = row.consent("notice_version"), row.deployment("notice_version")
        if row["legal_basis"] == "consent" and row.has_consent and given != current:
            reasons.append(
                f"consent was given on notice {given} but the current notice is {current}"
            )
        return {"deployment_id": row["deployment_id"], "reasons": reasons}

    return Fires(fires, details)


@condition("FR-ENCRYPTION")
def encryption(ctx: BatchContext) -> Fires:
    """Captures: unencrypted in transit or at rest."""
    in_transit = all_of(ctx.flag("transmitted_off_device"), not_(ctx.flag("encrypted_in_transit")))
    at_rest = all_of(ctx.flag("raw_image_retained"), not_(ctx.flag("encrypted_at_rest")))

    def details(row: Row) -> Details:
        reasons = []
        if row["transmitted_off_device"] and not row["encrypted_in_transit"]:
            reasons.append("sent off the device unencrypted")
        if row["raw_image_retained"] and not row["encrypted_at_rest"]:
            reasons.append("original image stored unencrypted")
        return {"reasons": reasons}

    return Fires(any_of(in_transit, at_rest), details)


@condition("FR-HIGH-STAKES-MANUAL")
def high_stakes_manual(ctx: BatchContext) -> Fires:
    """Matches: social assistance or real estate without review."""
    fires = all_of(ctx.is_in("purpose", HIGH_STAKES_PURPOSES), ctx.is_null("manual_review_id"))
    return Fires(fires, lambda row: {"purpose": row["purpose"]})


@condition("AUDIT-CLOCK-SKEW")
def clock_skew(ctx: BatchContext) -> Fires:
    """An event time far off the broker's time of its message (Kafka only)."""
    if ctx.has(BROKER_TIME):
        fires = skewed_times(ctx.values("event_time"), ctx.values(BROKER_TIME))
    else:
        fires = pa.repeat(False, ctx.num_rows)

    def details(row: Row) -> Details:
        event_time, broker_time = row["event_time"], row[BROKER_TIME]
        return {
            "event_time": _iso(event_time),
            "broker_time": _iso(broker_time),
            "skew": skew_words(event_time, broker_time),
            "ahead_seconds": int(AHEAD.total_seconds()),
            "behind_days": BEHIND.days,
        }

    return Fires(fires, details)


@condition("AUDIT-RAW-IDENTIFIER")
def raw_identifier(ctx: BatchContext) -> Fires:
    """A subject_ref or operator_id that is a real identifier; the details never hold it."""
    fields = [name for name in IDENTIFIER_FIELDS if ctx.has(name)]
    fires = any_of(*(looks_like_identifier(ctx.values(name)) for name in fields))

    def details(row: Row) -> Details:
        found = [(name, identifier_kind(row[name])) for name in fields]
        return {
            "fields": [name for name, kind in found if kind],
            "identifiers": [kind for _, kind in found if kind],
        }

    return Fires(fires, details)
