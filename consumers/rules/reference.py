"""The rule reference: the catalogue rendered for people (``faceaudit rules``, docs/rules.md).

docs/rules.md is this module's markdown output and must not be edited by hand:
regenerate it with ``python -m consumers.rules.reference > docs/rules.md`` (a
test fails while it is stale). Everything shown comes from the catalogue, the
examples and the parameters' meanings included.
"""

from __future__ import annotations

import json
import textwrap
from typing import Final

from consumers.rules.catalogue import PROFILES, Catalogue, Rule, load_catalogue

REGENERATE: Final = "python -m consumers.rules.reference > docs/rules.md"
CATALOGUE_FILE: Final = "consumers/rules/catalogue.json"
TEXT_WIDTH: Final = 100


def _example(rule: Rule) -> str:
    """E.g. ``a capture with location_type "hotel_room"; its consent with ...``."""
    example = rule.example
    if isinstance(example, str):
        return example
    parts = [] if "event" in example.changes else [f"a compliant {example.kind}"]
    for record, values in example.changes.items():
        subject = f"a {example.kind}" if record == "event" else f"its {record}"
        settings = ", ".join(f"{name} {json.dumps(value)}" for name, value in values.items())
        parts.append(f"{subject} with {settings}")
    return "; ".join(parts)


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
            _wrapped("  example:    ", _example(rule)),
            "",
        ]
    lines.append("Profile parameters:")
    for name, meaning in catalogue.parameter_meanings.items():
        values = ", ".join(f"{p} {getattr(catalogue.parameters(p), name):,}" for p in profiles)
        lines += [f"  {name}: {values}", _wrapped("    ", meaning)]
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
            "A per-event rule's example changes a compliant event, its consent, its deployment "
            "or its Kafka message in the fields shown (JSON form) so that this rule fires and "
            "no other.",
        )
    )


def _md_parameters(catalogue: Catalogue, profiles: tuple[str, ...]) -> str:
    rows = [
        "## Profile parameters",
        "",
        f"| parameter | {' | '.join(profiles)} | meaning |",
        f"|---|{'---:|' * len(profiles)}---|",
    ]
    for name, meaning in catalogue.parameter_meanings.items():
        values = " | ".join(f"{getattr(catalogue.parameters(p), name):,}" for p in profiles)
        rows.append(f"| `{name}` | {values} | {meaning} |")
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
            f"Example: {_example(rule)}.",
        )
    )


def _cell(text: str) -> str:
    """Table cells cannot hold a bare pipe."""
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(render_markdown(load_catalogue()), end="")
