-- The ledger of what the validator stored, and its signed digests (docs/verify.md).
-- stored_rows: one row per stored row of events, violations and dead letters,
-- with the batch that stored it and the row's hash; written before the batch's
-- data, deduplicated as the batch is.
CREATE TABLE IF NOT EXISTS faceaudit.stored_rows
(
    chain     LowCardinality(String),
    batch     String,
    `table`   LowCardinality(String),
    row_key   String,
    row_hash  FixedString(32)
)
ENGINE = MergeTree
ORDER BY (chain, batch, `table`, row_key)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per digest: its canonical body, exactly as signed, and the signature.
CREATE TABLE IF NOT EXISTS faceaudit.digests
(
    chain        LowCardinality(String),
    seq          UInt64,
    digest_hash  String,
    created_at   DateTime64(6, 'UTC'),
    body         String,
    key_id       String,
    signature    String
)
ENGINE = MergeTree
ORDER BY (chain, seq)
SETTINGS non_replicated_deduplication_window = 10000;

-- The batches each digest covers, to find those no digest covers yet (after a
-- crash); the signed body is what verification trusts.
CREATE TABLE IF NOT EXISTS faceaudit.digest_batches
(
    chain  LowCardinality(String),
    seq    UInt64,
    batch  String,
    `table` LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (chain, batch, `table`)
SETTINGS non_replicated_deduplication_window = 10000;
