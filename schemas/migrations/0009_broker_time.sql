-- When the broker received each event's message (the events topic stamps
-- messages with LogAppendTime), beside the device's own event_time: the
-- evidence behind AUDIT-CLOCK-SKEW. Null for a message its producer stamped.
ALTER TABLE faceaudit.events
    ADD COLUMN IF NOT EXISTS broker_time Nullable(DateTime64(3, 'UTC')) AFTER offset;
