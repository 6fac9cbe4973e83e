"""Registry replacement semantics and rules.md's "valid consent" definition."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from arrow_events import event_batch
from hypothesis import given
from hypothesis import strategies as st
from samples import sample

from consumers.registry import (
    BUNDLED,
    EXPIRED,
    NO_CONSENT_ID,
    NOT_YET_GRANTED,
    PROCESSOR_DIFFERS,
    PURPOSE_NOT_COVERED,
    SUBJECT_DIFFERS,
    UNKNOWN_CONSENT,
    WITHDRAWN,
    Registry,
)
from consumers.rules.columns import BatchContext, problem_list

EVENT = sample("capture")
T = EVENT["event_time"]
US = timedelta(microseconds=1)


def consent_problems(registry: Registry, kind: str, event: dict[str, Any]) -> list[str]:
    """Why the event's consent is not valid for it, as the rules work it out; empty if valid."""
    [table] = event_batch(kind, [event]).values()
    [batch] = table.to_batches()
    return problem_list(BatchContext(batch, registry).problems[0].as_py())


def _with_consent(**overrides: Any) -> Registry:
    registry = Registry()
    registry.apply("consent", sample("consent", **overrides))
    return registry


def test_lookups() -> None:
    registry = Registry()
    deployment, consent = sample("deployment"), sample("consent")
    registry.apply("deployment", deployment)
    registry.apply("consent", consent)
    assert registry.deployment("d-1") is deployment
    assert registry.consent("c-1") is consent
    assert registry.deployment("d-2") is None
    assert registry.consent("c-2") is None
    assert registry.consent(None) is None
    assert registry.deployment(None) is None


def test_later_record_replaces_the_earlier_whole() -> None:
    registry = Registry()
    registry.apply("consent", sample("consent", notice_version="n0"))
    later = sample("consent", purposes=["access_control"])
    assert registry.apply("consent", later) == []
    assert registry.consent("c-1") == later
    registry.apply("deployment", sample("deployment", notice_complete=False))
    registry.apply("deployment", sample("deployment", declared_retention_days=7))
    assert registry.deployment("d-1")["notice_complete"] is True
    assert registry.deployment("d-1")["declared_retention_days"] == 7


def test_apply_rejects_other_kinds() -> None:
    with pytest.raises(ValueError, match="not 'capture'"):
        Registry().apply("capture", EVENT)


def test_has_filing_follows_replacements() -> None:
    registry = Registry()
    assert not registry.has_filing("p-1")
    registry.apply("deployment", sample("deployment"))
    assert registry.has_filing("p-1")
    registry.apply("deployment", sample("deployment", processor_id="p-2"))
    assert not registry.has_filing("p-1") and registry.has_filing("p-2")
    registry.apply("deployment", sample("deployment", processor_id="p-2", filing_id=None))
    assert not registry.has_filing("p-2")


def test_sample_consent_is_valid_for_sample_events() -> None:
    registry = _with_consent()
    for kind in ("capture", "match"):
        assert consent_problems(registry, kind, sample(kind)) == []


@pytest.mark.parametrize(
    ("consent", "event", "problems"),
    [
        ({"granted_at": T}, {}, []),
        ({"granted_at": T + US}, {}, [NOT_YET_GRANTED]),
        ({"expires_at": T}, {}, [EXPIRED]),
        ({"expires_at": T + US}, {}, []),
        ({"withdrawn_at": T}, {}, [WITHDRAWN]),
        ({"withdrawn_at": T + US}, {}, []),
        ({"processor_id": "p-2"}, {}, [PROCESSOR_DIFFERS]),
        ({}, {"subject_ref": "s-2"}, [SUBJECT_DIFFERS]),
        ({}, {"subject_ref": None}, [SUBJECT_DIFFERS]),
        ({"consent_type": "bundled"}, {}, [BUNDLED]),
        ({"consent_type": "written"}, {}, []),
        ({}, {"purpose": "marketing"}, [PURPOSE_NOT_COVERED]),
        ({}, {"purpose": "access_control"}, []),
        ({}, {"consent_id": None}, [NO_CONSENT_ID]),
        ({}, {"consent_id": "c-2"}, [UNKNOWN_CONSENT]),
        (
            {"consent_type": "bundled", "expires_at": T - US, "withdrawn_at": T},
            {"purpose": "marketing"},
            [BUNDLED, PURPOSE_NOT_COVERED, EXPIRED, WITHDRAWN],
        ),
    ],
    ids=[
        "granted-exactly-at",
        "granted-just-after",
        "expires-exactly-at",
        "expires-just-after",
        "withdrawn-exactly-at",
        "withdrawn-just-after",
        "wrong-processor",
        "wrong-subject",
        "no-subject",
        "bundled",
        "written",
        "purpose-not-covered",
        "other-covered-purpose",
        "no-consent-id",
        "unknown-consent",
        "several",
    ],
)
def test_valid_consent(consent: dict, event: dict, problems: list[str]) -> None:
    registry = _with_consent(**consent)
    assert consent_problems(registry, "capture", sample("capture", **event)) == problems


offsets = st.integers(min_value=-3, max_value=3).map(lambda n: T + n * US)


@given(granted=offsets, expires=st.none() | offsets, withdrawn=st.none() | offsets)
def test_validity_window_is_granted_inclusive_expiry_and_withdrawal_exclusive(
    granted: Any, expires: Any, withdrawn: Any
) -> None:
    registry = _with_consent(granted_at=granted, expires_at=expires, withdrawn_at=withdrawn)
    valid = (
        granted <= T and (expires is None or expires > T) and (withdrawn is None or withdrawn > T)
    )
    assert (consent_problems(registry, "capture", EVENT) == []) == valid


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("known", "later", "refused", "applied"),
    [
        ({"granted_at": T}, {"granted_at": T - US}, [("granted_at", T, T - US)], {"granted_at": T}),
        ({"granted_at": T}, {"granted_at": T + DAY}, [], {"granted_at": T + DAY}),
        (
            {"withdrawn_at": T},
            {"withdrawn_at": None},
            [("withdrawn_at", T, None)],
            {"withdrawn_at": T},
        ),
        (
            {"withdrawn_at": T},
            {"withdrawn_at": T + US},
            [("withdrawn_at", T, T + US)],
            {"withdrawn_at": T},
        ),
        ({"withdrawn_at": T}, {"withdrawn_at": T - DAY}, [], {"withdrawn_at": T - DAY}),
        ({"withdrawn_at": None}, {"withdrawn_at": T}, [], {"withdrawn_at": T}),
        (
            {"granted_at": T - DAY, "withdrawn_at": T},
            {"granted_at": T - 2 * DAY, "withdrawn_at": None, "purposes": ["access_control"]},
            [("granted_at", T - DAY, T - 2 * DAY), ("withdrawn_at", T, None)],
            {"granted_at": T - DAY, "withdrawn_at": T, "purposes": ["access_control"]},
        ),
    ],
    ids=[
        "grant-earlier",
        "grant-later",
        "withdrawal-dropped",
        "withdrawal-later",
        "withdrawal-earlier",
        "withdrawn-now",
        "both-and-more",
    ],
)
def test_a_consent_s_history_is_never_rewritten(
    known: dict, later: dict, refused: list[tuple], applied: dict
) -> None:
    registry = Registry()
    assert registry.apply("consent", sample("consent", **known)) == []
    asked = registry.apply("consent", sample("consent", **later))
    assert [tuple(rewrite) for rewrite in asked] == refused
    assert registry.consent("c-1") == sample("consent", **{**later, **applied})
