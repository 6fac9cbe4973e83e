-- Per-minute statistics, kept by materialized views so the numbers come from
-- ClickHouse itself. The target tables carry their own deduplication window:
-- without it, a retried batch that the source table drops as a duplicate is
-- still counted twice here.
CREATE TABLE IF NOT EXISTS faceaudit.event_stats_minute
(
    minute         DateTime('UTC'),
    region_code    LowCardinality(String),
    processor_id   LowCardinality(String),
    deployment_id  LowCardinality(String),
    purpose        LowCardinality(String),
    kind           LowCardinality(String),
    events         UInt64
)
ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, region_code, processor_id, deployment_id, purpose, kind)
TTL minute + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS faceaudit.event_stats_minute_mv
TO faceaudit.event_stats_minute AS
SELECT
    toStartOfMinute(event_time) AS minute,
    region_code,
    processor_id,
    deployment_id,
    purpose,
    kind,
    count() AS events
FROM faceaudit.events
GROUP BY minute, region_code, processor_id, deployment_id, purpose, kind;

CREATE TABLE IF NOT EXISTS faceaudit.violation_stats_minute
(
    minute         DateTime('UTC'),
    region_code    LowCardinality(String),
    processor_id   LowCardinality(String),
    deployment_id  LowCardinality(String),
    rule_id        LowCardinality(String),
    severity       LowCardinality(String),
    profile        LowCardinality(String),
    violations     UInt64
)
ENGINE = SummingMergeTree(violations)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, region_code, processor_id, deployment_id, rule_id, severity, profile)
TTL minute + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS faceaudit.violation_stats_minute_mv
TO faceaudit.violation_stats_minute AS
SELECT
    toStartOfMinute(event_time) AS minute,
    region_code,
    processor_id,
    deployment_id,
    rule_id,
    severity,
    profile,
    count() AS violations
FROM faceaudit.violations
GROUP BY minute, region_code, processor_id, deployment_id, rule_id, severity, profile;
