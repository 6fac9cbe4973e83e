"""The rule catalogue: rules as data (catalogue.json), loaded once and validated.

The rule text lives in JSON, not code, so that a finding can be traced to the
exact catalogue it was judged against (``version`` and the file's ``sha256``,
as Falco exposes the hash of its loaded rules), and so that severities per
profile can be reviewed against rules.md without reading Python. A rule's
entry says all a reader needs (articles, severities, message, when it fires
and an example), and a parameter's entry its meaning and its value per
profile, so the rule reference is rendered from this file alone; only the
conditions, one per per-event rule (``conditions.py``), are code.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from schemas.topics import EVENT_KINDS

PROFILES: Final = ("cac-2025", "cac-2023-draft")
DEFAULT_PROFILE: Final = "cac-2025"
SEVERITIES: Final = ("critical", "high", "medium", "advisory", "off")
STREAM: Final = "stream"
"""The ``kinds`` value of a rule judged over the stream (state across events)."""

DEFAULT_PATH: Final = Path(__file__).with_name("catalogue.json")

EXAMPLE_RECORDS: Final = ("event", "consent", "deployment", "message")
"""What an example may change: the event, its registry records, and its Kafka message
(``broker_time``, the broker's time of it, which is otherwise the event's own time)."""
"""What a per-event rule's example may change, in the order the reference tells it."""

_TOP_KEYS: Final = frozenset(("version", "profiles", "parameters", "rules"))
_PARAMETER_KEYS: Final = frozenset(("meaning", "values"))
_RULE_KEYS: Final = frozenset(
    ("id", "title", "articles", "severity", "kinds", "tags", "message", "description", "example")
)


@dataclass(frozen=True, slots=True)
class Parameters:
    """Per-profile numbers used by the stream rules and the streaming validator."""

    filing_threshold: int
    filing_deadline_working_days: int
    reorder_window_events: int
    reorder_window_seconds: int
    deletion_window_days: int
    registry_grace_seconds: int
    checkpoint_window_events: int
    checkpoint_window_seconds: int


@dataclass(frozen=True, slots=True)
class Example:
    """A compliant ``kind`` event and its registry records, with ``changes`` applied.

    ``changes`` maps records of EXAMPLE_RECORDS to the fields to set, in the
    event contract's JSON form; with them this rule fires and no other (the
    rule reference tests hold every example to that).
    """

    kind: str
    changes: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One catalogue entry. ``message_fields`` are the details keys its message needs.

    ``example`` is data for a per-event rule and a sentence for a stream rule,
    which needs a sequence of events to fire.
    """

    id: str
    title: str
    articles: tuple[str, ...]
    severity: Mapping[str, str]
    kinds: tuple[str, ...]
    tags: tuple[str, ...]
    message: str
    description: str
    example: Example | str
    message_fields: frozenset[str]

    @property
    def is_stream(self) -> bool:
        """True for rules judged over the stream, not on one event alone."""
        return self.kinds == (STREAM,)

    def format_message(self, details: Mapping[str, Any]) -> str:
        """Fill the message template from a violation's details.

        Lists are shown comma-separated, so that reasons read as plain text.
        """
        values = {}
        for name in self.message_fields:
            value = details[name]
            values[name] = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
        return self.message.format_map(values)


def check_profile(profile: str) -> str:
    """Return ``profile`` if known, else raise ValueError naming the valid ones."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile


class Catalogue:
    """The loaded, validated rule catalogue.

    ``parameter_meanings`` says what each parameter means, in catalogue order.
    """

    __slots__ = (
        "_active",
        "_parameters",
        "_rules",
        "parameter_meanings",
        "path",
        "sha256",
        "version",
    )

    def __init__(self, raw: bytes, path: Path | None = None) -> None:
        """Parse and validate catalogue bytes; raise ValueError on any defect."""
        doc = json.loads(raw)
        if not isinstance(doc, dict) or set(doc) != _TOP_KEYS:
            raise ValueError(f"catalogue keys must be exactly {sorted(_TOP_KEYS)}")
        self.path = path
        self.sha256: str = hashlib.sha256(raw).hexdigest()
        self.version: str = _require_str(doc, "version", "catalogue")
        _check_profiles(doc["profiles"])
        self._parameters, meanings = _parse_parameters(doc["parameters"])
        self.parameter_meanings: Mapping[str, str] = MappingProxyType(meanings)
        if not isinstance(doc["rules"], list) or not doc["rules"]:
            raise ValueError("catalogue rules must be a non-empty list")
        rules = [_parse_rule(entry) for entry in doc["rules"]]
        self._rules: dict[str, Rule] = {}
        for rule in rules:
            if rule.id in self._rules:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            self._rules[rule.id] = rule
        self._active = {
            (profile, kind): tuple(
                rule for rule in rules if kind in rule.kinds and rule.severity[profile] != "off"
            )
            for profile in PROFILES
            for kind in (*EVENT_KINDS, STREAM)
        }

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> Catalogue:
        """Read and validate a catalogue file."""
        path = Path(path)
        return cls(path.read_bytes(), path)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """All rules, in catalogue order."""
        return tuple(self._rules.values())

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id; KeyError if there is none."""
        try:
            return self._rules[rule_id]
        except KeyError:
            raise KeyError(f"no rule {rule_id!r} in catalogue {self.version}") from None

    def severity(self, rule_id: str, profile: str) -> str:
        """Severity of a rule under a profile (``off`` means it never fires there)."""
        return self.rule(rule_id).severity[check_profile(profile)]

    def active_rules(self, profile: str, kind: str) -> tuple[Rule, ...]:
        """Rules that can fire under ``profile`` for ``kind`` (capture, match or stream)."""
        check_profile(profile)
        try:
            return self._active[profile, kind]
        except KeyError:
            valid = ", ".join((*EVENT_KINDS, STREAM))
            raise ValueError(f"unknown kind {kind!r}; valid kinds: {valid}") from None

    def parameters(self, profile: str) -> Parameters:
        """Thresholds and windows of a profile."""
        return self._parameters[check_profile(profile)]


@cache
def load_catalogue() -> Catalogue:
    """The packaged catalogue, read and validated once per process."""
    return Catalogue.load()


def _require_str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _require_str_list(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def _require_per_profile(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """``doc[key]``, an object with one value per profile, no more and no less."""
    value = doc[key]
    if not isinstance(value, dict) or sorted(value) != sorted(PROFILES):
        raise ValueError(f"{where}: {key} must name exactly the profiles {PROFILES}")
    return value


def _check_profiles(profiles: Any) -> None:
    if not isinstance(profiles, dict) or sorted(profiles) != sorted(PROFILES):
        raise ValueError(f"catalogue profiles must be exactly: {', '.join(PROFILES)}")
    for profile, entry in profiles.items():
        if not isinstance(entry, dict) or set(entry) != {"title"}:
            raise ValueError(f"profile {profile!r}: keys must be exactly ['title']")
        _require_str(entry, "title", f"profile {profile!r}")


def _parse_parameters(doc: Any) -> tuple[dict[str, Parameters], dict[str, str]]:
    """Each profile's Parameters, and what each parameter means."""
    names = [item.name for item in fields(Parameters)]
    if not isinstance(doc, dict) or set(doc) != set(names):
        raise ValueError(f"catalogue parameters must be exactly {sorted(names)}")
    meanings: dict[str, str] = {}
    values: dict[str, dict[str, int]] = {profile: {} for profile in PROFILES}
    for name, entry in doc.items():
        where = f"parameter {name}"
        if not isinstance(entry, dict) or set(entry) != _PARAMETER_KEYS:
            raise ValueError(f"{where}: keys must be exactly {sorted(_PARAMETER_KEYS)}")
        meanings[name] = _require_str(entry, "meaning", where)
        per_profile = _require_per_profile(entry, "values", where)
        if not all(type(v) is int and v > 0 for v in per_profile.values()):
            raise ValueError(f"{where}: values must be positive integers")
        for profile, value in per_profile.items():
            values[profile][name] = value
    return {profile: Parameters(**v) for profile, v in values.items()}, meanings


def _parse_rule(entry: Any) -> Rule:
    if not isinstance(entry, dict):
        raise ValueError(f"rule entry must be an object, got {entry!r}")
    rule_id = _require_str(entry, "id", "rule")
    where = f"rule {rule_id}"
    if set(entry) != _RULE_KEYS:
        raise ValueError(f"{where}: keys must be exactly {sorted(_RULE_KEYS)}")
    severity = _require_per_profile(entry, "severity", where)
    if bad := {s for s in severity.values() if s not in SEVERITIES}:
        raise ValueError(f"{where}: unknown severity {sorted(bad)}; valid: {SEVERITIES}")
    kinds = _require_str_list(entry, "kinds", where)
    if kinds != (STREAM,) and not (kinds and set(kinds) <= set(EVENT_KINDS)):
        raise ValueError(f"{where}: kinds must be a non-empty subset of {EVENT_KINDS} or [stream]")
    message = _require_str(entry, "message", where)
    return Rule(
        id=rule_id,
        title=_require_str(entry, "title", where),
        articles=_require_str_list(entry, "articles", where),
        severity=MappingProxyType(dict(severity)),
        kinds=kinds,
        tags=_require_str_list(entry, "tags", where),
        message=message,
        description=_require_str(entry, "description", where),
        example=_parse_example(entry["example"], kinds, where),
        message_fields=_template_fields(message, where),
    )


def _parse_example(example: Any, kinds: tuple[str, ...], where: str) -> Example | str:
    """Data (a kind and the changes) for a per-event rule, a sentence for a stream rule."""
    if kinds == (STREAM,):
        if not isinstance(example, str) or not example:
            raise ValueError(f"{where}: a stream rule's example must be a non-empty sentence")
        return example
    if not isinstance(example, dict) or example.get("kind") not in kinds:
        raise ValueError(f"{where}: example must be an object whose kind is one of {list(kinds)}")
    changes = {record: value for record, value in example.items() if record != "kind"}
    if not changes or not set(changes) <= set(EXAMPLE_RECORDS):
        raise ValueError(
            f"{where}: example must change one or more of {list(EXAMPLE_RECORDS)} and nothing else"
        )
    if not all(isinstance(value, dict) and value for value in changes.values()):
        raise ValueError(f"{where}: example changes must be non-empty objects of field values")
    ordered = {r: MappingProxyType(changes[r]) for r in EXAMPLE_RECORDS if r in changes}
    return Example(example["kind"], MappingProxyType(ordered))


def _template_fields(template: str, where: str) -> frozenset[str]:
    """Names a str.format template uses; only plain names, so details can fill them."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if bad := {n for n in names if not n.isidentifier()}:
        raise ValueError(f"{where}: message fields must be plain names, got {sorted(bad)}")
    return frozenset(names)
