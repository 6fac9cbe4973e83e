-- The ledger as one row per stored batch and table, its rows' keys and hashes
-- as arrays (docs/verify.md): a batch's ledger is one small insert, not a row
-- per stored row. Ledgers written before stay in stored_rows, which is read
-- with this table and no longer written.
CREATE TABLE IF NOT EXISTS faceaudit.batch_ledgers
(
    chain       LowCardinality(String),
    batch       String,
    `table`     LowCardinality(String),
    row_keys    Array(String),
    row_hashes  Array(FixedString(32))
)
ENGINE = MergeTree
ORDER BY (chain, batch, `table`)
SETTINGS non_replicated_deduplication_window = 10000;
