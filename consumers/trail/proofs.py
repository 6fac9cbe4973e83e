"""An event's inclusion proof up to a signed digest, and its check without the store.

The proof holds the event's row hash, its place among its batch's sorted leaves,
the audit path of RFC 6962 (section 2.1.1) from it to the batch's root, and the
signed digest that lists that root. Whoever holds the auditor's public key can
check it: the path gives the root back, the digest lists it for the batch, and
the signature over the digest's body verifies.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import faceaudit_native
from clickhouse_connect.driver.client import Client

from consumers.keyring import KeyRing
from consumers.trail.digest_store import DIGEST_BATCHES_TABLE, DIGESTS_TABLE
from consumers.trail.digests import parse_body
from consumers.trail.ledger import LEDGER_ROWS
from core.errors import FaceauditError
from schemas.ddl import DATABASE


def event_proof(client: Client, event_id: str) -> dict[str, Any]:
    """The proof that the event `event_id` is stored as a signed digest covers it."""
    rows = client.query(
        f"SELECT topic, partition, offset FROM {DATABASE}.events WHERE event_id = {{e:String}}",
        parameters={"e": event_id},
    ).result_rows
    if not rows:
        raise FaceauditError(f"no event {event_id} in the store")
    key = "/".join(str(part) for part in rows[0])
    listed = client.query(
        f"SELECT batch, row_hash FROM {LEDGER_ROWS} "
        "WHERE `table` = 'events' AND row_key = {k:String} LIMIT 1",
        parameters={"k": key},
        column_formats={"row_hash": "bytes"},
    ).result_rows
    if not listed:
        raise FaceauditError(f"the ledger lists no row for event {event_id} ({key})")
    batch, row_hash = listed[0]
    leaves = sorted(
        leaf
        for (leaf,) in client.query(
            f"SELECT row_hash FROM {LEDGER_ROWS} WHERE `table` = 'events' AND batch = {{b:String}}",
            parameters={"b": batch},
            column_formats={"row_hash": "bytes"},
        ).result_rows
    )
    digest = _covering_digest(client, batch)
    index = leaves.index(row_hash)
    return {
        "event_id": event_id,
        "row_key": key,
        "batch": batch,
        "row_hash": row_hash.hex(),
        "leaf_index": index,
        "tree_size": len(leaves),
        "path": [node.hex() for node in audit_path(index, leaves)],
        "digest": digest,
    }


def _covering_digest(client: Client, batch: str) -> dict[str, Any]:
    covering = client.query(
        f"SELECT d.chain, d.seq, d.body, d.key_id, d.signature FROM {DATABASE}.{DIGESTS_TABLE} "
        f"AS d INNER JOIN {DATABASE}.{DIGEST_BATCHES_TABLE} AS b "
        "ON d.chain = b.chain AND d.seq = b.seq "
        "WHERE b.batch = {b:String} AND b.`table` = 'events' LIMIT 1",
        parameters={"b": batch},
    ).result_rows
    if not covering:
        raise FaceauditError(f"no digest covers batch {batch} yet: it was stored since the last")
    chain, seq, body, key_id, signature = covering[0]
    return {"chain": chain, "seq": seq, "body": body, "key_id": key_id, "signature": signature}


def check_proof(proof: dict[str, Any], keyring: KeyRing) -> str | None:
    """None if the proof holds under the trusted keys; else what is wrong."""
    try:
        digest = proof["digest"]
        body = digest["body"].encode()
        parsed = parse_body(body)
        leaf = bytes.fromhex(proof["row_hash"])
        path = [bytes.fromhex(node) for node in proof["path"]]
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        signature = bytes.fromhex(digest["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"not a proof: {exc}"
    problem = keyring.digest_problem(
        digest["key_id"], datetime.fromisoformat(parsed["created_at"]), body, signature
    )
    if problem is not None:
        return f"the digest is not signed by a trusted auditor key: {problem}"
    root = root_from_path(index, size, leaf, path)
    signed = [
        entry["root"]
        for entry in parsed["batches"]
        if (entry["batch"], entry["table"]) == (proof.get("batch"), "events")
    ]
    if root is None or root.hex() not in signed:
        return "the path does not lead to the root the digest signed for the event's batch"
    return None


def audit_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962's PATH(index, leaves): the sibling hashes from the leaf up to the root."""
    if len(leaves) <= 1:
        return []
    split = _split(len(leaves))
    if index < split:
        return [*audit_path(index, leaves[:split]), _tree_hash(leaves[split:])]
    return [*audit_path(index - split, leaves[split:]), _tree_hash(leaves[:split])]


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root an audit path leads to from `leaf` at `index` of `size` (None if it cannot)."""
    if not 0 <= index < size:
        return None
    return _climb(index, size, _leaf_hash(leaf), list(reversed(path)))


def _climb(index: int, size: int, node: bytes, path: list[bytes]) -> bytes | None:
    if size == 1:
        return node if not path else None
    if not path:
        return None
    split = _split(size)
    sibling, rest = path[0], path[1:]
    if index < split:
        below = _climb(index, split, node, rest)
        return None if below is None else _node_hash(below, sibling)
    below = _climb(index - split, size - split, node, rest)
    return None if below is None else _node_hash(sibling, below)


def _tree_hash(leaves: list[bytes]) -> bytes:
    """A subtree's hash: the native tree hash, over the leaves in the order given."""
    return faceaudit_native.merkle_root(b"".join(leaves))


def _split(size: int) -> int:
    split = 1
    while split * 2 < size:
        split *= 2
    return split


def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()
