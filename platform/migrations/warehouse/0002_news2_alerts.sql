-- NEWS2 alerts raised by the real-time stage (platform/src/realtime/alerts.rs), kept
-- for audit and to rebuild the alert state at start-up (last band per patient, highest
-- audited staging position).
--
-- Same conventions as 0001 (valid on ClickHouse 18.16.1 and a current LTS): times are
-- Int64 ms since the epoch (UTC); bands and kinds are lower-case labels ("low_medium",
-- "escalation"), empty for none. `alert_id` is UUID v5 of (source_system,
-- source_event_id): a replayed alert has the same id and replaces its earlier row.
-- Read with FINAL. Identified data (authority + MRN): restricted role.
CREATE TABLE IF NOT EXISTS warehouse.news2_alerts
(
    alert_id String,
    kind String,
    patient_authority String,
    patient_mrn String,
    patient_key UUID,
    encounter_id String,
    department_code String,
    ward_code String,
    bed_code String,
    score UInt8,
    band String,
    previous_band String,
    -- Per-parameter scores: subscore_names[i] scored subscore_values[i].
    subscore_names Array(String),
    subscore_values Array(UInt8),
    missing_parameters Array(String),
    source_system String,
    source_event_id String,
    position UInt64,
    observed_at_ms Int64,
    raised_at_ms Int64,
    response String
)
ENGINE = ReplacingMergeTree
ORDER BY alert_id;
