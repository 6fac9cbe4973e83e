-- The consent and deployment registries as read from their compacted topics.
-- A later record for the same id replaces the earlier one: ReplacingMergeTree
-- keeps the row with the highest source offset (query with FINAL for the
-- current state); every version stays visible until merges fold them.
CREATE TABLE IF NOT EXISTS faceaudit.consents
(
    consent_id                String,
    processor_id              LowCardinality(String),
    subject_ref               String,
    grantor                   LowCardinality(String),
    consent_type              LowCardinality(String),
    purposes                  Array(LowCardinality(String)),
    covers_internet_transfer  Bool,
    covers_image_retention    Bool,
    notice_version            String,
    granted_at                DateTime64(6, 'UTC'),
    expires_at                Nullable(DateTime64(6, 'UTC')),
    withdrawn_at              Nullable(DateTime64(6, 'UTC')),
    topic                     LowCardinality(String),
    partition                 UInt32,
    offset                    UInt64
)
ENGINE = ReplacingMergeTree(offset)
ORDER BY consent_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS faceaudit.deployments
(
    deployment_id                 String,
    processor_id                  LowCardinality(String),
    registered_purposes           Array(LowCardinality(String)),
    declared_retention_days       Int32,
    pipia_date                    Nullable(DateTime64(6, 'UTC')),
    notice_version                String,
    notice_complete               Bool,
    law_requires_written_consent  Bool,
    filing_id                     Nullable(String),
    filing_date                   Nullable(DateTime64(6, 'UTC')),
    topic                         LowCardinality(String),
    partition                     UInt32,
    offset                        UInt64
)
ENGINE = ReplacingMergeTree(offset)
ORDER BY deployment_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS faceaudit.deletions
(
    event_id      String,
    processor_id  LowCardinality(String),
    subject_ref   String,
    deleted_at    DateTime64(6, 'UTC'),
    reason        LowCardinality(String),
    topic         LowCardinality(String),
    partition     UInt32,
    offset        UInt64
)
ENGINE = ReplacingMergeTree(offset)
ORDER BY (processor_id, subject_ref, event_id)
TTL toDateTime(deleted_at) + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;
