-- One row per validator start: what it judged with, and whether it checked
-- signatures, so a reader of the store can tell findings judged under
-- --trust none (registry records and checkpoints counted unverified).
CREATE TABLE IF NOT EXISTS faceaudit.validator_runs
(
    started_at         DateTime64(6, 'UTC'),
    trust              LowCardinality(String),
    profile            LowCardinality(String),
    catalogue_version  LowCardinality(String),
    consumer_group     String,
    workers            UInt16
)
ENGINE = MergeTree
ORDER BY started_at
TTL toDateTime(started_at) + INTERVAL 3 YEAR;
