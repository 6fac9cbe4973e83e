"""The rule reference: the catalogue rendered for people (``faceaudit rules``, docs/rules.md).

docs/rules.md is this module's markdown output and must not be edited by hand:
regenerate it with ``python -m consumers.rules.reference > docs/rules.md`` (a
test fails while it is stale). Everything comes from the catalogue except the
examples below.

Each per-event rule's example is data, not prose: the fields to change in a
compliant event, its consent or its deployment so that this rule, and no
other, fires (values in the contract's JSON form). Tests apply each change to
compliant sample records and run the rule engine, so an example cannot claim
what the rule does not do. Stream rules need a sequence of events; their examples are a
sentence.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from consumers.rules.catalogue import PROFILES, Catalogue, Parameters, Rule, load_catalogue

REGENERATE: Final = "python -m consumers.rules.reference > docs/rules.md"
CATALOGUE_FILE: Final = "consumers/rules/catalogue.json"
TEXT_WIDTH: Final = 100


@dataclass(frozen=True, slots=True)
class Example:
    """A compliant ``kind`` event and its registry records, with ``changes`` applied.

    ``changes`` maps "event", "consent" or "deployment" to the fields to set.
    """

    kind: str
    changes: Mapping[str, Mapping[str, Any]]

    def describe(self) -> str:
        """E.g. ``a capture with location_type "hotel_room"; its consent with ...``."""
        parts = []
        for record, values in self.changes.items():
            subject = f"a {self.kind}" if record == "event" else f"its {record}"
            settings = ", ".join(f"{name} {json.dumps(value)}" for name, value in values.items())
            parts.append(f"{subject} with {settings}")
        if "event" not in self.changes:
            parts.insert(0, f"a compliant {self.kind}")
        return "; ".join(parts)


EXAMPLES: Final[Mapping[str, Example | str]] = {
    "REG-UNKNOWN-DEPLOYMENT": Example("capture", {"event": {"deployment_id": "d-unregistered"}}),
    "FR-PRIVATE-SPACE": Example(
        "capture", {"event": {"location_type": "hotel_room", "public_place": False}}
    ),
    "FR-PUBLIC-SIGNAGE": Example(
        "capture", {"event": {"public_place": True, "signage_present": False}}
    ),
    "FR-CAPTURE-ZONE": Example(
        "capture", {"event": {"public_place": True, "capture_zone_approved": False}}
    ),
    "FR-PUBLIC-PURPOSE": Example(
        "capture",
        {
            "event": {
                "public_place": True,
                "purpose": "payment",
                "legal_basis": "contract",
                "consent_id": None,
            }
        },
    ),
    "FR-PURPOSE-REGISTERED": Example(
        "capture",
        {"event": {"purpose": "payment"}, "deployment": {"registered_purposes": ["attendance"]}},
    ),
    "FR-CONSENT-MISSING": Example(
        "capture", {"event": {"legal_basis": "consent", "consent_id": None, "public_place": False}}
    ),
    "FR-CONSENT-WITHDRAWN": Example(
        "capture",
        {
            "event": {"event_time": "2026-03-01T08:00:00Z", "public_place": False},
            "consent": {"withdrawn_at": "2026-02-01T00:00:00Z"},
        },
    ),
    "FR-CONSENT-INVALID": Example(
        "capture", {"event": {"public_place": False}, "consent": {"consent_type": "bundled"}}
    ),
    "FR-CONSENT-WRITTEN": Example(
        "capture",
        {
            "consent": {"consent_type": "separate"},
            "deployment": {"law_requires_written_consent": True},
        },
    ),
    "FR-MINOR-GUARDIAN": Example(
        "capture", {"event": {"subject_age": 12}, "consent": {"grantor": "self"}}
    ),
    "FR-ALT-NONSOLE": Example(
        "match",
        {"event": {"match_mode": "verify_1to1", "alternative_available": False}},
    ),
    "FR-NO-COERCION": Example(
        "match", {"event": {"subject_declined_fr": True, "service_denied": True}}
    ),
    "FR-ON-DEVICE": Example(
        "capture",
        {"event": {"transmitted_off_device": True, "transmission_channel": "internet"}},
    ),
    "FR-RETENTION": Example(
        "capture",
        {"event": {"retention_days": 90}, "deployment": {"declared_retention_days": 30}},
    ),
    "FR-RAW-IMAGE": Example(
        "capture", {"event": {"raw_image_retained": True, "anonymized": False}}
    ),
    "FR-SENSITIVE-ATTR": Example(
        "capture",
        {
            "event": {
                "attribute_analysis": ["ethnicity"],
                "legal_basis": "contract",
                "consent_id": None,
                "public_place": False,
            }
        },
    ),
    "FR-REMOTE-ID": Example(
        "match",
        {
            "event": {
                "match_mode": "identify_1toN",
                "remote_noncontact": True,
                "location_type": "retail",
                "public_place": False,
                "legal_basis": "contract",
                "consent_id": None,
            }
        },
    ),
    "FR-PIPIA": Example("capture", {"deployment": {"pipia_date": None}}),
    "FR-NOTICE": Example("capture", {"deployment": {"notice_complete": False}}),
    "FR-ENCRYPTION": Example(
        "capture",
        {
            "event": {
                "transmitted_off_device": True,
                "transmission_channel": "private_network",
                "encrypted_in_transit": False,
            }
        },
    ),
    "FR-HIGH-STAKES-MANUAL": Example(
        "match",
        {
            "event": {"purpose": "social_assistance", "manual_review_id": None},
            "consent": {"purposes": ["social_assistance"]},
            "deployment": {"registered_purposes": ["social_assistance"]},
        },
    ),
    "AUDIT-SEQ-GAP": "device dev-1 sends device_seq 4 and then 7: one violation, at the event "
    "with seq 7, names the missing numbers 5 to 6",
    "AUDIT-CHAIN-BREAK": "the event with device_seq 5 carries a prev_hash that is not the "
    "SHA-256 of the Avro payload of event 4, which was altered after it was sent",
    "FR-FILING": "processor p-1 has no deployment with a filing_id, and an event brings its "
    "distinct subject_refs to the profile's filing_threshold",
    "FR-DELETION-OVERDUE": "consent c-1 of subject s-1 is withdrawn on 2026-03-01 and no "
    "deletion for processor p-1 and s-1 arrives by the end of the deletion window",
}

PARAMETER_MEANINGS: Final[Mapping[str, str]] = {
    "filing_threshold": "distinct subjects of a processor that require a filing (FR-FILING)",
    "filing_deadline_working_days": "working days from crossing the threshold to the filing "
    "deadline",
    "reorder_window_events": "events a device may run ahead of a missing sequence number "
    "before it is a gap (streaming only: offline the whole input is ordered by device_seq)",
    "reorder_window_seconds": "event-time seconds a missing sequence number may be late "
    "before it is a gap (streaming only, as above)",
    "deletion_window_days": "days after a consent withdrawal by which its face data must be "
    "deleted",
    "registry_grace_seconds": "how long the streaming validator holds an event whose consent "
    "or deployment record has not arrived",
}


def example(rule_id: str) -> str:
    """The rule's example as text; KeyError if the rule has none."""
    entry = EXAMPLES[rule_id]
    return entry if isinstance(entry, str) else entry.describe()


def _profiles(profile: str | None) -> tuple[str, ...]:
    return PROFILES if profile is None else (profile,)


def _severities(rule: Rule, profiles: tuple[str, ...]) -> str:
    return ", ".join(f"{profile} {rule.severity[profile]}" for profile in profiles)


def _applies_to(rule: Rule) -> str:
    return "the event stream (state across events)" if rule.is_stream else ", ".join(rule.kinds)


# -- text -----------------------------------------------------------------------


def render_text(catalogue: Catalogue, profile: str | None = None) -> str:
    """The catalogue for a terminal: one block per rule."""
    profiles = _profiles(profile)
    lines = [f"Rule catalogue {catalogue.version} (sha256 {catalogue.sha256})", ""]
    for rule in catalogue.rules:
        lines += [
            f"{rule.id}: {rule.title}",
            f"  articles:   {', '.join(rule.articles)}",
            f"  severity:   {_severities(rule, profiles)}",
            f"  applies to: {_applies_to(rule)}",
            _wrapped("  fires when: ", rule.description),
            _wrapped("  example:    ", example(rule.id)),
            "",
        ]
    lines.append("Profile parameters:")
    for item in fields(Parameters):
        values = ", ".join(f"{p} {getattr(catalogue.parameters(p), item.name):,}" for p in profiles)
        lines += [f"  {item.name}: {values}", _wrapped("    ", PARAMETER_MEANINGS[item.name])]
    return "\n".join(lines) + "\n"


def _wrapped(label: str, text: str) -> str:
    """``text`` after ``label``, folded to the terminal width with hanging indentation."""
    return textwrap.fill(
        text,
        TEXT_WIDTH,
        initial_indent=label,
        subsequent_indent=" " * len(label),
        break_on_hyphens=False,
    )


# -- markdown -------------------------------------------------------------------


def render_markdown(catalogue: Catalogue, profile: str | None = None) -> str:
    """The catalogue as the markdown of docs/rules.md."""
    profiles = _profiles(profile)
    sections = [
        _md_header(catalogue),
        _md_parameters(catalogue, profiles),
        _md_summary(catalogue, profiles),
        *(_md_rule(rule, profiles) for rule in catalogue.rules),
    ]
    return "\n\n".join(sections) + "\n"


def _md_header(catalogue: Catalogue) -> str:
    return "\n".join(
        (
            "# Rule reference",
            "",
            f"<!-- Generated from {CATALOGUE_FILE}: do not edit. Regenerate with",
            f"     {REGENERATE} -->",
            "",
            f"Generated from `{CATALOGUE_FILE}` by `{REGENERATE}`; a test fails while this "
            "file is stale.",
            "",
            f"Catalogue version **{catalogue.version}**, sha256 `{catalogue.sha256}`.",
            "",
            "Articles: `F n` is the 2025 Measures, `D n` the 2023 draft, `PIPL n` the law; "
            "`~` marks a number taken from secondary sources, `n/c` a provision whose number "
            "is unconfirmed. A rule with severity `off` in a profile does not fire there. "
            "A per-event rule's example changes a compliant event, its consent or its deployment "
            "in the fields shown (JSON form) so that this rule fires and no other.",
        )
    )


def _md_parameters(catalogue: Catalogue, profiles: tuple[str, ...]) -> str:
    rows = [
        "## Profile parameters",
        "",
        f"| parameter | {' | '.join(profiles)} | meaning |",
        f"|---|{'---:|' * len(profiles)}---|",
    ]
    for item in fields(Parameters):
        values = " | ".join(f"{getattr(catalogue.parameters(p), item.name):,}" for p in profiles)
        rows.append(f"| `{item.name}` | {values} | {PARAMETER_MEANINGS[item.name]} |")
    return "\n".join(rows)


def _md_summary(catalogue: Catalogue, profiles: tuple[str, ...]) -> str:
    rows = [
        "## Rules",
        "",
        f"| id | title | articles | {' | '.join(profiles)} | applies to |",
        f"|---|---|---|{'---|' * len(profiles)}---|",
    ]
    for rule in catalogue.rules:
        severities = " | ".join(rule.severity[p] for p in profiles)
        cells = (
            f"[{rule.id}](#{rule.id.lower()})",
            _cell(rule.title),
            _cell(", ".join(rule.articles)),
            severities,
            "stream" if rule.is_stream else ", ".join(rule.kinds),
        )
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def _md_rule(rule: Rule, profiles: tuple[str, ...]) -> str:
    return "\n".join(
        (
            f"### {rule.id}",
            "",
            f"**{rule.title}.** Articles: {', '.join(rule.articles)}. "
            f"Severity: {_severities(rule, profiles)}. Applies to: {_applies_to(rule)}.",
            "",
            f"Fires when: {rule.description}",
            "",
            f"Message: {rule.message}",
            "",
            f"Example: {example(rule.id)}.",
        )
    )


def _cell(text: str) -> str:
    """Table cells cannot hold a bare pipe."""
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(render_markdown(load_catalogue()), end="")
