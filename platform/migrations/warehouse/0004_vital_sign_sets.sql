-- One row per vital-signs set: the NEWS2 inputs that belong to the set rather than to
-- one observation, exactly as charted (consciousness, air or oxygen, and the SpO2
-- scale the set was charted on), so that the real-time NEWS2 state rebuilt from the
-- warehouse equals the live one (a scale-2 patient stays on scale 2 after a restart).
-- A set charted with consciousness or oxygen only, and no observation, has a row here
-- and none in fact_vital_sign.
--
-- spo2_scale: "scale_1", "scale_2", or "" when the set did not say (the patient stays on
-- the scale of their last set that said). Same conventions as 0001; read with FINAL.
CREATE TABLE IF NOT EXISTS warehouse.fact_vital_sign_set
(
    date_key UInt32,
    source_system String,
    source_event_id String,
    source_position UInt64,
    patient_key UUID,
    encounter_id String,
    taken_at_ms Int64,
    consciousness String,
    supplemental_oxygen Nullable(UInt8),
    spo2_scale String,
    observation_count UInt16,
    is_deleted UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(date_key, 10000)
ORDER BY (date_key, source_system, source_event_id);

-- Sets loaded before this table existed, from their observations (their scale was not
-- kept: "").
INSERT INTO warehouse.fact_vital_sign_set
SELECT date_key, source_system, source_event_id, any(source_position), any(patient_key), any(encounter_id),
       any(taken_at_ms), any(consciousness), any(supplemental_oxygen), '', toUInt16(count()), 0, max(version)
FROM warehouse.fact_vital_sign FINAL
WHERE is_deleted = 0
GROUP BY date_key, source_system, source_event_id;
