-- Capture and match events, one row per event, with the Kafka position it
-- was read from. Audit rows are processing records (F 9): kept for at least
-- three years, so the TTL deletes a partition only three years after its
-- last event time, never earlier.
-- non_replicated_deduplication_window lets a batch that is re-inserted after
-- a crash (same insert_deduplication_token) be stored once.
CREATE TABLE IF NOT EXISTS faceaudit.events
(
    kind                   LowCardinality(String),
    event_id               String,
    event_time             DateTime64(6, 'UTC'),
    processor_id           LowCardinality(String),
    deployment_id          LowCardinality(String),
    device_id              String,
    region_code            LowCardinality(String),
    device_seq             UInt64,
    prev_hash              Nullable(String),
    payload_sha256         String,
    location_type          LowCardinality(String),
    public_place           Bool,
    remote_noncontact      Bool,
    purpose                LowCardinality(String),
    legal_basis            LowCardinality(String),
    subject_ref            Nullable(String),
    consent_id             Nullable(String),
    subject_age            Nullable(Int32),
    signage_present        Nullable(Bool),
    capture_zone_approved  Nullable(Bool),
    attribute_analysis     Array(LowCardinality(String)),
    raw_image_retained     Nullable(Bool),
    anonymized             Nullable(Bool),
    retention_days         Nullable(Int32),
    storage_location       LowCardinality(Nullable(String)),
    transmitted_off_device Nullable(Bool),
    transmission_channel   LowCardinality(Nullable(String)),
    encrypted_at_rest      Nullable(Bool),
    encrypted_in_transit   Nullable(Bool),
    capture_event_id       Nullable(String),
    match_mode             LowCardinality(Nullable(String)),
    gallery_id             Nullable(String),
    gallery_size           Nullable(Int64),
    score                  Nullable(Float32),
    threshold              Nullable(Float32),
    matched                Nullable(Bool),
    alternative_available  Nullable(Bool),
    alternative_offered    Nullable(Bool),
    subject_declined_fr    Nullable(Bool),
    service_denied         Nullable(Bool),
    operator_id            Nullable(String),
    manual_review_id       Nullable(String),
    topic                  LowCardinality(String),
    partition              UInt32,
    offset                 UInt64,
    stored_at              DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (processor_id, deployment_id, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 3 YEAR
SETTINGS non_replicated_deduplication_window = 10000;
