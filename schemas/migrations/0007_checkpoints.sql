-- Every checkpoint read from the events topic, with the key that signed it
-- and whether its signature counted (a checkpoint that does not count is
-- AUDIT-CHECKPOINT-BAD and is not used), at the position it was read from.
-- One row per message read: a checkpoint sent twice is two rows.
CREATE TABLE IF NOT EXISTS faceaudit.checkpoints
(
    checkpoint_id  String,
    processor_id   LowCardinality(String),
    device_id      String,
    device_seq     UInt64,
    head_hash      String,
    signed_at      DateTime64(6, 'UTC'),
    key_id         Nullable(String),
    valid          Bool,
    problem        String,
    topic          LowCardinality(String),
    partition      UInt32,
    offset         UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset)
TTL toDateTime(signed_at) + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;
