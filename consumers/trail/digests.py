"""The validator's chain of signed digests over what it stored (docs/verify.md).

Every stored batch leaves a Merkle root per table (`consumers.trail.ledger`). At a
fixed interval, and at a clean stop, the chain writes a digest: the roots
since the last one, the row counts, the columns each table's rows were
hashed over, and the hash of the previous digest, signed with the auditor's
Ed25519 key. The digest goes to the store (`digests`, and `digest_batches` to
find what no digest covers yet) and to `faceaudit.digests.v1`, where a third
party can keep copies. After a crash the chain goes on from its last stored
digest, and its next digest also covers the batches stored since (`resume`):
nothing stored is left out, and nothing is covered twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from consumers.batch import now_utc
from consumers.trail.ledger import TableRoot
from schemas.signatures import Signer

DIGEST_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Digest:
    """One signed digest: its canonical body, and what it says."""

    chain: str
    seq: int
    body: bytes
    key_id: str
    signature: bytes
    created_at: datetime
    roots: tuple[TableRoot, ...]

    @property
    def digest_hash(self) -> str:
        """What the next digest names as its previous one."""
        return hashlib.sha256(self.body).hexdigest()

    def to_message(self) -> bytes:
        """The record produced to the digests topic: the body and its signature."""
        return json.dumps(
            {"body": self.body.decode(), "key_id": self.key_id, "signature": self.signature.hex()},
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a chain stands in the store: its last digest, and the batches none covers."""

    seq: int = 0  # the last digest's; 0 before the first
    digest_hash: str | None = None
    pending: tuple[TableRoot, ...] = ()


def digest_body(
    chain: str,
    seq: int,
    previous: str | None,
    created_at: datetime,
    roots: Sequence[TableRoot],
    columns: Mapping[str, Sequence[str]],
    key_id: str,
) -> bytes:
    """The canonical JSON a digest signs: keys sorted, no spaces."""
    counts: dict[str, int] = {}
    for root in roots:
        counts[root.table] = counts.get(root.table, 0) + root.rows
    body = {
        "version": DIGEST_VERSION,
        "chain": chain,
        "seq": seq,
        "previous": previous,
        "created_at": created_at.isoformat(),
        "key_id": key_id,
        "batches": [root.to_json() for root in roots],
        "rows": counts,
        "columns": {table: list(columns[table]) for table in sorted(counts)},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class DigestChain:
    """Collects the roots of stored batches and writes a signed digest when one is due."""

    chain: str
    signer: Signer
    columns: Mapping[str, Sequence[str]]
    write: Callable[[Digest], None]
    interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _seq: int = 0
    _previous: str | None = None
    _pending: list[TableRoot] = field(default_factory=list)
    _last_written: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._last_written = self.clock()

    def resume(self, state: ChainState) -> None:
        """Go on from the store: after its last digest, covering what none covers yet."""
        self._seq, self._previous = state.seq, state.digest_hash
        self._pending = [*state.pending, *self._pending]

    def stored(self, roots: Sequence[TableRoot]) -> None:
        """Roots of a stored batch; a retried write's roots, given again, count once."""
        known = {(root.batch, root.table) for root in self._pending}
        self._pending.extend(root for root in roots if (root.batch, root.table) not in known)

    def due(self) -> bool:
        return bool(self._pending) and self.clock() - self._last_written >= self.interval

    def flush(self) -> Digest | None:
        """Write a digest of every root not yet covered (None when there is none)."""
        if not self._pending:
            return None
        seq, created_at = self._seq + 1, now_utc()
        roots = tuple(self._pending)
        body = digest_body(
            self.chain, seq, self._previous, created_at, roots, self.columns, self.signer.key_id
        )
        digest = Digest(
            self.chain,
            seq,
            body,
            self.signer.key_id,
            self.signer.sign(body).value,
            created_at,
            roots,
        )
        self.write(digest)  # raises on failure: the roots stay pending
        self._seq, self._previous, self._pending = seq, digest.digest_hash, []
        self._last_written = self.clock()
        return digest


def parse_body(body: bytes) -> dict[str, Any]:
    """A digest body as data; ValueError if it is not one."""
    parsed = json.loads(body)
    if not isinstance(parsed, dict) or parsed.get("version") != DIGEST_VERSION:
        raise ValueError("not a digest body of version 1")
    return parsed
