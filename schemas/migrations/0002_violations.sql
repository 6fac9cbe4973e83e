-- Every rule an event broke: one row per (event, rule, profile). The
-- violation_id is derived from those, so a redelivered event yields the same
-- id. Kept three years like the events they judge (F 9).
CREATE TABLE IF NOT EXISTS faceaudit.violations
(
    violation_id       String,
    event_id           Nullable(String),
    rule_id            LowCardinality(String),
    severity           LowCardinality(String),
    profile            LowCardinality(String),
    catalogue_version  LowCardinality(String),
    articles           Array(String),
    message            String,
    details            String,
    processor_id       LowCardinality(String),
    deployment_id      LowCardinality(String),
    device_id          String,
    region_code        LowCardinality(String),
    event_time         DateTime64(6, 'UTC'),
    detected_at        DateTime64(6, 'UTC'),
    topic              LowCardinality(String),
    partition          UInt32,
    offset             UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (rule_id, processor_id, event_time, violation_id)
TTL toDateTime(event_time) + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;
