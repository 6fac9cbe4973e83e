"""The rule catalogue against rules.md, and every per-event rule: fires and near misses."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from arrow_events import event_batch, rule_violations
from samples import sample

from consumers.registry import Registry
from consumers.rules.catalogue import (
    DEFAULT_PATH,
    PROFILES,
    STREAM,
    Catalogue,
    Parameters,
    load_catalogue,
)
from consumers.rules.columnar import ColumnarRules
from consumers.rules.conditions import CONDITIONS, condition, pipia

RULES_MD = Path(__file__).resolve().parents[1].parent / "shared/design/rules.md"
CATALOGUE = load_catalogue()
T = sample("capture")["event_time"]
US = timedelta(microseconds=1)
DEPLOYMENT_RULES = (
    "FR-PURPOSE-REGISTERED",
    "FR-PIPIA",
    "FR-NOTICE",
    "FR-RETENTION",
    "FR-CONSENT-WRITTEN",
)
NO_CONSENT = {"legal_basis": "contract", "consent_id": None}
"""Event overrides: nobody consented, and nothing claims they did."""
AT_T = {"granted_at": T - timedelta(days=30), "expires_at": None, "withdrawn_at": None}
"""Consent overrides pinning its validity window around the capture sample's time."""
WRITTEN_REQUIRED = {"law_requires_written_consent": True}
INTERNET_COVER = {"covers_internet_transfer": True}
IMAGE_COVER = {"covers_image_retention": True}
EXPIRED_COVER = {**AT_T, **INTERNET_COVER, "expires_at": T}


# -- rules.md, parsed -------------------------------------------------------------------------


@dataclass(frozen=True)
class DocRule:
    id: str
    articles: str
    severity: dict[str, str]
    stream: bool
    fires_when: str


TRUST_SECTION = "## Trust rules"


def _doc_rules(section: str | None = None) -> dict[str, DocRule]:
    """The rules of rules.md's tables; with `section`, only that section's ("## Trust rules")."""
    if not RULES_MD.exists():
        pytest.skip(f"{RULES_MD} not present")
    rules, stream, trust, heading = {}, False, False, ""
    for line in RULES_MD.read_text().splitlines():
        if line.startswith("## "):
            heading = line
            stream = line.startswith("## Stream rules")
            trust = line.startswith(TRUST_SECTION)
        if section is not None and not heading.startswith(section):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[A-Z]+(-[A-Z0-9]+)+", cells[0]):
            rule_id, articles, cac_2025, draft, fires_when = cells
            severity = {"cac-2025": cac_2025, "cac-2023-draft": draft}
            # A trust rule with "no event" is judged over the stream of records, and
            # the checkpoint rules over a device's stream of events and checkpoints.
            over_stream = trust and ("no event" in fires_when or "checkpoint" in fires_when)
            rules[rule_id] = DocRule(rule_id, articles, severity, stream or over_stream, fires_when)
    return rules


def _article_list(text: str) -> list[str]:
    """rules.md's article cell as one reference per item: "PIPL 14, 29" -> PIPL 14, PIPL 29."""
    items: list[str] = []
    for group in text.split(";"):
        prefix = ""
        for part in (p.strip() for p in group.split(",")):
            if part[0].isdigit():
                items.append(prefix + part)
            else:
                items.append(part)
                prefix = re.match(r"\D*", part).group()
    return items


def test_article_list_parsing() -> None:
    assert _article_list("F 6~; PIPL 14, 29") == ["F 6~", "PIPL 14", "PIPL 29"]
    assert _article_list("F 4, F 9~") == ["F 4", "F 9~"]
    assert _article_list("D n/c; GB/T 41819-2022 (guidance)") == [
        "D n/c",
        "GB/T 41819-2022 (guidance)",
    ]


def test_catalogue_has_exactly_the_rules_of_rules_md() -> None:
    """Every rule of rules.md, in its order."""
    assert len(_doc_rules(TRUST_SECTION)) == 7
    doc = list(_doc_rules())
    assert len(doc) == 33
    assert [rule.id for rule in CATALOGUE.rules] == doc


@pytest.mark.parametrize("rule_id", [rule.id for rule in CATALOGUE.rules])
def test_catalogue_entry_matches_rules_md(rule_id: str) -> None:
    doc = _doc_rules()[rule_id]
    rule = CATALOGUE.rule(rule_id)
    assert dict(rule.severity) == doc.severity
    assert list(rule.articles) == _article_list(doc.articles)
    assert rule.is_stream == doc.stream
    assert rule.title and rule.description and rule.tags


@pytest.mark.parametrize("rule_id", [rule.id for rule in CATALOGUE.rules])
def test_rule_kinds_follow_rules_md(rule_id: str) -> None:
    """Rules marked "(capture events)" or "a `match`" apply to that kind only.

    FR-ON-DEVICE reads storage and transmission fields that only captures carry.
    """
    doc = _doc_rules()[rule_id]
    if doc.stream:
        expected = (STREAM,)
    elif "(capture events)" in doc.fires_when or rule_id == "FR-ON-DEVICE":
        expected = ("capture",)
    elif "a `match`" in doc.fires_when:
        expected = ("match",)
    else:
        expected = ("capture", "match")
    assert CATALOGUE.rule(rule_id).kinds == expected


def test_catalogue_traceability() -> None:
    assert CATALOGUE.sha256 == hashlib.sha256(DEFAULT_PATH.read_bytes()).hexdigest()
    assert CATALOGUE.version
    assert load_catalogue() is CATALOGUE


def test_profile_parameters() -> None:
    windows = {
        "filing_deadline_working_days": 30,
        "reorder_window_events": 1000,
        "reorder_window_seconds": 30,
        "deletion_window_days": 15,
        "registry_grace_seconds": 30,
        "checkpoint_window_events": 1000,
        "checkpoint_window_seconds": 600,
    }
    assert CATALOGUE.parameters("cac-2025") == Parameters(filing_threshold=100_000, **windows)
    assert CATALOGUE.parameters("cac-2023-draft") == Parameters(filing_threshold=10_000, **windows)


def test_unknown_profile_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="cac-2025, cac-2023-draft"):
        CATALOGUE.severity("FR-PIPIA", "gdpr")
    with pytest.raises(ValueError, match="cac-2025, cac-2023-draft"):
        ColumnarRules("cac-2024", Registry())


def test_active_rules_leave_out_off_and_other_kinds() -> None:
    ids = {rule.id for rule in CATALOGUE.active_rules("cac-2025", "match")}
    assert "FR-HIGH-STAKES-MANUAL" not in ids and "FR-ALT-NONSOLE" in ids
    assert "FR-ENCRYPTION" not in ids
    draft = {rule.id for rule in CATALOGUE.active_rules("cac-2023-draft", "capture")}
    assert "FR-ON-DEVICE" not in draft and "FR-ENCRYPTION" in draft
    stream = {rule.id for rule in CATALOGUE.active_rules("cac-2025", STREAM)}
    assert stream == {
        "AUDIT-SEQ-GAP",
        "AUDIT-CHAIN-BREAK",
        "FR-FILING",
        "FR-DELETION-OVERDUE",
        "REG-CONSENT-REWRITTEN",
        "REG-UNSIGNED-RECORD",
        "AUDIT-CHECKPOINT-BAD",
        "AUDIT-CHECKPOINT-MISMATCH",
        "AUDIT-UNCHECKPOINTED",
    }
    with pytest.raises(ValueError, match="unknown kind"):
        CATALOGUE.active_rules("cac-2025", "consent")


@pytest.mark.parametrize("rule", [r for r in CATALOGUE.rules if r.is_stream], ids=str)
def test_stream_rule_messages_format_from_their_fields(rule: Any) -> None:
    message = rule.format_message(dict.fromkeys(rule.message_fields, "X"))
    assert "{" not in message


def _write_catalogue(tmp_path: Path, edit: Any) -> Path:
    doc = json.loads(DEFAULT_PATH.read_text())
    edit(doc)
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(doc))
    return path


def _stream_rule(doc: dict) -> dict:
    """The catalogue document's last stream rule."""
    return next(rule for rule in reversed(doc["rules"]) if rule["kinds"] == ["stream"])


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda d: d["rules"][0]["severity"].update({"cac-2025": "severe"}), "unknown severity"),
        (lambda d: d["rules"][0]["severity"].pop("cac-2023-draft"), "severity must name"),
        (lambda d: d["rules"].append(d["rules"][0]), "duplicate rule id"),
        (lambda d: d["rules"][0].update({"kinds": ["consent"]}), "kinds"),
        (lambda d: d["profiles"].pop("cac-2023-draft"), "profiles must be exactly"),
        (lambda d: d["rules"][0].update({"message": "{0}"}), "plain names"),
        (lambda d: d["rules"][0].pop("tags"), "keys must be exactly"),
        (lambda d: d.pop("parameters"), "catalogue keys must be exactly"),
        (lambda d: d["parameters"].pop("filing_threshold"), "parameters must be exactly"),
        (lambda d: d["parameters"]["filing_threshold"].pop("meaning"), "filing_threshold: keys"),
        (
            lambda d: d["parameters"]["deletion_window_days"]["values"].pop("cac-2025"),
            "deletion_window_days: values must name exactly the profiles",
        ),
        (
            lambda d: d["parameters"]["deletion_window_days"]["values"].update({"cac-2025": 0}),
            "positive integers",
        ),
        (lambda d: d["rules"][0].pop("example"), "keys must be exactly"),
        (lambda d: d["rules"][0]["example"].update({"kind": "deletion"}), "kind is one of"),
        (lambda d: d["rules"][0]["example"].update({"registry": {}}), "example must change"),
        (lambda d: d["rules"][0]["example"].pop("event"), "example must change"),
        (lambda d: d["rules"][0]["example"].update({"event": {}}), "non-empty objects"),
        (
            lambda d: _stream_rule(d).update({"example": {"kind": "stream"}}),
            "non-empty sentence",
        ),
    ],
    ids=[
        "severity",
        "profile-missing",
        "duplicate",
        "kinds",
        "profiles",
        "positional",
        "keys",
        "no-parameters",
        "parameter-missing",
        "parameter-meaning",
        "parameter-profile",
        "parameter-value",
        "no-example",
        "example-kind",
        "example-record",
        "example-unchanged",
        "example-empty",
        "stream-example",
    ],
)
def test_invalid_catalogue_is_rejected(tmp_path: Path, edit: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Catalogue.load(_write_catalogue(tmp_path, edit))


def test_engine_requires_a_condition_for_every_event_rule(tmp_path: Path) -> None:
    def drop_pipia(doc: dict) -> None:
        doc["rules"] = [r for r in doc["rules"] if r["id"] != "FR-PIPIA"]

    catalogue = Catalogue.load(_write_catalogue(tmp_path, drop_pipia))
    with pytest.raises(ValueError, match="no rule for \\['FR-PIPIA'\\]"):
        ColumnarRules("cac-2025", Registry(), catalogue)


def test_every_event_rule_has_a_condition() -> None:
    assert {r.id for r in CATALOGUE.rules if not r.is_stream} == CONDITIONS.keys()


def test_a_rule_cannot_have_two_conditions() -> None:
    with pytest.raises(ValueError, match="two conditions for rule 'FR-PIPIA'"):
        condition("FR-PIPIA")(pipia)
    assert CONDITIONS["FR-PIPIA"] is pipia


# -- per-event rules ---------------------------------------------------------------------------


AS_SAMPLE: Mapping[str, Any] = MappingProxyType({})
"""Registry record as the sample gives it; None instead means the record is absent."""


@dataclass(frozen=True)
class Case:
    """One event against one rule, with the registry records (overrides, or None) it meets."""

    kind: str
    rule: str
    name: str
    event: dict[str, Any]
    consent: Mapping[str, Any] | None
    deployment: Mapping[str, Any] | None
    fires: bool
    broker_after: timedelta | None = timedelta(0)
    """When the broker received the event, after its event_time (None: read from a file)."""

    def __str__(self) -> str:
        return f"{self.rule}:{self.kind}:{self.name}"


def hit(
    kind: str,
    rule: str,
    name: str,
    *,
    consent: Mapping[str, Any] | None = AS_SAMPLE,
    deployment: Mapping[str, Any] | None = AS_SAMPLE,
    broker_after: timedelta | None = timedelta(0),
    **event: Any,
) -> Case:
    """A sample event with ``event`` overrides that must fire ``rule``."""
    return Case(kind, rule, name, event, consent, deployment, True, broker_after)


def miss(
    kind: str,
    rule: str,
    name: str,
    *,
    consent: Mapping[str, Any] | None = AS_SAMPLE,
    deployment: Mapping[str, Any] | None = AS_SAMPLE,
    broker_after: timedelta | None = timedelta(0),
    **event: Any,
) -> Case:
    """A near miss: like ``hit``, but ``rule`` must not fire."""
    return Case(kind, rule, name, event, consent, deployment, False, broker_after)


def _registry(
    consent: Mapping[str, Any] | None = AS_SAMPLE,
    deployment: Mapping[str, Any] | None = AS_SAMPLE,
) -> Registry:
    registry = Registry()
    if consent is not None:
        registry.apply("consent", sample("consent", **consent))
    if deployment is not None:
        registry.apply("deployment", sample("deployment", **deployment))
    return registry


def _fired(
    profile: str,
    kind: str,
    event: dict[str, Any],
    registry: Registry,
    broker_after: timedelta | None = None,
) -> dict[str, Any]:
    broker_time = None if broker_after is None else event["event_time"] + broker_after
    return {v.rule_id: v for v in rule_violations(profile, registry, kind, event, broker_time)}


CAP, MAT = "capture", "match"
RESIDENT_ID = "11010519491231002X"
"""A resident identity number whose GB 11643 check character is right."""
IDENTIFY = {"match_mode": "identify_1toN", "remote_noncontact": True}
YEAR_9999 = datetime(9999, 12, 31, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
CASES = [
    hit(CAP, "REG-UNKNOWN-DEPLOYMENT", "not-registered", deployment=None),
    hit(MAT, "REG-UNKNOWN-DEPLOYMENT", "other-id", deployment_id="d-9"),
    miss(CAP, "REG-UNKNOWN-DEPLOYMENT", "registered"),
    hit(CAP, "FR-PRIVATE-SPACE", "hotel-room", location_type="hotel_room"),
    hit(MAT, "FR-PRIVATE-SPACE", "toilet-no-consent", location_type="toilet", **NO_CONSENT),
    hit(CAP, "FR-PRIVATE-SPACE", "statutory", location_type="public_bath", legal_basis="statutory"),
    miss(CAP, "FR-PRIVATE-SPACE", "lobby", location_type="hotel_lobby"),
    hit(CAP, "FR-PUBLIC-SIGNAGE", "no-sign", public_place=True, signage_present=False),
    miss(CAP, "FR-PUBLIC-SIGNAGE", "sign", public_place=True, signage_present=True),
    miss(CAP, "FR-PUBLIC-SIGNAGE", "not-public", public_place=False, signage_present=False),
    miss(MAT, "FR-PUBLIC-SIGNAGE", "match-has-no-sign", public_place=True),
    hit(CAP, "FR-CAPTURE-ZONE", "unapproved", public_place=True, capture_zone_approved=False),
    miss(CAP, "FR-CAPTURE-ZONE", "approved", public_place=True, capture_zone_approved=True),
    miss(CAP, "FR-CAPTURE-ZONE", "not-public", public_place=False, capture_zone_approved=False),
    hit(CAP, "FR-PUBLIC-PURPOSE", "no-consent", public_place=True, **NO_CONSENT),
    hit(MAT, "FR-PUBLIC-PURPOSE", "unknown-consent", public_place=True, consent_id="c-9"),
    hit(CAP, "FR-PUBLIC-PURPOSE", "not-covered", public_place=True, purpose="marketing"),
    miss(CAP, "FR-PUBLIC-PURPOSE", "valid-consent", public_place=True),
    miss(CAP, "FR-PUBLIC-PURPOSE", "exempt", purpose="public_security", **NO_CONSENT),
    miss(MAT, "FR-PUBLIC-PURPOSE", "not-public", public_place=False, **NO_CONSENT),
    hit(CAP, "FR-PURPOSE-REGISTERED", "marketing", purpose="marketing"),
    hit(MAT, "FR-PURPOSE-REGISTERED", "narrowed", deployment={"registered_purposes": ["other"]}),
    miss(MAT, "FR-PURPOSE-REGISTERED", "registered", purpose="access_control"),
    hit(CAP, "FR-CONSENT-MISSING", "null-id", consent_id=None),
    hit(MAT, "FR-CONSENT-MISSING", "not-in-registry", consent=None),
    miss(CAP, "FR-CONSENT-MISSING", "other-basis", **NO_CONSENT),
    miss(CAP, "FR-CONSENT-MISSING", "present"),
    hit(CAP, "FR-CONSENT-WITHDRAWN", "before", consent={**AT_T, "withdrawn_at": T - US}),
    hit(
        MAT, "FR-CONSENT-WITHDRAWN", "exactly-at", consent={**AT_T, "withdrawn_at": T}, event_time=T
    ),
    miss(CAP, "FR-CONSENT-WITHDRAWN", "just-after", consent={**AT_T, "withdrawn_at": T + US}),
    miss(
        CAP,
        "FR-CONSENT-WITHDRAWN",
        "other-basis",
        consent={**AT_T, "withdrawn_at": T},
        legal_basis="contract",
    ),
    hit(CAP, "FR-CONSENT-INVALID", "bundled", consent={"consent_type": "bundled"}),
    hit(CAP, "FR-CONSENT-INVALID", "other-processor", consent={"processor_id": "p-2"}),
    hit(MAT, "FR-CONSENT-INVALID", "other-subject", subject_ref="s-2"),
    hit(CAP, "FR-CONSENT-INVALID", "not-covered", purpose="marketing"),
    hit(CAP, "FR-CONSENT-INVALID", "not-yet-granted", consent={**AT_T, "granted_at": T + US}),
    hit(CAP, "FR-CONSENT-INVALID", "expires-exactly-at", consent={**AT_T, "expires_at": T}),
    miss(CAP, "FR-CONSENT-INVALID", "granted-exactly-at", consent={**AT_T, "granted_at": T}),
    miss(CAP, "FR-CONSENT-INVALID", "expires-just-after", consent={**AT_T, "expires_at": T + US}),
    miss(CAP, "FR-CONSENT-INVALID", "withdrawn-only", consent={**AT_T, "withdrawn_at": T}),
    miss(CAP, "FR-CONSENT-INVALID", "written", consent={"consent_type": "written"}),
    miss(
        CAP,
        "FR-CONSENT-INVALID",
        "other-basis",
        consent={"consent_type": "bundled"},
        legal_basis="contract",
    ),
    hit(CAP, "FR-CONSENT-WRITTEN", "separate", deployment=WRITTEN_REQUIRED),
    miss(
        MAT,
        "FR-CONSENT-WRITTEN",
        "written",
        consent={"consent_type": "written"},
        deployment=WRITTEN_REQUIRED,
    ),
    miss(CAP, "FR-CONSENT-WRITTEN", "not-required"),
    miss(CAP, "FR-CONSENT-WRITTEN", "missing", consent=None, deployment=WRITTEN_REQUIRED),
    hit(CAP, "FR-MINOR-GUARDIAN", "self-granted", subject_age=13),
    hit(MAT, "FR-MINOR-GUARDIAN", "missing", subject_age=10, consent_id=None),
    miss(CAP, "FR-MINOR-GUARDIAN", "fourteen", subject_age=14),
    miss(CAP, "FR-MINOR-GUARDIAN", "age-unknown", subject_age=None),
    miss(MAT, "FR-MINOR-GUARDIAN", "guardian", consent={"grantor": "guardian"}, subject_age=10),
    miss(CAP, "FR-MINOR-GUARDIAN", "other-basis", subject_age=10, **NO_CONSENT),
    hit(MAT, "FR-ALT-NONSOLE", "sole", match_mode="verify_1to1", alternative_available=False),
    miss(MAT, "FR-ALT-NONSOLE", "alternative", alternative_available=True),
    miss(MAT, "FR-ALT-NONSOLE", "statutory", alternative_available=False, legal_basis="statutory"),
    miss(MAT, "FR-ALT-NONSOLE", "identify", alternative_available=False, **IDENTIFY),
    hit(MAT, "FR-NO-COERCION", "denied", subject_declined_fr=True, service_denied=True),
    hit(
        MAT, "FR-NO-COERCION", "no-alternative", subject_declined_fr=True, alternative_offered=False
    ),
    miss(MAT, "FR-NO-COERCION", "offered", subject_declined_fr=True, alternative_offered=True),
    miss(MAT, "FR-NO-COERCION", "not-declined", service_denied=True, alternative_offered=False),
    miss(
        MAT,
        "FR-NO-COERCION",
        "statutory",
        subject_declined_fr=True,
        service_denied=True,
        legal_basis="statutory",
    ),
    hit(
        CAP,
        "FR-ON-DEVICE",
        "internet",
        transmitted_off_device=True,
        transmission_channel="internet",
    ),
    hit(CAP, "FR-ON-DEVICE", "cloud-no-consent", storage_location="cloud", **NO_CONSENT),
    hit(
        CAP, "FR-ON-DEVICE", "covered-but-expired", consent=EXPIRED_COVER, storage_location="cloud"
    ),
    miss(
        CAP,
        "FR-ON-DEVICE",
        "private-network",
        transmitted_off_device=True,
        transmission_channel="private_network",
    ),
    miss(CAP, "FR-ON-DEVICE", "statutory", storage_location="cloud", legal_basis="statutory"),
    miss(CAP, "FR-ON-DEVICE", "covered", consent=INTERNET_COVER, storage_location="cloud"),
    hit(
        CAP, "FR-RETENTION", "longer", retention_days=31, deployment={"declared_retention_days": 30}
    ),
    miss(
        CAP, "FR-RETENTION", "equal", retention_days=30, deployment={"declared_retention_days": 30}
    ),
    hit(CAP, "FR-RAW-IMAGE", "kept", raw_image_retained=True, anonymized=False),
    hit(
        CAP,
        "FR-RAW-IMAGE",
        "covered-other-subject",
        consent=IMAGE_COVER,
        subject_ref="s-2",
        raw_image_retained=True,
    ),
    miss(CAP, "FR-RAW-IMAGE", "anonymized", raw_image_retained=True, anonymized=True),
    miss(CAP, "FR-RAW-IMAGE", "statutory", raw_image_retained=True, legal_basis="statutory"),
    miss(CAP, "FR-RAW-IMAGE", "covered", consent=IMAGE_COVER, raw_image_retained=True),
    hit(
        CAP, "FR-SENSITIVE-ATTR", "ethnicity", attribute_analysis=["age", "ethnicity"], **NO_CONSENT
    ),
    miss(CAP, "FR-SENSITIVE-ATTR", "not-sensitive", attribute_analysis=["emotion"], **NO_CONSENT),
    miss(CAP, "FR-SENSITIVE-ATTR", "valid-consent", attribute_analysis=["health"]),
    miss(
        CAP,
        "FR-SENSITIVE-ATTR",
        "exempt",
        attribute_analysis=["religion"],
        purpose="emergency",
        **NO_CONSENT,
    ),
    miss(MAT, "FR-SENSITIVE-ATTR", "match-has-no-attributes", **NO_CONSENT),
    hit(MAT, "FR-REMOTE-ID", "public", public_place=True, **IDENTIFY, **NO_CONSENT),
    hit(
        MAT,
        "FR-REMOTE-ID",
        "bank",
        public_place=False,
        location_type="bank",
        **IDENTIFY,
        **NO_CONSENT,
    ),
    miss(
        MAT,
        "FR-REMOTE-ID",
        "workplace",
        public_place=False,
        location_type="workplace",
        **IDENTIFY,
        **NO_CONSENT,
    ),
    miss(MAT, "FR-REMOTE-ID", "contact", **{**IDENTIFY, "remote_noncontact": False}, **NO_CONSENT),
    miss(MAT, "FR-REMOTE-ID", "verify", **{**IDENTIFY, "match_mode": "verify_1to1"}, **NO_CONSENT),
    miss(MAT, "FR-REMOTE-ID", "exempt", purpose="public_security", **IDENTIFY, **NO_CONSENT),
    miss(MAT, "FR-REMOTE-ID", "valid-consent", **IDENTIFY),
    miss(CAP, "FR-REMOTE-ID", "capture-has-no-mode", remote_noncontact=True, **NO_CONSENT),
    hit(CAP, "FR-PIPIA", "none", deployment={"pipia_date": None}),
    hit(MAT, "FR-PIPIA", "after", deployment={"pipia_date": T + US}, event_time=T),
    miss(CAP, "FR-PIPIA", "exactly-at", deployment={"pipia_date": T}),
    hit(CAP, "FR-NOTICE", "incomplete", deployment={"notice_complete": False}),
    hit(MAT, "FR-NOTICE", "old-version", consent={"notice_version": "n0"}),
    miss(CAP, "FR-NOTICE", "same-version"),
    miss(CAP, "FR-NOTICE", "other-basis", consent={"notice_version": "n0"}, legal_basis="contract"),
    hit(
        CAP,
        "FR-ENCRYPTION",
        "transit",
        transmitted_off_device=True,
        encrypted_in_transit=False,
        transmission_channel="private_network",
    ),
    hit(CAP, "FR-ENCRYPTION", "at-rest", raw_image_retained=True, encrypted_at_rest=False),
    miss(
        CAP,
        "FR-ENCRYPTION",
        "encrypted",
        transmitted_off_device=True,
        raw_image_retained=True,
        transmission_channel="private_network",
    ),
    miss(CAP, "FR-ENCRYPTION", "nothing-kept", raw_image_retained=False, encrypted_at_rest=False),
    hit(MAT, "FR-HIGH-STAKES-MANUAL", "social-assistance", purpose="social_assistance"),
    hit(MAT, "FR-HIGH-STAKES-MANUAL", "real-estate", purpose="real_estate"),
    miss(MAT, "FR-HIGH-STAKES-MANUAL", "reviewed", purpose="real_estate", manual_review_id="r-1"),
    miss(MAT, "FR-HIGH-STAKES-MANUAL", "payment"),
    hit(CAP, "AUDIT-RAW-IDENTIFIER", "resident-id", subject_ref=RESIDENT_ID),
    hit(MAT, "AUDIT-RAW-IDENTIFIER", "resident-id-small-x", subject_ref=RESIDENT_ID.lower()),
    hit(MAT, "AUDIT-RAW-IDENTIFIER", "mobile-operator", operator_id="13800138000"),
    hit(CAP, "AUDIT-RAW-IDENTIFIER", "mobile-subject", subject_ref="19912345678"),
    miss(CAP, "AUDIT-RAW-IDENTIFIER", "wrong-check-character", subject_ref="110105194912310021"),
    miss(CAP, "AUDIT-RAW-IDENTIFIER", "not-a-mobile-prefix", subject_ref="12800138000"),
    miss(MAT, "AUDIT-RAW-IDENTIFIER", "twelve-digits", operator_id="138001380001"),
    miss(CAP, "AUDIT-RAW-IDENTIFIER", "pseudonym"),
    miss(CAP, "AUDIT-RAW-IDENTIFIER", "nobody", subject_ref=None, consent_id=None),
    hit(CAP, "AUDIT-CLOCK-SKEW", "ahead", broker_after=-timedelta(minutes=5, seconds=1)),
    hit(MAT, "AUDIT-CLOCK-SKEW", "behind", broker_after=timedelta(days=7, seconds=1)),
    hit(
        CAP, "AUDIT-CLOCK-SKEW", "year-9999", event_time=YEAR_9999, broker_after=-(YEAR_9999 - NOW)
    ),
    miss(CAP, "AUDIT-CLOCK-SKEW", "five-minutes-ahead", broker_after=-timedelta(minutes=5)),
    miss(MAT, "AUDIT-CLOCK-SKEW", "seven-days-behind", broker_after=timedelta(days=7)),
    miss(CAP, "AUDIT-CLOCK-SKEW", "from-a-file", event_time=YEAR_9999, broker_after=None),
]


def test_every_event_rule_has_firing_and_near_miss_cases() -> None:
    for rule_id in CONDITIONS:
        outcomes = {case.fires for case in CASES if case.rule == rule_id}
        assert outcomes == {True, False}, rule_id


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule(case: Case, profile: str) -> None:
    event = sample(case.kind, **case.event)
    registry = _registry(case.consent, case.deployment)
    fired = _fired(profile, case.kind, event, registry, case.broker_after)
    severity = CATALOGUE.severity(case.rule, profile)
    expected = case.fires and severity != "off"
    assert (case.rule in fired) == expected, sorted(fired)
    if expected:
        _check_violation(fired[case.rule], event, profile, severity)


def _check_violation(violation: Any, event: dict[str, Any], profile: str, severity: str) -> None:
    rule = CATALOGUE.rule(violation.rule_id)
    assert violation.severity == severity
    assert violation.profile == profile
    assert violation.catalogue_version == CATALOGUE.version
    assert violation.articles == rule.articles
    assert violation.message == rule.format_message(violation.details)
    assert "{" not in violation.message
    assert rule.message_fields <= violation.details.keys()
    assert json.loads(json.dumps(violation.details)) == violation.details
    for name in ("event_id", "processor_id", "deployment_id", "device_id", "region_code"):
        assert getattr(violation, name) == event[name]
    assert violation.event_time == event["event_time"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", ["capture", "match"])
def test_compliant_samples_fire_nothing(kind: str, profile: str) -> None:
    assert _fired(profile, kind, sample(kind), _registry()) == {}


def test_unknown_deployment_suppresses_deployment_rules() -> None:
    event = sample("capture", purpose="access_control", retention_days=365)
    bad_deployment = {
        "registered_purposes": ["payment"],
        "declared_retention_days": 7,
        "pipia_date": None,
        "notice_complete": False,
        "law_requires_written_consent": True,
    }
    known = _fired("cac-2025", "capture", event, _registry(deployment=bad_deployment))
    assert set(DEPLOYMENT_RULES) <= known.keys()
    assert "REG-UNKNOWN-DEPLOYMENT" not in known
    unknown = _fired("cac-2025", "capture", event, _registry(deployment=None))
    assert set(unknown) == {"REG-UNKNOWN-DEPLOYMENT"}


def test_withdrawn_and_invalid_fire_together() -> None:
    consent = {**AT_T, "withdrawn_at": T, "expires_at": T, "consent_type": "bundled"}
    fired = _fired("cac-2025", "capture", sample("capture"), _registry(consent))
    assert {"FR-CONSENT-WITHDRAWN", "FR-CONSENT-INVALID"} <= fired.keys()
    assert fired["FR-CONSENT-INVALID"].details["reasons"] == ["bundled", "expired"]


def test_a_later_consent_record_wins_but_never_undoes_a_withdrawal() -> None:
    registry = _registry(AT_T)
    event = sample("capture")
    assert _fired("cac-2025", "capture", event, registry) == {}
    assert registry.apply("consent", sample("consent", **AT_T, purposes=["access_control"])) == []
    assert set(_fired("cac-2025", "capture", event, registry)) == {
        "FR-PUBLIC-PURPOSE",
        "FR-CONSENT-INVALID",
    }
    withdrawal = sample("consent", **{**AT_T, "withdrawn_at": T - timedelta(days=1)})
    assert registry.apply("consent", withdrawal) == []
    assert "FR-CONSENT-WITHDRAWN" in _fired("cac-2025", "capture", event, registry)
    [refused] = registry.apply("consent", sample("consent", **AT_T))
    assert (refused.field, refused.asked) == ("withdrawn_at", None)
    assert "FR-CONSENT-WITHDRAWN" in _fired("cac-2025", "capture", event, registry)


BAD_CAPTURE = {
    "location_type": "changing_room",
    "public_place": True,
    "signage_present": False,
    "capture_zone_approved": False,
    "purpose": "marketing",
    "subject_age": 9,
    "consent_id": "c-404",
    "attribute_analysis": ["race", "emotion"],
    "raw_image_retained": True,
    "retention_days": 400,
    "storage_location": "cloud",
    "transmitted_off_device": True,
    "transmission_channel": "internet",
    "encrypted_at_rest": False,
    "encrypted_in_transit": False,
}
BAD_CAPTURE_RULES = {
    "FR-PRIVATE-SPACE",
    "FR-PUBLIC-SIGNAGE",
    "FR-CAPTURE-ZONE",
    "FR-PUBLIC-PURPOSE",
    "FR-PURPOSE-REGISTERED",
    "FR-CONSENT-MISSING",
    "FR-MINOR-GUARDIAN",
    "FR-RETENTION",
    "FR-RAW-IMAGE",
    "FR-SENSITIVE-ATTR",
    "FR-PIPIA",
    "FR-NOTICE",
    "FR-ENCRYPTION",
}


@pytest.mark.parametrize(
    ("profile", "extra"), [("cac-2025", {"FR-ON-DEVICE"}), ("cac-2023-draft", set())]
)
def test_all_matching_rules_fire_together(profile: str, extra: set[str]) -> None:
    event = sample("capture", **BAD_CAPTURE)
    registry = _registry(deployment={"pipia_date": None, "notice_complete": False})
    violations = rule_violations(profile, registry, "capture", event)
    assert [v.rule_id for v in violations] == [
        r.id for r in CATALOGUE.rules if r.id in BAD_CAPTURE_RULES | extra
    ]
    assert len({v.violation_id for v in violations}) == len(violations)


def test_violation_ids_are_unique_per_processor_event_and_rule() -> None:
    """Event ids are the processors' own: the same one from two processors is two events."""
    ids = set()
    for processor, event_id in [("p-1", "e-1"), ("p-2", "e-1"), ("p-1|e", "1"), ("p-1", "e|1")]:
        event = sample("capture", processor_id=processor, event_id=event_id)
        registry = _registry(consent=None, deployment={"processor_id": processor})
        [violation] = [
            v
            for v in rule_violations("cac-2025", registry, "capture", event)
            if v.rule_id == "FR-CONSENT-MISSING"
        ]
        again = rule_violations("cac-2025", registry, "capture", event)
        assert violation.violation_id in {v.violation_id for v in again}, "deterministic"
        ids.add(violation.violation_id)
    assert len(ids) == 4


def test_bad_match_fires_all_its_rules_in_the_draft() -> None:
    event = sample(
        "match",
        match_mode="identify_1toN",
        remote_noncontact=True,
        location_type="venue",
        public_place=False,
        purpose="social_assistance",
        alternative_available=False,
        subject_declined_fr=True,
        service_denied=True,
        consent_id=None,
    )
    fired = _fired("cac-2023-draft", "match", event, _registry())
    assert set(fired) == {
        "FR-PURPOSE-REGISTERED",
        "FR-CONSENT-MISSING",
        "FR-NO-COERCION",
        "FR-REMOTE-ID",
        "FR-HIGH-STAKES-MANUAL",
    }
    assert fired["FR-REMOTE-ID"].severity == "high"


def test_unknown_kind_is_rejected() -> None:
    [deletions] = event_batch("deletion", [sample("deletion")]).values()
    with pytest.raises(ValueError, match="not 'deletion'"):
        ColumnarRules("cac-2025", Registry()).evaluate("deletion", deletions)


def test_violation_for_a_stream_rule() -> None:
    engine = ColumnarRules("cac-2023-draft", Registry())
    finding = {"processor_id": "p-1", "event_time": T}
    details = {
        "consent_id": "c-1",
        "subject_ref": "s-1",
        "processor_id": "p-1",
        "withdrawn_at": "2026-02-01T00:00:00+00:00",
        "deadline": "2026-02-16T00:00:00+00:00",
    }
    violation = engine.violation("FR-DELETION-OVERDUE", finding, details)
    assert violation.event_id is None and violation.device_id == ""
    assert violation.severity == "high" and "c-1" in violation.message
    assert engine.is_active("FR-HIGH-STAKES-MANUAL")
    assert not ColumnarRules("cac-2025", Registry()).is_active("FR-HIGH-STAKES-MANUAL")
