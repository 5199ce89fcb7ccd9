-- Coded lab results and ICU stays. Same conventions as 0001 (valid on ClickHouse
-- 18.16.1 and a current LTS): times are Int64 ms since the epoch (UTC), rows are
-- replaced by version, read with FINAL ... WHERE is_deleted = 0.

-- A text result keeps its text in `value_text` (since 0001); a coded one (HL7 CE/CWE)
-- also its code and the coding system as the sender named it ("SCT", "LN", "L").
-- (18.16 has no ADD COLUMN IF NOT EXISTS: `schema::migrate` takes "already exists" from
-- an ADD COLUMN as done, so a start-up that died after it finishes the migration.)
ALTER TABLE warehouse.fact_lab_result ADD COLUMN value_code String AFTER value_text;
ALTER TABLE warehouse.fact_lab_result ADD COLUMN value_code_system String AFTER value_code;

-- One row per ICU stay, derived from an encounter's movements (its admission location,
-- then each transfer's destination, each held until the next movement or the
-- discharge). Consecutive ICU locations, and a return to an ICU within 24 hours of
-- leaving one, are one stay (MIMIC-III's ICUSTAYS rule). `icu_stay_id` is
-- "<encounter_id>/<source_event_id of the movement that opened the stay>".
-- `outtime_ms` and the lengths are NULL while the patient is still in the ICU (no
-- movement out, no discharge). `length_of_stay_hours` runs from intime to outtime
-- (gaps of returns included, as ICUSTAYS.LOS); `icu_hours` counts ICU time only.
-- `segments` is the number of ICU location segments merged (1: one unit, no return);
-- `care_units` the ICU department codes in order of entry (repeats collapsed);
-- `source_event_ids` the movements that opened and closed its ICU segments (admission,
-- transfers, discharge), in time order. Recomputed for every encounter a load touches; a stay that no longer
-- exists gets a tombstone (is_deleted = 1).
CREATE TABLE IF NOT EXISTS warehouse.fact_icu_stay
(
    encounter_id String,
    icu_stay_id String,
    date_key UInt32,
    patient_key UUID,
    first_care_unit String,
    last_care_unit String,
    first_ward_code String,
    last_ward_code String,
    care_units Array(String),
    intime_ms Int64,
    outtime_ms Nullable(Int64),
    length_of_stay_hours Nullable(Float64),
    icu_hours Nullable(Float64),
    segments UInt32,
    source_event_ids Array(String),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (encounter_id, icu_stay_id);
