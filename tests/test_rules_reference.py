"""The rule reference: docs/rules.md cannot go stale, and every example is true."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from arrow_events import rule_violations
from samples import sample

from consumers.registry import Registry
from consumers.rules.catalogue import PROFILES, Example, Parameters, Rule, load_catalogue
from consumers.rules.reference import REGENERATE, render_markdown, render_text
from faceaudit.cli import main
from schemas import codec

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
CATALOGUE = load_catalogue()
PER_EVENT = [rule for rule in CATALOGUE.rules if not rule.is_stream]


def test_doc_is_the_rendered_catalogue() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(CATALOGUE), (
        f"docs/rules.md is stale: run `{REGENERATE}`"
    )


def test_doc_names_version_hash_and_regeneration_command() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert CATALOGUE.version in doc
    assert CATALOGUE.sha256 in doc
    assert REGENERATE in doc.split("## ", 1)[0]


@pytest.mark.parametrize("rule", CATALOGUE.rules, ids=lambda rule: rule.id)
def test_every_rule_is_documented_with_its_example(rule: Rule) -> None:
    doc = render_markdown(CATALOGUE)
    section = doc.split(f"### {rule.id}\n", 1)[1].split("\n### ", 1)[0]
    assert rule.title in section and rule.description in section
    example = section.split("Example: ", 1)[1]
    if isinstance(rule.example, str):
        assert example == f"{rule.example}.\n"
    else:
        for changes in rule.example.changes.values():
            assert all(f"{name} {json.dumps(value)}" in example for name, value in changes.items())


def test_per_event_rules_have_data_examples_and_stream_rules_sentences() -> None:
    for rule in CATALOGUE.rules:
        assert isinstance(rule.example, str) == rule.is_stream, rule.id


def test_parameters_are_explained_and_shown_per_profile() -> None:
    assert list(CATALOGUE.parameter_meanings) == [item.name for item in fields(Parameters)]
    doc = render_markdown(CATALOGUE)
    for name, meaning in CATALOGUE.parameter_meanings.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.endswith(f" | {meaning} |")
        for profile in PROFILES:
            assert f"{getattr(CATALOGUE.parameters(profile), name):,}" in row


def _record(kind: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A compliant sample of ``kind`` with JSON-form ``changes`` applied, parsed by the codec."""
    return codec.from_json(codec.to_json(kind, sample(kind)) | dict(changes))[1]


def _fired(example: Example, profile: str) -> list[str]:
    registry = Registry()
    for kind in ("consent", "deployment"):
        registry.apply(kind, _record(kind, example.changes.get(kind, {})))
    event = _record(example.kind, example.changes.get("event", {}))
    message = example.changes.get("message", {})
    # As read from Kafka: stamped by the broker as it arrives, unless the example says when.
    if "broker_time" in message:
        broker_time = datetime.fromisoformat(message["broker_time"])
    else:
        broker_time = event["event_time"]
    fired = rule_violations(profile, registry, example.kind, event, broker_time)
    return [v.rule_id for v in fired]


@pytest.mark.parametrize("kind", ["capture", "match"])
def test_the_examples_baseline_is_compliant(kind: str) -> None:
    for profile in PROFILES:
        assert _fired(Example(kind, {}), profile) == []


@pytest.mark.parametrize(
    ("rule_id", "profile"),
    [
        (rule.id, profile)
        for rule in PER_EVENT
        for profile in PROFILES
        if rule.severity[profile] != "off"
    ],
)
def test_example_fires_its_rule_and_no_other(rule_id: str, profile: str) -> None:
    example = CATALOGUE.rule(rule_id).example
    assert isinstance(example, Example)
    assert _fired(example, profile) == [rule_id]


def test_rules_command_prints_every_rule_in_one_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--profile", "cac-2023-draft"]) == 0
    out = capsys.readouterr().out
    assert out == render_text(CATALOGUE, "cac-2023-draft")
    for rule in CATALOGUE.rules:
        assert f"{rule.id}: {rule.title}" in out
        assert f"severity:   cac-2023-draft {rule.severity['cac-2023-draft']}\n" in out
    assert "cac-2025" not in out.split("\n", 1)[1]


def test_rules_command_markdown_is_the_doc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == DOC.read_text(encoding="utf-8")
