"""Pseudonymous subject references.

The audit log must never become a biometric database (event-contract.md): no
face, template or name may appear in it.  A subject is therefore named by a
keyed hash of the processor's own internal id.  Keying with a secret held by
the processor (HMAC rather than a plain hash) matters because internal ids
(member numbers, employee ids) are guessable: without the key nobody reading
the audit log can enumerate candidate ids to re-identify a person, while the
processor can still answer a regulator's or a subject's request by recomputing
the reference.  The same inputs always give the same reference, so consent
records and events about one person join up.
"""

import hashlib
import hmac


def subject_ref(processor_key: bytes, internal_id: str) -> str:
    """Return the hex HMAC-SHA256 of ``internal_id`` under the processor's key.

    An empty key is refused: it would make the reference an unkeyed hash that
    anyone can recompute from a guessed id.
    """
    if not processor_key:
        raise ValueError("subject_ref needs a non-empty processor key")
    return hmac.new(processor_key, internal_id.encode("utf-8"), hashlib.sha256).hexdigest()
