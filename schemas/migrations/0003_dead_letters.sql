-- Messages that could not be decoded or judged, with their original bytes,
-- so nothing read from Kafka is ever dropped. Kept three years.
CREATE TABLE IF NOT EXISTS faceaudit.dead_letters
(
    topic        LowCardinality(String),
    partition    UInt32,
    offset       UInt64,
    message_key  Nullable(String),
    raw          String,
    headers      Map(String, String),
    reason       LowCardinality(String),
    detail       String,
    received_at  DateTime64(6, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, partition, offset)
TTL toDateTime(received_at) + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;
