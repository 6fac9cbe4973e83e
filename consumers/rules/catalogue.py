"""The rule catalogue: rules as data (catalogue.json), loaded once and validated.

The rule text lives in JSON, not code, so that a finding can be traced to the
exact catalogue it was judged against (``version`` and the file's ``sha256``,
as Falco exposes the hash of its loaded rules), and so that severities per
profile can be reviewed against rules.md without reading Python.
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

_RULE_KEYS: Final = frozenset(
    ("id", "title", "articles", "severity", "kinds", "tags", "message", "description")
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


@dataclass(frozen=True, slots=True)
class Rule:
    """One catalogue entry. ``message_fields`` are the details keys its message needs."""

    id: str
    title: str
    articles: tuple[str, ...]
    severity: Mapping[str, str]
    kinds: tuple[str, ...]
    tags: tuple[str, ...]
    message: str
    description: str
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
    """The loaded, validated rule catalogue."""

    __slots__ = ("_active", "_parameters", "_rules", "path", "sha256", "version")

    def __init__(self, raw: bytes, path: Path | None = None) -> None:
        """Parse and validate catalogue bytes; raise ValueError on any defect."""
        doc = json.loads(raw)
        self.path = path
        self.sha256: str = hashlib.sha256(raw).hexdigest()
        self.version: str = _require_str(doc, "version", "catalogue")
        self._parameters = _parse_profiles(doc.get("profiles"))
        rules = [_parse_rule(entry) for entry in doc.get("rules") or ()]
        if not rules:
            raise ValueError("catalogue has no rules")
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


def _parse_profiles(profiles: Any) -> dict[str, Parameters]:
    if not isinstance(profiles, dict) or sorted(profiles) != sorted(PROFILES):
        raise ValueError(f"catalogue profiles must be exactly: {', '.join(PROFILES)}")
    names = {f.name for f in fields(Parameters)}
    parsed = {}
    for profile, entry in profiles.items():
        params = entry.get("parameters") if isinstance(entry, dict) else None
        if not isinstance(params, dict) or set(params) != names:
            raise ValueError(f"profile {profile!r}: parameters must be exactly {sorted(names)}")
        if not all(type(v) is int and v > 0 for v in params.values()):
            raise ValueError(f"profile {profile!r}: parameters must be positive integers")
        parsed[profile] = Parameters(**params)
    return parsed


def _parse_rule(entry: Any) -> Rule:
    if not isinstance(entry, dict):
        raise ValueError(f"rule entry must be an object, got {entry!r}")
    rule_id = _require_str(entry, "id", "rule")
    where = f"rule {rule_id}"
    if set(entry) != _RULE_KEYS:
        raise ValueError(f"{where}: keys must be exactly {sorted(_RULE_KEYS)}")
    severity = entry["severity"]
    if not isinstance(severity, dict) or sorted(severity) != sorted(PROFILES):
        raise ValueError(f"{where}: severity must name exactly the profiles {PROFILES}")
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
        message_fields=_template_fields(message, where),
    )


def _template_fields(template: str, where: str) -> frozenset[str]:
    """Names a str.format template uses; only plain names, so details can fill them."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if bad := {n for n in names if not n.isidentifier()}:
        raise ValueError(f"{where}: message fields must be plain names, got {sorted(bad)}")
    return frozenset(names)
