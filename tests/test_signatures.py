"""Signed registry records: the key ring's verdicts, the JSON form, and `faceaudit check`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from samples import sample
from signing import json_lines, key_record, signer
from test_check import Result, capture, run

from consumers.keyring import KeyRing
from producers.signer import signed_json
from schemas import codec, signatures
from schemas.signatures import KEY_ID_HEADER, SIGNATURE_HEADER, Signature

T = datetime(2026, 1, 1, tzinfo=UTC)


def ring(*records: dict[str, Any]) -> KeyRing:
    keys = KeyRing()
    for record in records:
        keys.add(record)
    return keys


def verdict(keys: KeyRing, kind: str, record: dict[str, Any], by: str = "p-1") -> Any:
    message = codec.encode(kind, record)
    return keys.refusal(kind, record, message, signer(by).sign(message))


# -- the key ring ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["consent", "deployment", "deletion"])
def test_a_record_signed_by_its_processor_counts(kind: str) -> None:
    assert verdict(ring(key_record("p-1")), kind, sample(kind)) is None


def test_a_record_without_signature_is_unsigned() -> None:
    record = sample("consent")
    refused = ring(key_record("p-1")).refusal(
        "consent", record, codec.encode("consent", record), None
    )
    assert refused is not None and refused.reason == "unsigned" and refused.key_id is None


@pytest.mark.parametrize(
    ("keys", "by", "record", "problem"),
    [
        pytest.param([], "p-1", {}, "key processor-test-p-1 is not registered", id="unknown key"),
        pytest.param(
            [key_record("p-2")],
            "p-2",
            {},
            "key processor-test-p-2 is not a processor key of p-1",
            id="another processor's key",
        ),
        pytest.param(
            [key_record("p-1", owner="device", device_id="dev-1")],
            "p-1",
            {},
            "is not a processor key of p-1",
            id="a device key",
        ),
        pytest.param(
            [key_record("p-1", valid_from=T + timedelta(days=1))],
            "p-1",
            {},
            "counts from 2026-01-02T00:00:00Z, after 2026-01-01T00:00:00Z",
            id="granted before the key counts",
        ),
        pytest.param(
            [key_record("p-1", revoked_at=T)],
            "p-1",
            {},
            "was revoked at 2026-01-01T00:00:00Z",
            id="granted when revoked",
        ),
        pytest.param(
            [key_record("p-1", revoked_at=T + timedelta(days=30))],
            "p-1",
            {"withdrawn_at": T + timedelta(days=31)},
            "was revoked at 2026-01-31T00:00:00Z, by 2026-02-01T00:00:00Z",
            id="a withdrawal signed after revocation",
        ),
        pytest.param(
            [key_record("p-1", public_key=bytes(31))],
            "p-1",
            {},
            "key processor-test-p-1 is not an Ed25519 public key (31 bytes, not 32)",
            id="a key of the wrong length",
        ),
    ],
)
def test_a_signature_that_does_not_count_is_bad(
    keys: list[dict[str, Any]], by: str, record: dict[str, Any], problem: str
) -> None:
    refused = verdict(ring(*keys), "consent", sample("consent", **record), by=by)
    assert refused is not None and refused.reason == "bad_signature"
    assert problem in refused.detail


def test_a_deployment_needs_a_key_not_revoked_whatever_its_dates() -> None:
    revoked = ring(key_record("p-1", revoked_at=datetime(2030, 1, 1, tzinfo=UTC)))
    refused = verdict(revoked, "deployment", sample("deployment"))
    assert refused is not None and "was revoked" in refused.detail


def test_records_judged_together_get_the_verdicts_they_get_alone() -> None:
    keys = ring(key_record("p-1"), key_record("p-2"))
    records = [sample("consent", consent_id=f"c-{n}") for n in range(6)]
    signed = []
    for n, record in enumerate(records):
        message = codec.encode("consent", record)
        signature = None if n == 4 else signer("p-1" if n != 2 else "p-2").sign(message)
        signed.append(("consent", record, message + (b"x" if n == 1 else b""), signature))
    alone = [keys.refusal(*item) for item in signed]
    assert keys.refusals(signed) == alone
    assert [r is None for r in alone] == [True, False, False, True, False, True]


def test_a_record_changed_after_signing_does_not_verify() -> None:
    record = sample("consent")
    signature = signer("p-1").sign(codec.encode("consent", record))
    changed = record | {"purposes": ["payment", "access_control", "marketing"]}
    refused = ring(key_record("p-1")).refusal(
        "consent", changed, codec.encode("consent", changed), signature
    )
    assert refused is not None and refused.detail.startswith("the signature does not verify")


def test_a_revocation_is_never_undone_or_moved_later() -> None:
    early = T + timedelta(days=10)
    keys = ring(
        key_record("p-1", revoked_at=early),
        key_record("p-1"),  # un-revoked
        key_record("p-1", revoked_at=early + timedelta(days=5)),  # moved later
    )
    consent = sample("consent", granted_at=early + timedelta(days=1))
    refused = verdict(keys, "consent", consent)
    assert refused is not None and "was revoked at 2026-01-11" in refused.detail
    brought_forward = ring(
        key_record("p-1", revoked_at=early + timedelta(days=5)), key_record("p-1", revoked_at=early)
    )
    assert verdict(brought_forward, "consent", consent) is not None


def test_a_key_id_keeps_its_first_public_key() -> None:
    impostor = key_record("p-1", public_key=bytes(32))
    keys = ring(key_record("p-1"), impostor)
    assert verdict(keys, "consent", sample("consent")) is None


# -- where signatures travel ----------------------------------------------------------


def test_headers_carry_the_key_id_and_the_raw_signature() -> None:
    signature = Signature("k-1", bytes(range(64)))
    assert signatures.from_headers(signature.headers()) == signature
    assert signatures.from_headers([("other", b"x")]) is None
    assert signatures.from_headers([(KEY_ID_HEADER, b"k-1")]) == (
        f"header {SIGNATURE_HEADER} is missing"
    )
    assert signatures.from_headers([(KEY_ID_HEADER, b"\xff"), (SIGNATURE_HEADER, b"s")]) == (
        f"header {KEY_ID_HEADER} is not UTF-8"
    )


def test_the_json_form_carries_key_id_and_base64_signature_beside_type() -> None:
    record = sample("consent")
    obj = signed_json("consent", record, signer("p-1"))
    kind, parsed, signature = codec.from_signed_json(obj)
    assert (kind, parsed) == ("consent", record)
    assert signature == signer("p-1").sign(codec.encode("consent", record))
    assert codec.from_json(obj) == ("consent", record)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"signature": "!!"}, "consent.signature: '!!' is not standard base64"),
        (
            {"signature": base64.b64encode(b"short").decode()},
            "5 bytes, an Ed25519 signature has 64",
        ),
        ({"key_id": None}, "consent.key_id: a signed record needs its key's id"),
        ({"signature": None}, "consent.signature: expected a base64 string"),
    ],
)
def test_a_malformed_json_signature_is_refused_naming_the_field(
    changes: dict[str, Any], problem: str
) -> None:
    obj = signed_json("consent", sample("consent"), signer("p-1")) | changes
    with pytest.raises(codec.EncodeError) as raised:
        codec.from_signed_json(obj)
    assert problem in str(raised.value)


def test_kinds_that_are_not_signed_refuse_signature_fields() -> None:
    obj = codec.to_json("capture", sample("capture")) | {"key_id": "k", "signature": ""}
    with pytest.raises(codec.EncodeError, match="unknown field"):
        codec.from_json(obj)


# -- faceaudit check ------------------------------------------------------------------


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def unsigned_line(kind: str, record: dict[str, Any]) -> str:
    return json.dumps(codec.to_json(kind, record))


def refusals(result: Result) -> list[dict[str, Any]]:
    return [v["details"] for v in result.violations if v["rule_id"] == "REG-UNSIGNED-RECORD"]


def test_check_refuses_an_unsigned_consent_and_judges_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        *json_lines([("deployment", sample("deployment"))]),
        unsigned_line("consent", sample("consent")),
        unsigned_line("capture", capture(0)),
    ]
    result = run(capsys, write(tmp_path / "in.jsonl", lines))
    assert result.code == 1 and result.error_lines == []
    [refused] = refusals(result)
    assert refused | {"problem": ""} == {
        "kind": "consent",
        "record_id": "c-1",
        "processor_id": "p-1",
        "reason": "unsigned",
        "problem": "",
        "key_id": None,
    }
    assert (capture(0)["event_id"], "FR-CONSENT-MISSING") in result.fired


def test_check_refuses_a_consent_forged_with_another_processors_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = signed_json("consent", sample("consent"), signer("p-2"))
    lines = [
        *json_lines([("deployment", sample("deployment")), ("capture", capture(0))]),
        json.dumps(forged),
        json.dumps(codec.to_json("key", key_record("p-2"))),
    ]
    result = run(capsys, write(tmp_path / "in.jsonl", lines))
    [refused] = refusals(result)
    assert refused["reason"] == "bad_signature" and refused["key_id"] == "processor-test-p-2"
    assert "is not a processor key of p-1" in refused["problem"]
    assert (capture(0)["event_id"], "FR-CONSENT-MISSING") in result.fired


def test_check_keys_from_any_input_count_for_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = json_lines([("deployment", sample("deployment")), ("consent", sample("consent"))])
    records = write(tmp_path / "records.jsonl", [*signed[:2], unsigned_line("capture", capture(0))])
    keys = write(tmp_path / "keys.jsonl", signed[2:])
    assert run(capsys, records, keys).code == 0


def test_check_under_trust_none_applies_unsigned_records_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        unsigned_line("deployment", sample("deployment")),
        unsigned_line("consent", sample("consent")),
        unsigned_line("capture", capture(0)),
    ]
    path = write(tmp_path / "in.jsonl", lines)
    assert refusals(run(capsys, path)) != []
    trusting = run(capsys, "--trust", "none", path)
    assert (trusting.code, trusting.out) == (0, "")
    assert "trust none: registry signatures NOT checked" in trusting.err


def test_check_refuses_unsigned_deletions_so_the_withdrawal_stays_overdue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    withdrawn = sample("consent", withdrawn_at=datetime(2026, 2, 1, tzinfo=UTC))
    deletion = sample("deletion", deleted_at=datetime(2026, 2, 2, tzinfo=UTC))
    later = capture(0, event_time=datetime(2026, 4, 1, tzinfo=UTC), consent_id=None)
    signed = json_lines([("deployment", sample("deployment")), ("consent", withdrawn)])
    lines = [*signed, unsigned_line("deletion", deletion), unsigned_line("capture", later)]
    result = run(capsys, write(tmp_path / "in.jsonl", lines))
    assert [r["kind"] for r in refusals(result)] == ["deletion"]
    assert "FR-DELETION-OVERDUE" in {v["rule_id"] for v in result.violations}
    signed_deletion = json_lines([("deletion", deletion)], keys=False)
    lines = [*signed, *signed_deletion, unsigned_line("capture", later)]
    result = run(capsys, write(tmp_path / "signed.jsonl", lines))
    assert "FR-DELETION-OVERDUE" not in {v["rule_id"] for v in result.violations}


def test_a_checkpoint_counts_signed_by_its_processor_or_its_own_device() -> None:
    checkpoint = sample("checkpoint")
    own_device = key_record("p-1", owner="device", device_id="dev-1")
    other_device = key_record("p-1", owner="device", device_id="dev-2")
    assert verdict(ring(key_record("p-1")), "checkpoint", checkpoint) is None
    assert verdict(ring(own_device), "checkpoint", checkpoint) is None
    refused = verdict(ring(other_device), "checkpoint", checkpoint)
    assert refused is not None
    assert "is not a processor key of p-1 or a device key of dev-1" in refused.detail
    late = key_record("p-1", valid_from=checkpoint["signed_at"] + timedelta(seconds=1))
    assert verdict(ring(late), "checkpoint", checkpoint) is not None, "signed_at counts"
