"""Digests in the store: write one, and find where a chain stands (`consumers.trail.digests`)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from consumers.trail.digests import ChainState, Digest
from consumers.trail.ledger import LEDGER_ROWS, TableRoot
from consumers.trail.row_hashes import merkle_root
from schemas.ddl import DATABASE

DIGESTS_TABLE = "digests"
DIGEST_BATCHES_TABLE = "digest_batches"


def write_digest(client: Client, digest: Digest) -> None:
    """Store a digest and the batches it covers, each insert deduplicated by chain and seq."""
    token = f"{digest.chain}:{digest.seq}"
    client.insert(
        DIGEST_BATCHES_TABLE,
        [[digest.chain, digest.seq, root.batch, root.table] for root in digest.roots],
        column_names=["chain", "seq", "batch", "table"],
        database=DATABASE,
        settings={"insert_deduplication_token": f"{DIGEST_BATCHES_TABLE}:{token}"},
    )
    client.insert(
        DIGESTS_TABLE,
        [
            [
                digest.chain,
                digest.seq,
                digest.digest_hash,
                digest.created_at,
                digest.body.decode(),
                digest.key_id,
                digest.signature.hex(),
            ]
        ],
        column_names=[
            "chain",
            "seq",
            "digest_hash",
            "created_at",
            "body",
            "key_id",
            "signature",
        ],
        database=DATABASE,
        settings={"insert_deduplication_token": f"{DIGESTS_TABLE}:{token}"},
    )


def chain_state(client: Client, chain: str) -> ChainState:
    """The chain's last digest in the store, and the batches it stored that none covers.

    A digest's batches are written before the digest itself: batches listed
    without their digest (a crash between the two inserts) count as not covered.
    """
    params = {"chain": chain}
    last = client.query(
        f"SELECT seq, digest_hash FROM {DATABASE}.{DIGESTS_TABLE} "
        "WHERE chain = {chain:String} ORDER BY seq DESC LIMIT 1",
        parameters=params,
    ).result_rows
    seq, digest_hash = last[0] if last else (0, None)
    rows = client.query(
        f"SELECT batch, `table`, groupArray(row_hash) FROM {LEDGER_ROWS} "
        "WHERE chain = {chain:String} AND (batch, `table`) NOT IN ("
        f"SELECT batch, `table` FROM {DATABASE}.{DIGEST_BATCHES_TABLE} "
        "WHERE chain = {chain:String} AND seq <= {seq:UInt64}) "
        "GROUP BY batch, `table` ORDER BY batch, `table`",
        parameters={**params, "seq": seq},
        column_formats={"groupArray(row_hash)": {"FixedString": "bytes"}},
    ).result_rows
    pending = tuple(
        TableRoot(batch, table, len(hashes), merkle_root(hashes)) for batch, table, hashes in rows
    )
    return ChainState(seq, digest_hash, pending)
