-- A violation with no event (FR-DELETION-OVERDUE, REG-*, AUDIT-CHECKPOINT-BAD)
-- has no region of its own: `regions` holds the regions its processor's events
-- came from when it was found, so a region-scoped regulator sees it. Empty for
-- a violation of an event, whose region is region_code.
ALTER TABLE faceaudit.violations
    ADD COLUMN IF NOT EXISTS regions Array(LowCardinality(String));

-- The statistics keep the regions in their key: rows with other regions are
-- never summed into one.
ALTER TABLE faceaudit.violation_stats_minute
    ADD COLUMN IF NOT EXISTS regions Array(LowCardinality(String)),
    MODIFY ORDER BY (minute, region_code, processor_id, deployment_id, rule_id, severity, profile,
                     regions);

DROP VIEW IF EXISTS faceaudit.violation_stats_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS faceaudit.violation_stats_minute_mv
TO faceaudit.violation_stats_minute AS
SELECT
    toStartOfMinute(event_time) AS minute,
    region_code,
    regions,
    processor_id,
    deployment_id,
    rule_id,
    severity,
    profile,
    count() AS violations
FROM faceaudit.violations
GROUP BY minute, region_code, regions, processor_id, deployment_id, rule_id, severity, profile;
