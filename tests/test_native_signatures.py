"""The native Ed25519 check (`faceaudit_native.verify_ed25519`) against `cryptography`'s.

The key ring verifies every signed record with the native call; `cryptography`
(OpenSSL), which signs them, is the reference: for every signature, good,
corrupted, under another key, of another length or with a non-canonical `s`,
both must give the same verdict.
"""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from faceaudit_native import verify_ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

# The order of the Ed25519 group: s + L verifies in the equation, but is not canonical.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32) for n in range(1, 4)]


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def reference(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def non_canonical(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "little") + GROUP_ORDER
    return signature[:32] + s.to_bytes(32, "little")


def flipped(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


MUTATIONS = {
    "as signed": lambda pub, msg, sig, rng: (pub, msg, sig),
    "signature bit flipped": lambda pub, msg, sig, rng: (pub, msg, flipped(sig, rng)),
    "message bit flipped": lambda pub, msg, sig, rng: (pub, flipped(msg, rng), sig),
    "public key bit flipped": lambda pub, msg, sig, rng: (flipped(pub, rng), msg, sig),
    "another key": lambda pub, msg, sig, rng: (raw(KEYS[2]), msg, sig),
    "non-canonical s": lambda pub, msg, sig, rng: (pub, msg, non_canonical(sig)),
    "signature cut short": lambda pub, msg, sig, rng: (pub, msg, sig[:63]),
    "key cut short": lambda pub, msg, sig, rng: (pub[:31], msg, sig),
    "empty message": lambda pub, msg, sig, rng: (pub, b"", sig),
}


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=300),
    seed=st.integers(0, 2**32),
)
def test_every_verdict_is_the_one_cryptography_gives(messages: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    cases = []
    for message in messages:
        key = rng.choice(KEYS[:2])
        mutation = rng.choice(list(MUTATIONS.values()))
        cases.append(mutation(raw(key), message, key.sign(message), rng))
    assert verify_ed25519(cases) == [reference(*case) for case in cases]


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_kind_of_signature_gets_the_reference_verdict(mutation: str) -> None:
    rng = random.Random(mutation)
    message = b"a consent record"
    case = MUTATIONS[mutation](raw(KEYS[0]), message, KEYS[0].sign(message), rng)
    expected = mutation == "as signed"
    assert reference(*case) is expected
    assert verify_ed25519([case]) == [expected]


def test_a_large_batch_keeps_each_verdict_in_its_place() -> None:
    # Enough signatures to be split over threads; the bad ones scattered.
    messages = [f"record {n}".encode() for n in range(1000)]
    cases = [(raw(KEYS[n % 2]), m, KEYS[n % 2].sign(m)) for n, m in enumerate(messages)]
    bad = {3, 499, 500, 501, 998}
    cases = [(pub, msg + b"!" if n in bad else msg, sig) for n, (pub, msg, sig) in enumerate(cases)]
    assert verify_ed25519(cases) == [n not in bad for n in range(1000)]
    assert verify_ed25519([]) == []
