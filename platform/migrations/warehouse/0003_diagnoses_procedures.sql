-- Diagnoses and procedures (payloads `diagnosis` and `procedure` of
-- hospital.events.v1.ClinicalEvent): one row per event, keyed like the other event
-- facts of 0001 by (date_key, source_system, source_event_id), so writing an event
-- twice keeps one row. Same conventions as 0001 (valid on ClickHouse 18.16.1 and a
-- current LTS): times are Int64 ms since the epoch (UTC), `date_key` is the UTC day of
-- the onset / start, enum values are lower-case labels ("icd10_cm", "principal"),
-- empty when the source did not say. Codes are canonical (ingest upper-cases them and
-- writes ICD codes with their dot). Read with FINAL ... WHERE is_deleted = 0.

-- `onset_at_ms` is the event's occurred_at: the onset, else when it was recorded.
-- `rank` 1 is the first listed (principal) diagnosis, 0 unranked.
CREATE TABLE IF NOT EXISTS warehouse.fact_diagnosis
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    code String,
    code_system String,
    display String,
    role String,
    rank UInt32,
    clinical_status String,
    onset_at_ms Int64,
    recorded_at_ms Nullable(Int64),
    abated_at_ms Nullable(Int64),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

-- `started_at_ms` is the event's occurred_at; `duration_minutes` is set when the
-- source gave an end.
CREATE TABLE IF NOT EXISTS warehouse.fact_procedure
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    code String,
    code_system String,
    display String,
    rank UInt32,
    performer String,
    started_at_ms Int64,
    ended_at_ms Nullable(Int64),
    duration_minutes Nullable(Float64),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id)
