-- Warehouse: a Kimball star schema loaded from `staging.events` by the batch stage
-- (platform/src/batch), incrementally by watermark and idempotently.
--
-- Conventions (every statement runs on ClickHouse 18.16.1 and on a current LTS):
-- * times are Int64 milliseconds since the Unix epoch (`*_ms`), UTC. No DateTime64.
-- * dates are `date_key` UInt32 YYYYMMDD, joined to `dim_date`.
-- * every derived row keeps its source: `source_system` + `source_event_id` and the
--   staging `source_position` (unique per staged event), so it can be traced,
--   updated and deleted.
-- * rows are never updated in place: a newer row with the same sorting key and a
--   higher `version` replaces the older one (ReplacingMergeTree). Read with FINAL.
--   `is_deleted = 1` rows are tombstones: filter them out.
-- * `version` is the load sequence number of the chunk that wrote the row.

-- Load bookkeeping -------------------------------------------------------------------

-- Highest staging position whose events are fully loaded, per pipeline.
CREATE TABLE IF NOT EXISTS warehouse.load_watermark
(
    pipeline String,
    position UInt64,
    run_id String,
    updated_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY pipeline;

-- One row per finished (or failed) load run.
CREATE TABLE IF NOT EXISTS warehouse.load_runs
(
    run_id String,
    pipeline String,
    full_reload UInt8,
    status String,
    message String,
    started_at_ms Int64,
    finished_at_ms Int64,
    from_position UInt64,
    to_position UInt64,
    chunks UInt64,
    events_read UInt64,
    events_loaded UInt64,
    duplicates_dropped UInt64,
    load_errors UInt64,
    rows_written UInt64
)
ENGINE = MergeTree
ORDER BY (pipeline, started_at_ms, run_id);

-- Staged rows that could not be loaded (payload not decodable, no payload).
-- Keyed by staging position, so a redone chunk records each error once.
CREATE TABLE IF NOT EXISTS warehouse.load_errors
(
    position UInt64,
    source_system String,
    event_id String,
    kind String,
    error String,
    run_id String,
    recorded_at_ms Int64
)
ENGINE = ReplacingMergeTree
ORDER BY position;

-- The idempotency registry: (source_system, event_id) -> the first staged copy.
-- `keep_rank` = 2^64-1 - first_position, so merges keep the lowest position; readers
-- use min(first_position) and do not depend on merges.
CREATE TABLE IF NOT EXISTS warehouse.event_registry
(
    source_system String,
    event_id String,
    first_position UInt64,
    kind String,
    occurred_at_ms Int64,
    keep_rank UInt64
)
ENGINE = ReplacingMergeTree(keep_rank)
ORDER BY (source_system, event_id);

-- Patients ---------------------------------------------------------------------------

-- Every demographic event (patient_registered / patient_updated), the input from
-- which a patient's SCD2 history is rebuilt. Identified data: restricted role.
CREATE TABLE IF NOT EXISTS warehouse.patient_demographic_events
(
    patient_key UUID,
    source_system String,
    source_event_id String,
    source_position UInt64,
    kind String,
    occurred_at_ms Int64,
    given_name String,
    family_name String,
    birth_date String,
    sex String,
    postal_code String,
    deceased_at_ms Nullable(Int64),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (patient_key, source_system, source_event_id);

-- Pseudonymous key -> the identifiers it was derived from. Identified data:
-- restricted role (marts and training sets carry only patient_key).
CREATE TABLE IF NOT EXISTS warehouse.patient_identity
(
    patient_key UUID,
    assigning_authority String,
    mrn String,
    first_position UInt64,
    keep_rank UInt64
)
ENGINE = ReplacingMergeTree(keep_rank)
ORDER BY patient_key;

-- SCD type 2. The first version of every patient starts at the beginning of time
-- (0001-01-01) so every fact joins as of its time; `effective_at_ms` is when the
-- event that began the version happened. An inferred member (patient seen in other
-- events, never registered) is that first version with `is_inferred = 1`; the first
-- real version replaces it in place. `birth_date` is ISO text: Date cannot hold
-- dates before 1970 on 18.16 (no Date32).
CREATE TABLE IF NOT EXISTS warehouse.dim_patient
(
    patient_key UUID,
    valid_from_ms Int64,
    valid_to_ms Int64,
    is_current UInt8,
    is_inferred UInt8,
    given_name String,
    family_name String,
    birth_date String,
    sex String,
    postal_code String,
    deceased_at_ms Nullable(Int64),
    effective_at_ms Int64,
    source_system String,
    source_event_id String,
    source_position UInt64,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (patient_key, valid_from_ms);

-- Conformed dimensions (SCD type 1) ---------------------------------------------------

-- Department / ward / bed. `level` is department, ward or bed; names come from the
-- latest reference Ward event. Locations seen only in admissions, transfers or bed
-- status are inferred members (`is_inferred = 1`) until a Ward event names them.
CREATE TABLE IF NOT EXISTS warehouse.dim_location
(
    location_key UInt64,
    department_code String,
    ward_code String,
    bed_code String,
    level String,
    department_name String,
    ward_name String,
    bed_count UInt32,
    is_inferred UInt8,
    ref_at_ms Int64,
    ref_position UInt64,
    source_system String,
    source_event_id String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (department_code, ward_code, bed_code);

CREATE TABLE IF NOT EXISTS warehouse.dim_drug
(
    drug_code String,
    code_system String,
    name String,
    drug_class String,
    form String,
    strength String,
    is_inferred UInt8,
    ref_at_ms Int64,
    ref_position UInt64,
    source_system String,
    source_event_id String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY drug_code;

CREATE TABLE IF NOT EXISTS warehouse.dim_payer
(
    payer_code String,
    name String,
    payer_type String,
    is_inferred UInt8,
    ref_at_ms Int64,
    ref_position UInt64,
    source_system String,
    source_event_id String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY payer_code;

-- Every date a fact touches (UTC). `date` is 1970-01-01 for keys outside the Date
-- range of 18.16 (1970..2105); date_key stays exact.
CREATE TABLE IF NOT EXISTS warehouse.dim_date
(
    date_key UInt32,
    date Date,
    year UInt16,
    quarter UInt8,
    month UInt8,
    day UInt8,
    iso_weekday UInt8,
    is_weekend UInt8
)
ENGINE = ReplacingMergeTree
ORDER BY date_key;

-- Facts ------------------------------------------------------------------------------

-- Accumulating snapshot, one row per encounter. Each milestone keeps the event it came
-- from (`*_event_id`, `*_position`) so events merge in any order: admission, ED arrival
-- and triage take the earliest event, discharge and current location the latest
-- (ties: staging position). `transfer_positions` is the set of transfer events merged.
CREATE TABLE IF NOT EXISTS warehouse.fact_encounter
(
    encounter_id String,
    patient_key UUID,
    patient_position UInt64,
    encounter_class String,
    admission_type String,
    admitted_at_ms Nullable(Int64),
    admit_date_key Nullable(UInt32),
    admission_department_code String,
    admission_ward_code String,
    admission_bed_code String,
    attending_practitioner String,
    admitting_diagnosis String,
    payer_code String,
    admission_event_id String,
    admission_position UInt64,
    discharged_at_ms Nullable(Int64),
    discharge_date_key Nullable(UInt32),
    discharge_disposition String,
    discharge_event_id String,
    discharge_position UInt64,
    ed_arrival_at_ms Nullable(Int64),
    ed_arrival_mode String,
    ed_chief_complaint String,
    ed_department_code String,
    ed_arrival_event_id String,
    ed_arrival_position UInt64,
    ed_triage_at_ms Nullable(Int64),
    acuity Nullable(UInt8),
    ed_triage_event_id String,
    ed_triage_position UInt64,
    ed_wait_minutes Nullable(Float64),
    ed_length_of_stay_minutes Nullable(Float64),
    length_of_stay_hours Nullable(Float64),
    location_key UInt64,
    department_code String,
    ward_code String,
    bed_code String,
    location_at_ms Nullable(Int64),
    location_event_id String,
    location_position UInt64,
    transfer_count UInt32,
    transfer_positions Array(UInt64),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY encounter_id;

CREATE TABLE IF NOT EXISTS warehouse.fact_transfer
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    encounter_id String,
    patient_key UUID,
    transferred_at_ms Int64,
    from_location_key UInt64,
    from_department_code String,
    from_ward_code String,
    from_bed_code String,
    to_location_key UInt64,
    to_department_code String,
    to_ward_code String,
    to_bed_code String,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

-- One row per observation of a vital-sign set; consciousness and supplemental oxygen
-- belong to the set and repeat on each of its rows.
CREATE TABLE IF NOT EXISTS warehouse.fact_vital_sign
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    observation_index UInt16,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    taken_at_ms Int64,
    loinc_code String,
    value Float64,
    unit String,
    consciousness String,
    supplemental_oxygen Nullable(UInt8),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id, observation_index);

CREATE TABLE IF NOT EXISTS warehouse.fact_lab_result
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    order_id String,
    loinc_code String,
    display String,
    value Nullable(Float64),
    value_text String,
    unit String,
    reference_low Nullable(Float64),
    reference_high Nullable(Float64),
    abnormal_flag String,
    resulted_at_ms Int64,
    specimen_collected_at_ms Nullable(Int64),
    turnaround_minutes Nullable(Float64),
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

-- Orders, dispenses and administrations, told apart by `kind`.
CREATE TABLE IF NOT EXISTS warehouse.fact_medication
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    kind String,
    patient_key UUID,
    encounter_id String,
    order_id String,
    drug_code String,
    drug_name String,
    dose_value Float64,
    dose_unit String,
    route String,
    frequency String,
    starts_at_ms Nullable(Int64),
    ends_at_ms Nullable(Int64),
    occurred_at_ms Int64,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

-- Amounts in minor units (cents): amount_minor = round(quantity * unit_price_minor).
CREATE TABLE IF NOT EXISTS warehouse.fact_charge
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    charge_id String,
    patient_key UUID,
    encounter_id String,
    code String,
    description String,
    quantity Float64,
    unit_price_minor Int64,
    amount_minor Int64,
    currency String,
    payer_code String,
    charged_at_ms Int64,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

CREATE TABLE IF NOT EXISTS warehouse.fact_bed_status
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    location_key UInt64,
    department_code String,
    ward_code String,
    bed_code String,
    state String,
    occurred_at_ms Int64,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id)
