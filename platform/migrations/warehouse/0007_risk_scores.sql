-- Risk scores written back by the ML sidecar (payload `risk_score` of
-- hospital.events.v1.ClinicalEvent): one row per event, keyed like the other event
-- facts of 0001 by (date_key, source_system, source_event_id), so writing an event
-- twice keeps one row. Same conventions as 0001 (valid on ClickHouse 18.16.1 and a
-- current LTS): times are Int64 ms since the epoch (UTC), `date_key` is the UTC day of
-- the scored event. Read with FINAL ... WHERE is_deleted = 0.

-- `scored_at_ms` is the scored event's occurred_at; the features were computed as of it
-- and of `scored_position`. `alert` = 1 when this score raised a risk alert (it is high
-- and the encounter's previous score by the model was not). `factor_*[i]` is the i-th
-- largest contribution to the log-odds (value NaN when the feature was missing).
CREATE TABLE IF NOT EXISTS warehouse.fact_risk_score
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    model String,
    model_version UInt64,
    probability Float64,
    threshold Float64,
    high UInt8,
    alert UInt8,
    scored_event_id String,
    scored_source_system String,
    scored_position UInt64,
    scored_at_ms Int64,
    department_code String,
    ward_code String,
    factor_names Array(String),
    factor_values Array(Float64),
    factor_contributions Array(Float64),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id)
